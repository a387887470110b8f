"""A run: its Beam graph (``graph``), running it while --output is held (``execute``), its
accounting and report (``outcome``), where its AWS clients point and the runner it gets
(``environment``), ending a run that does not end by itself (``drain``), cancelling its job on a Flink cluster
(``flink_rest``), and `collect`'s
pipeline over a finished job's output (``collect``).

It reads the flags (``pipeline.options``, their defaults in ``pipeline.flags``), feeds the
progress display (``pipeline.progress.note_written``) and answers in the exit codes
(``pipeline.exit_codes``); it never imports the command line (``pipeline.cli``).
"""
