# `make demo` and `make test` set everything up on a fresh machine.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test serve bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch is pinned by constraints.txt (the CPU build); see README for GPU hosts.
	$(PY) -m pip install -q -c constraints.txt -e ".[postgres,train,braket,test,bench,compile,serve,ray,mlflow]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/jobforge demo

test: $(STAMP)
	# The JavaScript SDK for the tests that drive it through node (skipped where node or npm is absent).
	if command -v npm >/dev/null; then npm ci --prefix tests/js --no-audit --no-fund --silent; fi
	# pytest exits 5 when it collects nothing: not a failure.
	$(PY) -m pytest -n 2 --dist loadfile -q || [ $$? -eq 5 ]

serve: $(STAMP)
	$(VENV)/bin/jobforge serve

bench: $(STAMP)
	for b in bench/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .jobforge
