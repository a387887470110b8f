"""Sinks for Summary and Failure rows (schemas derive from ``transforms.model``)."""
from transforms.sinks.files import FORMATS, WriteFailures, WriteRows, WriteSummaries

__all__ = ["FORMATS", "WriteFailures", "WriteRows", "WriteSummaries"]
