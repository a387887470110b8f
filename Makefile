# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Both create .venv when missing, install the package from setup.py and build Prism, Beam's
# local runner (cached under .cache/prism); `make test` also fetches the Kafka and Flink jars
# from Maven Central (cached under .cache/jvm), builds Beam's Python SDK boot for Flink's PROCESS
# workers (.cache/beam-boot) and the BigQuery emulator's own venv (.cache/bqemulator-venv).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_FLAGS ?= -q --durations=25

include jvm/jvm.mk
include bq/bq.mk

.PHONY: demo test faults combos timing failover bench install clean browser prism beam-boot

$(STAMP): setup.py Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[kafka,bigquery,test]'
	touch $(STAMP)

install: $(STAMP)

# Prism, Beam's Go runner, built from the Go module proxy at the Python SDK's own Beam version
# (read from setup.py, where it is stated once) into .cache/prism/v<version>/prism, where the
# CLI looks for it. Without it, Beam downloads Prism from GitHub on first use.
BEAM_VERSION := $(shell sed -n 's/^BEAM = "apache-beam\[[a-z,]*\]==\([0-9.]*\)"$$/\1/p' setup.py)
PRISM := .cache/prism/v$(BEAM_VERSION)/prism

prism: $(PRISM)

$(PRISM):
	GOBIN=$(abspath $(dir $@)) go install github.com/apache/beam/sdks/v2/go/cmd/prism@v$(BEAM_VERSION)

# Beam's Python SDK boot (the SDK container's entrypoint, sdks/python/container), built the same
# way at the same version into .cache/beam-boot/v<version>/container, where tests/flink_cluster.py
# looks for it: the command of a PROCESS environment, which a Flink TaskManager runs to start its
# own SDK workers (docs/deploy-flink.md, "PROCESS workers").
BEAM_BOOT := .cache/beam-boot/v$(BEAM_VERSION)/container

beam-boot: $(BEAM_BOOT)

$(BEAM_BOOT):
	GOBIN=$(abspath $(dir $@)) go install github.com/apache/beam/sdks/v2/python/container@v$(BEAM_VERSION)

demo: $(STAMP) $(PRISM)
	$(PY) -m pipeline run --input pipeline/samples/calls.jsonl --output out/demo --overwrite --task insights
	$(PY) -m pipeline.samples.show out/demo

test: $(STAMP) $(PRISM) $(BEAM_BOOT) jvm-jars bq-emulator browser
	$(PY) -m pytest $(PYTEST_FLAGS) -m "not timing and not failover" tests

# Streaming runs with checkpointing on a Flink session cluster, for a watched folder and for
# Kafka: one whose watch ends before its windows close, and three that lose a TaskManager
# (SIGKILL) at three points (tests/test_failover.py), with PROCESS SDK workers that each
# TaskManager starts (Beam's boot). Minutes per case, so a target of its own, which .ci/run
# calls after `make test`.
failover: $(STAMP) $(BEAM_BOOT) jvm-jars
	$(PY) -m pytest $(PYTEST_FLAGS) -m failover tests

# Measurements of when things happen on a real Flink (a window's jobs before the watch ends):
# they depend on how busy the machine is, so they are not part of `make test`.
timing: $(STAMP) jvm-jars
	$(PY) -m pytest $(PYTEST_FLAGS) -m timing tests

# The whole fault matrix (`make test` runs every case on the FnApiRunner and a seeded few on
# Prism): one CLI run per injected fault and local runner on the local backend; the report ends
# with the table of runner, inputs, rows, jobs, duplicate jobs and lost records.
faults: $(STAMP) $(PRISM)
	FAULTS=all $(PY) -m pytest $(PYTEST_FLAGS) tests/test_fault_matrix.py

# The whole combination matrix (`make test` runs a seeded handful of its cases): one CLI run per
# generated all-pairs combination of input format, source, windows, undersized policy, task,
# model family, redaction, sink, injected record errors and runner; the report ends with its table.
combos: $(STAMP) $(PRISM) jvm-jars bq-emulator
	COMBOS=all $(PY) -m pytest $(PYTEST_FLAGS) tests/test_combos.py

# Debian's chromium for the run report's browser test (tests/test_report_browser.py), which
# Playwright drives; Playwright never downloads a browser of its own here. Quick once installed.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	test -x /usr/bin/chromium || { $(SUDO) apt-get update && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }

# The scale benchmarks (not part of `make test`): each row beside a baseline measured in
# the same run and its goal; the figures are kept in benchmarks/results.json. Rows 4 and 10 run
# Flink (10 on session clusters of one and two TaskManagers, with PROCESS workers: Beam's boot).
bench: $(STAMP) $(PRISM) $(BEAM_BOOT) jvm-jars
	$(PY) -m benchmarks

clean: jvm-clean bq-clean
	rm -rf $(VENV) out .pytest_cache .cache/prism .cache/beam-boot
