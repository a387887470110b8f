"""The run report: report.json (the data) and report.html (charts), beside the run's output.

``data`` builds the JSON, ``charts`` the plotly figure specs and ``page`` the HTML: plain
modules without Beam. ``files`` asks the Bedrock service for the run's jobs and reads and writes
the two files through Beam's FileSystems. ``reconcile`` derives the report's figures from the
durable facts (pure), and ``drain`` decides from them when a run that cannot end by itself is
done. Imports ``pipeline.exit_codes`` and ``pipeline.pricing`` only, of the rest of
``pipeline``.
"""
