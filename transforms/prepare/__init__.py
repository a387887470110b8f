"""Transcripts into model requests: redaction, the prompt, each model family's request and
response, and the deterministic recordId.

Imports ``core``, ``sources`` (validation) and ``insights`` (the insights prompt) only.
"""
