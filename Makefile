# The README's two commands: `make demo` and `make test`. Each installs what it
# needs (Debian packages via deploy/scripts/install-deps.sh, then a .venv with
# the package and its extras) before it runs.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: demo test bench deps venv clean

demo: venv
	@bash deploy/scripts/install-deps.sh
	$(VENV)/bin/haven demo $(if $(SITE),--site $(SITE))

test: venv
	@bash deploy/scripts/install-deps.sh --browser
	$(PY) -m pytest $(PYTEST_ARGS)

# Every issue #9 benchmark, a table of figures against baselines, peer and targets
# (~10 min; BENCH_ARGS="--runs 1 --quick" for a smoke run). See docs/performance.md.
bench: venv
	@bash deploy/scripts/install-deps.sh
	$(PY) bench/run_all.py $(BENCH_ARGS)

deps:
	bash deploy/scripts/install-deps.sh --browser

venv: $(STAMP)

$(STAMP): pyproject.toml
	@bash deploy/scripts/install-deps.sh
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[hub,test]'
	rm -f $(VENV)/.installed-*
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache *.egg-info
