"""The embedded local backend: a Bedrock batch service and S3 (moto server) on localhost."""
