# The README's commands. Each creates .venv when missing and installs what is missing;
# when everything is installed already, the install step is a no-op (a stamp file).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test lint lab references figures notebooks-full browser-deps clean

# What `make test` compares before and after pytest: tests must leave the checkout as they found it.
TREE_STATE = { git status --porcelain --untracked-files=all && git diff; } 2>/dev/null | cksum

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[notebooks,dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (reactdiff-lite)" >/dev/null
	@touch $@

demo: $(STAMP)
	$(BIN)/python -m reactdiff_lite demo --preset default --out runs/demo

# Lint first, so a back-edge in the layers fails in seconds; then the tests, which must leave the
# tree clean (they write to temp folders; `make figures` and `make references` rewrite on purpose).
test: lint browser-deps
	@before="$$($(TREE_STATE))"; echo "$(BIN)/python -m pytest"; $(BIN)/python -m pytest || exit $$?; \
	  if [ "$$($(TREE_STATE))" != "$$before" ]; then \
	    echo "make test: the tests changed the working tree (git status below); they must write to temp folders"; \
	    git status --short; exit 1; fi

lint: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Jupyter refuses root without --allow-root, and containers often run as root.
lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/ $$([ "$$(id -u)" = 0 ] && echo --allow-root)

# Re-run every notebook in SMOKE mode and rewrite tests/references/*.json, printing the diff.
references: $(STAMP)
	REACTDIFF_REFRESH_REFERENCES=1 $(BIN)/python -m pytest tests/test_notebooks.py -k execute
	git --no-pager diff --stat -- tests/references; git --no-pager diff -- tests/references
	@git status --short --untracked-files=all -- tests/references | sed -n 's/^?? /new reference: /p'

# Rewrite the committed figures/explorer.png from the real-browser test (`make demo` and
# `python -m reactdiff_lite ablate` / `compare` publish the other figures of the README run).
figures: $(STAMP) browser-deps
	REACTDIFF_WRITE_FIGURES=1 REACTDIFF_REQUIRE_BROWSER=1 $(BIN)/python -m pytest tests/test_browser.py
	git --no-pager diff --stat -- figures

# Every numbered notebook with SMOKE = False against the demo's model (run `make demo` first);
# prints each notebook's wall time. Not in CI: about 20 minutes on 2 cores.
notebooks-full: $(STAMP)
	$(BIN)/python tests/run_notebooks_full.py --demo runs/demo --out runs/notebooks-full

# Chromium for the real-browser widget test (Debian package; needs root or sudo).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	    ($$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	    || echo "browser-deps: could not install chromium; the browser test will be skipped"; }

clean:
	rm -rf runs .pytest_cache
