"""Transcripts into model requests: redaction (``redaction`` the pure rules, ``redact`` the Beam
stage), each model family's request and response (``families``), and the prompt and the
deterministic recordId (``records``).

Imports ``core``, ``sources`` (validation) and ``insights`` (the insights prompt) only.
"""
