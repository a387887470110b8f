"""Embeddable Beam transforms for Amazon Bedrock batch summarization of call transcripts."""
