# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# They install the exact versions the suite last passed with (constraints.txt), not the
# newest ones setup.cfg allows. Refresh the pins: `make constraints && make test`, then
# commit constraints.txt if the suite passes.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test venv bench clean constraints

$(STAMP): setup.cfg pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m launch.classify
	$(PY) -m launch.sanity_check --flagfile=launch/flags/demo.flags

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist worksteal --durations=30 tests

bench: $(STAMP)
	$(PY) benchmarks/fv_throughput.py
	$(PY) benchmarks/occlusion_throughput.py

clean:
	rm -rf $(VENV) workdir

# Re-resolves `pip install -e .[test]` in a throwaway venv (the newest versions setup.cfg
# allows) and writes its `pip freeze` to constraints.txt. The next `make test` installs them.
constraints:
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(PYTHON) -m venv "$$tmp/venv"; \
	"$$tmp/venv/bin/python" -m pip install --quiet --upgrade pip; \
	"$$tmp/venv/bin/python" -m pip install --quiet -e '.[test]'; \
	{ echo "# Exact versions the suite last passed with; \`make venv/demo/test\` install them (pip -c)."; \
	  echo "# setup.cfg keeps the ranges for library users. Refresh: \`make constraints && make test\`,"; \
	  echo "# then commit this file if the suite passes. Written by \`make constraints\` ($$("$$tmp/venv/bin/python" -c 'import platform, sys; print(f"Python {platform.python_version()}, {sys.platform}")'))."; \
	  "$$tmp/venv/bin/python" -m pip freeze --exclude-editable; } > "$$tmp/constraints.txt"; \
	mv "$$tmp/constraints.txt" constraints.txt; \
	echo "constraints.txt refreshed; run make test, and commit it if the suite passes"
