"""What every part of the package shares: the element types and their coders, settings errors,
the metrics namespace, the AWS clients (S3 storage, the Bedrock batch job client), the run's
layout on S3, quotas, pacing and the Beam helpers every stage uses.

Nothing here imports another part of ``transforms``: every other folder may import ``core``.
"""
