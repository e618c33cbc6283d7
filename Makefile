# Set-up and entry points. `make demo` and `make test` create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SHAPES := datasets/data/shapes
CONFIG ?= configs/shapes_resnet18.yaml

.PHONY: demo test lint typecheck clean-venv

$(BIN)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

demo: $(BIN)/.installed
	$(BIN)/python datasets/make_shapes.py --out $(SHAPES)
	$(BIN)/python tools/train.py --config $(CONFIG)

# pytest exits with 5 when it collects no tests: report it as the failure it is here.
test: $(BIN)/.installed
	@$(BIN)/python -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; fi; exit $$rc

lint: $(BIN)/.installed
	$(BIN)/ruff check .

typecheck: $(BIN)/.installed
	$(BIN)/mypy centernet

clean-venv:
	rm -rf $(VENV)
