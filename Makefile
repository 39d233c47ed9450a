# The README's commands. Each creates .venv when missing and installs what is missing;
# when everything is installed already, the install step is a no-op (a stamp file).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test lab references explore browser-deps clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[notebooks,dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (reactdiff-lite)" >/dev/null
	@touch $@

demo: $(STAMP)
	$(BIN)/python -m reactdiff_lite demo --preset default --out runs/demo

test: $(STAMP) browser-deps
	$(BIN)/python -m pytest

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

# Re-run every notebook in SMOKE mode and rewrite tests/references/*.json, printing the diff.
references: $(STAMP)
	REACTDIFF_REFRESH_REFERENCES=1 $(BIN)/python -m pytest tests/test_notebooks.py -k execute
	git --no-pager diff --stat -- tests/references; git --no-pager diff -- tests/references
	@git status --short --untracked-files=all -- tests/references | sed -n 's/^?? /new reference: /p'

# Chromium for the real-browser widget test (Debian package; needs root or sudo).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	    ($$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	    || echo "browser-deps: could not install chromium; the browser test will be skipped"; }

clean:
	rm -rf runs .pytest_cache
