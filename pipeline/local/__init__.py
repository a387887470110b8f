"""The embedded local backend: a Bedrock batch service and S3 (moto server) on localhost.

``backend`` starts both together (``LocalBackend``, a context manager) and ``serve`` runs them
for `serve-local`. The service (``service``, over ``background``'s threaded HTTP server) routes
and validates requests by botocore's model (``validation``), keeps its jobs (``jobs_store``)
and runs each (``runner``); ``runtime`` answers InvokeModel and Converse. The model is
``responses`` per family, over an extractive ``summarizer`` and rule-based ``insights``.
``s3`` is moto's S3, ``sigv4`` checks both endpoints' signatures, and ``faults`` injects
reproducible failures. Imports ``pipeline.exit_codes`` only, of the rest of ``pipeline``.
"""
