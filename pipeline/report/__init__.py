"""The run report: report.json (the data) and report.html (charts), beside the run's output.

``data`` builds the JSON, ``charts`` the plotly figure specs and ``page`` the HTML: plain
modules without Beam. ``files`` asks the Bedrock service for the run's jobs and reads and writes
the two files through Beam's FileSystems.
"""
