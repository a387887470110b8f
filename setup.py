"""Bedrock batch summarization as Apache Beam transforms (see README.md)."""
import re
from pathlib import Path

from setuptools import find_packages, setup

# The Python SDK's Beam version. The Flink job server (jvm/flink/pom.xml) runs an older Java
# Beam; docs/architecture.md ("Beam versions") says which and why, and a test checks both pins.
BEAM = "apache-beam[aws]==2.70.0"

# One version, in pipeline/__init__.py, which `python -m pipeline --version` prints.
VERSION = re.search(r'__version__ = "([^"]+)"',
                    (Path(__file__).parent / "pipeline" / "__init__.py").read_text()).group(1)

setup(
    name="bedrock-batch-beam",
    version=VERSION,
    description="Amazon Bedrock batch inference for call-center transcripts, as Apache Beam transforms",
    python_requires=">=3.10",
    packages=find_packages(include=["transforms", "transforms.*", "pipeline", "pipeline.*"]),
    package_data={"pipeline": ["samples/*.jsonl", "samples/*.txt"],
                  "transforms.insights": ["*.json"]},
    install_requires=[
        BEAM,
        "boto3>=1.34",
        "pyarrow>=14",
        "fastavro>=1.9",
        "plotly>=5.0",  # the run report's charts (report.html inlines its plotly.js)
        # The CLI's default backend (--backend local) runs moto's S3 server: a plain install
        # runs the CLI's default path.
        "moto[server,s3]>=5.0",
        "rich>=13",  # the CLI's progress display
        "jsonschema>=4.18",  # validates --task insights answers against the JSON Schema
        "orjson>=3.9",
    ],
    extras_require={
        "kafka": ["confluent-kafka>=2.3"],
        "bigquery": ["apache-beam[gcp]==2.70.0"],
        "test": ["pytest>=8", "pytest-timeout>=2.3", "hypothesis>=6.100",
                 "allpairspy>=2.5",  # generates the combination matrix (tests/test_combos.py)
                 "playwright>=1.40"],  # drives Debian's chromium (make browser), no own browsers
    },
    entry_points={"console_scripts": ["bedrock-beam=pipeline.__main__:cli"]},
)
