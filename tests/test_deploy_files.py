"""The production files that cannot run here (no Docker Hub, no Kubernetes) agree with what the
tests do run: the worker image's Beam is setup.py's, and the FlinkDeployment carries the test
cluster's settings (jvm/flink/conf/config.yaml)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
DEPLOYMENT = yaml.safe_load((ROOT / "deploy" / "flink-session.yaml").read_text())
CONFIG_TEXT = (ROOT / "jvm" / "flink" / "conf" / "config.yaml").read_text()
CONFIG = yaml.safe_load(CONFIG_TEXT)

# config.yaml settings that differ by design on Kubernetes: addresses and ports (the operator
# sets them; the test cluster gives each process its own), the memory pools (the operator
# computes them from the pod's memory; network and task off-heap memory are kept), the
# checkpoint folder, and the RPC timeout raised for the crowded test machine.
PER_CLUSTER = re.compile(r"^(jobmanager\.rpc\.|rest\.|taskmanager\.host$|taskmanager\.cpu\."
                         r"|taskmanager\.memory\.(?!network\.|task\.off-heap\.)|state\.checkpoints\.dir$"
                         r"|metrics\.reporter\.prom\.port$|pekko\.ask\.timeout$)")


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Flink's view of a nested YAML config: dotted keys, values as strings."""
    flat: dict[str, str] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = str(value)
    return flat


def test_worker_image_is_the_beam_sdk_setup_py_pins():
    beam = re.findall(r"apache-beam\[[a-z,]+\]==([\d.]+)", (ROOT / "setup.py").read_text())
    images = re.findall(r"^FROM (\S+)", DOCKERFILE, re.M)
    assert len(images) == 1
    match = re.fullmatch(r"apache/beam_python(\d+\.\d+)_sdk:([\d.]+)", images[0])
    assert match, images[0]
    assert {match[2]} == set(beam)


def test_worker_image_installs_every_package_setup_py_ships():
    packages = set(re.search(r'find_packages\(include=\[([^\]]+)\]',
                             (ROOT / "setup.py").read_text())[1].replace('"', "").split(", "))
    top_level = {name for name in packages if "." not in name and "*" not in name}
    copied = set(re.findall(r"^COPY (\w+)/ ", DOCKERFILE, re.M))
    assert top_level == copied == {"pipeline", "transforms"}
    assert re.search(r"pip install .*'\.\[", DOCKERFILE)


def test_flink_deployment_carries_the_test_clusters_settings():
    ours = flatten(CONFIG)
    theirs = {key: str(value) for key, value in
              DEPLOYMENT["spec"]["flinkConfiguration"].items()}
    shared = {key: value for key, value in ours.items() if not PER_CLUSTER.match(key)}
    assert "taskmanager.numberOfTaskSlots" in shared and "heartbeat.timeout" in shared
    assert {key: theirs.get(key) for key in shared} == shared


def test_flink_deployment_runs_the_worker_image_beside_each_taskmanager():
    containers = DEPLOYMENT["spec"]["taskManager"]["podTemplate"]["spec"]["containers"]
    (pool,) = [c for c in containers if c["name"] == "beam-worker-pool"]
    assert "bedrock-batch-beam-worker" in pool["image"]
    assert "bedrock-batch-beam-worker" in DOCKERFILE
    assert pool["args"] == ["--worker_pool"]
    assert [p["containerPort"] for p in pool["ports"]] == [50000]
    assert DEPLOYMENT["spec"]["flinkVersion"] == "v1_19"


def test_no_credentials_in_the_deployment_files():
    deployment = (ROOT / "deploy" / "flink-session.yaml").read_text()
    for text in (deployment, DOCKERFILE):
        assert "AWS_ACCESS_KEY_ID" not in text and "AWS_SECRET_ACCESS_KEY" not in text


class _UniqueKeys(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys; Flink's parser refuses the file ("Error parsing
    YAML configuration") and no process of the cluster starts."""

    def construct_mapping(self, node: Any, deep: bool = False) -> dict:
        keys = [self.construct_object(key, deep=deep) for key, _value in node.value]
        repeated = sorted({key for key in keys if keys.count(key) > 1})
        assert not repeated, f"keys given twice at line {node.start_mark.line + 1}: {repeated}"
        return super().construct_mapping(node, deep=deep)


def test_the_cluster_config_gives_each_key_once():
    yaml.load(CONFIG_TEXT, Loader=_UniqueKeys)
