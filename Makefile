# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
OUT    ?= out
SHARED_TOOLS := ../shared/tools/check_slicer_api.py

.PHONY: env test demo bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# the CPU wheel of torch 2.13.0 installs from local disk; other specs may pull CUDA builds
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

env: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q Testing
	if [ -f $(SHARED_TOOLS) ]; then $(PY) $(SHARED_TOOLS) .; fi

demo: $(STAMP)
	$(PY) Scripts/demo.py --out $(OUT)/demo

clean:
	rm -rf $(OUT) .pytest_cache
