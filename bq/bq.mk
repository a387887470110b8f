# A local BigQuery emulator for the tests (PyPI bqemulator: REST API on DuckDB), in its own venv
# so its many dependencies (DuckDB, FastAPI, gRPC tools, OpenTelemetry) never change the versions
# the pipeline's .venv resolves. Created once; the stamp makes later
# runs a no-op until bq/requirements.txt changes. tests/bq_services.py reads the same venv: env
# BQEMU_VENV, default .cache/bqemulator-venv under the repo root.
PYTHON ?= python3
BQEMU_VENV ?= .cache/bqemulator-venv
BQEMU_STAMP := $(BQEMU_VENV)/.installed

.PHONY: bq-emulator bq-clean

bq-emulator: $(BQEMU_STAMP)

$(BQEMU_STAMP): bq/requirements.txt
	rm -rf $(BQEMU_VENV)
	$(PYTHON) -m venv $(BQEMU_VENV)
	$(BQEMU_VENV)/bin/python -m pip install -q -r $<
	touch $@

bq-clean:
	rm -rf $(BQEMU_VENV)
