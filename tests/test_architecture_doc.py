"""docs/architecture.md states the Beam version skew once; the pins must match what it says."""
import re
import subprocess
from pathlib import Path

from apache_beam.version import __version__ as installed_beam

from pipeline import runners
from tests.flink_cluster import BEAM_BOOT

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


def test_make_prism_builds_the_python_sdks_beam_where_the_cli_looks():
    """The Makefile reads the version from setup.py (no version of its own), builds Prism at it,
    and puts it where the CLI looks for the installed SDK's version."""
    makefile = (ROOT / "Makefile").read_text()
    command = re.search(r"^BEAM_VERSION := \$\(shell (.+)\)$", makefile, re.M)[1]
    version = subprocess.run(command.replace("$$", "$"), shell=True, cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.strip()
    assert version == stated("Python SDK") == installed_beam
    assert re.search(r"^PRISM := \.cache/prism/v\$\(BEAM_VERSION\)/prism$", makefile, re.M)
    assert "go/cmd/prism@v$(BEAM_VERSION)" in makefile
    assert runners.CACHE / f"v{version}" / "prism" == ROOT / ".cache" / "prism" / f"v{version}" / "prism"


def test_make_beam_boot_builds_the_python_sdks_boot_where_the_cluster_tests_look():
    """Beam's boot (PROCESS workers on Flink) is built at the same version, where
    tests/flink_cluster.py looks for it."""
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^BEAM_BOOT := \.cache/beam-boot/v\$\(BEAM_VERSION\)/container$", makefile,
                     re.M)
    assert "sdks/v2/python/container@v$(BEAM_VERSION)" in makefile
    assert BEAM_BOOT == ROOT / ".cache" / "beam-boot" / f"v{installed_beam}" / "container"


def test_every_module_path_the_docs_name_exists():
    """The module table and the prose name real files and folders (a move updates the docs)."""
    missing = []
    for doc in ("docs/architecture.md", "README.md"):
        text = (ROOT / doc).read_text(encoding="utf-8")
        for path in set(re.findall(r"`((?:transforms|pipeline)/[\w/.]*)`", text)):
            if not (ROOT / path).exists():
                missing.append(f"{doc}: {path}")
    assert sorted(missing) == []


def test_every_folder_of_transforms_is_in_the_folder_table():
    folders = {f"transforms/{p.name}/" for p in (ROOT / "transforms").iterdir()
               if (p / "__init__.py").exists()}
    assert {f for f in folders if f"| `{f}` |" not in DOC} == set()
