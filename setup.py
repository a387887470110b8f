"""Bedrock batch summarization as Apache Beam transforms (see README.md)."""
from setuptools import find_packages, setup

# The Python SDK's Beam version. The Flink job server (jvm/flink/pom.xml) runs an older Java
# Beam; docs/architecture.md ("Beam versions") says which and why, and a test checks both pins.
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
        "plotly>=5.0",  # the run report's charts (report.html inlines its plotly.js)
    ],
    extras_require={
        "local": ["moto[server,s3]>=5.0"],
        "kafka": ["confluent-kafka>=2.3"],
        "bigquery": ["apache-beam[gcp]==2.70.0"],
        "test": ["pytest>=8", "pytest-timeout>=2.3", "hypothesis>=6.100",
                 "playwright>=1.40"],  # drives Debian's chromium (make browser), no own browsers
    },
    entry_points={"console_scripts": ["bedrock-beam=pipeline.__main__:main"]},
)
