# Two entry points: `make demo` (set up + main job) and `make test` (set up + tests).
# Each creates its virtual environment when missing. torch comes from the CPU wheel
# pinned in constraints.txt; the package itself only asks for a range.
PYTHON ?= python3
VENV   ?= .venv
VENV3  ?= .venv3
PIP    = --disable-pip-version-check -q
PYTEST_ARGS ?=

.PHONY: demo test test4 test3 setup lint docs claims-table clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP) -c constraints.txt torch
	$(VENV)/bin/pip install $(PIP) -c constraints.txt -e '.[dev]' 'transformer-lens>=4,<5'
	touch $@

# transformer-lens 3.x (HookedTransformer) environment
$(VENV3)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV3)
	$(VENV3)/bin/pip install $(PIP) -c constraints.txt torch
	$(VENV3)/bin/pip install $(PIP) -c constraints.txt -e '.[dev]' 'transformer-lens==3.9.0'
	touch $@

setup: $(VENV)/.installed $(VENV3)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/icl-interp report --out report

# pytest exits 5 when it collects nothing; that is not a failure of the suite.
test4: $(VENV)/.installed
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS) || [ $$? -eq 5 ]

test3: $(VENV3)/.installed
	$(VENV3)/bin/python -m pytest -m tl3 $(PYTEST_ARGS) || [ $$? -eq 5 ]

test: test4 test3

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check icl_interp probes recipes benchmarks tests docs/hooks

# the documentation site (MkDocs, strict: a broken link or reference fails) into site/
docs: $(VENV)/.installed
	$(VENV)/bin/mkdocs build --strict --site-dir site

# after the report in docs/report/ is regenerated: copy its claims table into README.md
claims-table:
	$(PYTHON) docs/hooks/pages.py readme

clean:
	rm -rf $(VENV) $(VENV3) report site
