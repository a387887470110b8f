# The Beam Python SDK worker image for a Flink cluster's TaskManagers, with this package
# installed: the SDK workers unpickle and run the pipeline's transforms, so they need the same
# code and the same Beam as the CLI that submits the job. The tag's Beam version is setup.py's
# (tests/test_deploy_files.py checks it), and its Python (3.11) must be the submitting CLI's:
# Beam pickles the pipeline's functions in one and unpickles them in the other.
#
#   docker build -t REGISTRY/bedrock-batch-beam-worker:VERSION .
#
# As a sidecar of each TaskManager it runs the worker pool (`--worker_pool`, port 50000) that
# `--environment_type EXTERNAL --environment_config localhost:50000` names; docs/deploy-flink.md
# has the FlinkDeployment. No AWS keys go into the image: the workers use boto3's credential
# chain (a pod role or instance profile).
FROM apache/beam_python3.11_sdk:2.70.0

WORKDIR /opt/bedrock-batch-beam
COPY setup.py ./
COPY pipeline/ pipeline/
COPY transforms/ transforms/
# The constraint keeps the image's own Beam (the tag's): pip may add this package's other
# dependencies but never replaces the SDK the image's boot program was built with. The extras
# are the Kafka and BigQuery sinks' clients.
RUN python -c "import apache_beam; print('apache-beam==' + apache_beam.__version__)" \
        > /tmp/beam-constraint.txt \
    && pip install --no-cache-dir --constraint /tmp/beam-constraint.txt '.[kafka,bigquery]' \
    && rm /tmp/beam-constraint.txt
# The base image's entrypoint (Beam's boot program) is kept: it starts the worker pool or a
# single SDK worker as the runner asks.
