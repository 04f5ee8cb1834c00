# The two commands of the README: `make demo` and `make test`.
# Both create (or reuse) a project-local virtual environment in .venv.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.rfm-setup-done
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup demo test lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch (taken from local disk here); an unpinned torch pulls a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[train,dev,serve]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/rfm demo

test: setup
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -p no:cacheprovider

clean:
	rm -rf $(VENV) build *.egg-info
