"""The command line: the checks made before anything starts (``run_flags``, ``inputs``,
``extras``, ``preflight``), config fields as flags (``field_flags``), the commands
(``commands``), what the console shows (``console``) and Ctrl-C (``interrupts``).

The entry point is ``pipeline/__main__.py``; a run itself is ``pipeline.running``, and the flags,
exit codes and display state it shares with a run are ``pipeline.flags`` (their definitions),
``pipeline.options`` (their parsing), ``pipeline.exit_codes`` and ``pipeline.progress``.
"""
