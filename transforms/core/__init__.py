"""What every part of the package shares: the element types (``model``) and their coders
(``coders``), settings errors (``errors``), the metrics namespace (``metrics``), the AWS clients
(``aws``, ``storage`` for S3, ``bedrock`` for the batch jobs), the run's layout on S3
(``layout``), quotas (``quotas``), pacing (``rate_control``), whether a process runs
(``processes``) and the Beam helpers every stage uses (``windowing``, ``beam_compat``).

Nothing here imports another part of ``transforms``: every other folder may import ``core``.
"""
