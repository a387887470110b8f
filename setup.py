"""Bedrock batch summarization as Apache Beam transforms (see README.md)."""
from setuptools import find_packages, setup

# apache-beam is pinned to the release whose Flink runner jars Maven Central serves here
# (beam-runners-flink-1.19 2.70.0); the Python SDK and the job server must match.
BEAM = "apache-beam[aws]==2.70.0"

setup(
    name="bedrock-batch-beam",
    version="0.1.0",
    description="Amazon Bedrock batch inference for call-center transcripts, as Apache Beam transforms",
    python_requires=">=3.10",
    packages=find_packages(include=["transforms", "transforms.*", "pipeline", "pipeline.*"]),
    package_data={"pipeline": ["samples/*.jsonl", "samples/*.txt"]},
    install_requires=[
        BEAM,
        "boto3>=1.34",
        "pyarrow>=14",
        "fastavro>=1.9",
        "orjson>=3.9",
    ],
    extras_require={
        "local": ["moto[server,s3]>=5.0"],
        "kafka": ["confluent-kafka>=2.3"],
        "bigquery": ["apache-beam[gcp]==2.70.0"],
        "test": ["pytest>=8", "pytest-timeout>=2.3", "hypothesis>=6.100"],
    },
    entry_points={"console_scripts": ["bedrock-beam=pipeline.__main__:main"]},
)
