"""The runnable application around the transforms, in four parts: the command line
(``cli/``), a run (``running/``), the run report (``report/``) and the embedded local backend
(``local/``); ``samples/`` holds the sample calls, and ``pricing`` the price table that the cost
estimates of `plan`, of a run and of its report share.
"""

__version__ = "0.1.0"
