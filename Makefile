# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Both create .venv when missing and install the package from setup.py; `make test` also
# fetches the Kafka and Flink jars from Maven Central (cached under .cache/jvm).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_FLAGS ?= -q

include jvm/jvm.mk

.PHONY: demo test install clean

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[local,kafka,test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m pipeline run --input pipeline/samples/calls.jsonl --output out/demo

test: $(STAMP) jvm-jars
	$(PY) -m pytest $(PYTEST_FLAGS) tests

clean: jvm-clean
	rm -rf $(VENV) out .pytest_cache
