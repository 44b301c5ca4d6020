# The two set-up commands (README): `make run` and `make test`. Both install what is missing
# (apt packages, a .venv with the project) and are fast on a second run.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DEVICES ?= devices.toml

.PHONY: run test deps lab-up lab-down bench clean

deps: $(VENV)/.installed
	@scripts/install-deps all

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { scripts/install-deps base; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; $(PYTHON) -m venv $(VENV); }
	@$(BIN)/pip install -q --disable-pip-version-check -e '.[test,browser,bench,labgrid]'
	@touch $@

# The suite against the embedded lab; the report path is printed at the end. The lab is
# taken down whatever the result, and the suite's exit code is kept.
run: deps
	@$(BIN)/neighcheck lab up --devices $(DEVICES)
	@$(BIN)/neighcheck run --devices $(DEVICES); rc=$$?; \
		$(BIN)/neighcheck lab down --devices $(DEVICES); exit $$rc

# The harness's own tests: unit tests and tests against lab devices.
test: deps
	@$(BIN)/python -m pytest -p no:cacheprovider -q tests

bench: deps
	@$(BIN)/neighcheck lab up --devices $(DEVICES)
	@$(BIN)/neighcheck bench --devices $(DEVICES); rc=$$?; \
		$(BIN)/neighcheck lab down --devices $(DEVICES); exit $$rc

lab-up: deps
	@$(BIN)/neighcheck lab up --devices $(DEVICES)

lab-down:
	@$(BIN)/neighcheck lab down --devices $(DEVICES)

clean: lab-down
	rm -rf $(VENV) build *.egg-info
