# make demo | make test | make bench | make lint  — each creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PLUGINS := $(sort $(wildcard plugins/*))
EXAMPLE_PACKAGES := $(sort $(dir $(wildcard examples/*/pyproject.toml)))
PEERS := $(patsubst peers/%.txt,.peers/%/.installed,$(wildcard peers/*.txt))
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install test lint demo bench peers clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python requirements-dev.txt core/pyproject.toml $(wildcard plugins/*/pyproject.toml) $(wildcard examples/*/pyproject.toml)
	$(BIN)/pip install -q -r requirements-dev.txt -e 'core[httpx,requests,aiohttp]' \
		$(foreach p,$(PLUGINS),-e '$(p)[test]') $(foreach p,$(EXAMPLE_PACKAGES),-e '$(p)')
	touch $@

install: $(STAMP)

# Receivers whose dependencies clash with ours get a virtualenv each under .peers/.
.peers/%/.installed: peers/%.txt
	$(PYTHON) -m venv .peers/$*
	.peers/$*/bin/pip install -q --upgrade pip
	.peers/$*/bin/pip install -q -r $<
	touch $@

peers: $(PEERS)

test: install peers
	$(BIN)/pytest -q $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check core plugins tests examples benchmarks
	$(BIN)/mypy core/src $(foreach p,$(PLUGINS),$(p)/src)

demo: install
	$(BIN)/python examples/gateway/demo.py

bench: install peers
	$(BIN)/pip install -q -r benchmarks/requirements.txt
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .peers
