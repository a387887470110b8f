"""The Kafka transcript source, kept importable here; it lives in ``transforms.sources.kafka``."""
from transforms.sources.kafka import (BACKLOG_TIMEOUT_SECONDS, DRAIN_SECONDS, IDLE_WATERMARK_LAG,
                                      MAX_READ_SECONDS, METADATA_TIMEOUT_SECONDS, START_OFFSETS,
                                      UNBOUNDED_END, KafkaPartition, PartitionRestrictionProvider,
                                      PartitionTracker, ReadTranscriptsFromKafka, idle_watermark,
                                      kafka_origin, late_message_failure, message_time,
                                      message_to_item)

__all__ = ["BACKLOG_TIMEOUT_SECONDS", "DRAIN_SECONDS", "IDLE_WATERMARK_LAG", "MAX_READ_SECONDS",
           "METADATA_TIMEOUT_SECONDS", "START_OFFSETS", "UNBOUNDED_END", "KafkaPartition",
           "PartitionRestrictionProvider", "PartitionTracker", "ReadTranscriptsFromKafka",
           "idle_watermark", "kafka_origin", "late_message_failure", "message_time",
           "message_to_item"]
