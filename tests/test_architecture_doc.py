"""docs/architecture.md states the Beam version skew once; the pins must match what it says."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")


def stated(label: str) -> str:
    match = re.search(rf"\*\*{label} is Beam (\d+\.\d+\.\d+)\*\*", DOC)
    assert match, f"docs/architecture.md no longer states '**{label} is Beam X.Y.Z**'"
    return match[1]


def test_setup_py_pins_the_python_sdk_the_doc_states():
    pins = set(re.findall(r"apache-beam\[[a-z,]+\]==([\d.]+)", (ROOT / "setup.py").read_text()))
    assert pins == {stated("Python SDK")}


def test_the_flink_pom_pins_the_java_beam_the_doc_states():
    pom = (ROOT / "jvm" / "flink" / "pom.xml").read_text()
    assert re.findall(r"<beam.version>([\d.]+)</beam.version>", pom) == [stated("Java job server for Flink")]


def test_the_skew_is_stated_only_in_the_doc():
    java = stated("Java job server for Flink")
    for other in ("README.md", "jvm/README.md", "setup.py"):
        assert java not in (ROOT / other).read_text(encoding="utf-8"), (
            f"{other} restates the Java Beam version; point to docs/architecture.md instead")
