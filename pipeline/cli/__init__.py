"""The command line: the flags (``options``, ``field_flags``), the checks made before anything
starts (``run_flags``, ``inputs``, ``extras``, ``preflight``, ``service_quotas`` for
``--quota-profile service-quotas``), the commands (``commands``), what the console shows
(``console``, ``progress``), Ctrl-C (``interrupts``) and the exit codes (``exit_codes``).

The entry point is ``pipeline/__main__.py``; a run itself is ``pipeline.running``.
"""
