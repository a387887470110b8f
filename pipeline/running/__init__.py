"""A run: its Beam graph (``graph``), running it while --output is held (``execute``), its
accounting and report (``outcome``), the runner it gets (``runners``), where its AWS clients
point (``environment``), ending a run that does not end by itself (``drain``), and `collect`'s
pipeline over a finished job's output (``collect``).

It reads the CLI's options (``pipeline.cli.options``), feeds its progress display
(``pipeline.cli.progress.note_written``) and answers in its exit codes.
"""
