# The README's two commands:
#   make run    install everything and run the main job (spacy project run all)
#   make test   install everything and run the test suite
# Both create and use the virtual environment .venv.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch to install: the default is the build PyPI serves for this platform; pick another with TORCH=...
TORCH ?= torch==2.13.0
# Extra arguments for `spacy project run all`, e.g. ARGS="--vars.gpu_id 0"
ARGS ?=

.PHONY: install run test lint browser clean

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[train,test,serve,reports,onnx,docs,ray]"
	touch $@

install: $(VENV)/.installed

run: install
	$(PY) -m spacy project run all . $(ARGS)

# Chromium for the browser test: Debian's package (no browser download).
browser:
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && \
		(apt-get update -qq && apt-get install -y -qq chromium >/dev/null) ; } || \
		echo "Chromium not installed: the browser test will be skipped"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: install browser lint
	$(PY) -m pytest tests -ra; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

clean:
	rm -rf corpus training metrics packages reports project.lock
