"""The runnable application around the transforms, in four parts: the command line
(``cli/``), a run (``running/``), the run report (``report/``) and the embedded local backend
(``local/``); ``samples/`` holds the sample calls.

The modules here are what the parts share, and import none of them: the flags (``flags``)
and their parsing into Beam options and the run's config (``options``), the exit codes (``exit_codes``), the live display's state (``progress``), which local runner a
run gets (``runners``), the price table (``pricing``) and the quotas read from AWS Service Quotas
(``service_quotas``). The parts import one way: ``cli`` -> ``running`` -> ``report``, ``local``
(tests/test_layers.py).
"""

__version__ = "0.1.0"
