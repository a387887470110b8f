"""The sample calls: ``generate`` writes deterministic call-center transcripts (no real PII),
and ``show`` prints a finished run's insight rows and aggregate as small tables (`make demo`).
"""
