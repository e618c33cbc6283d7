# Set-up and entry points. `make demo` and `make test` create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SHAPES := datasets/data/shapes
TREES := datasets/data/trees
CONFIG ?= configs/trees_efficientnet_lite0.yaml
SHAPES_CONFIG := configs/shapes_resnet18.yaml
# The tree-crown demo data ships inside this package; only its data files are used (--no-deps: none of
# its own dependencies are needed, and it is never imported).
DEEPFOREST := deepforest==2.1.0
RUN_DIR = work_dirs/$(basename $(notdir $(CONFIG)))

.PHONY: demo demo-shapes test lint typecheck gpu-check clean-venv

$(BIN)/.installed: requirements.txt requirements-dev.txt pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/pip install --quiet --no-deps $(DEEPFOREST)
	touch $@

# Tree crowns: cut the deepforest sample images into tiles (once), train, evaluate on the val sets:
# yell_report (the reported part of the in-domain hold-out; best.pth is chosen on yell_select), cross_site
# (two images of other sites) and yell_strips (the hold-out as whole strips, sliced).
# Run again, it reports the finished run's metrics (an interrupted run resumes); train afresh with
# `make demo TRAIN_FLAGS=--overwrite` (the earlier run is moved to work_dirs/<name>.old-<timestamp>).
TRAIN_FLAGS ?= --auto-resume
demo: $(BIN)/.installed
	$(BIN)/python datasets/prepare_trees.py --out $(TREES)
	$(BIN)/python tools/train.py --config $(CONFIG) $(TRAIN_FLAGS)
	@for set in yell_report cross_site yell_strips; do \
	  echo "$$set:"; \
	  echo "  metrics:     $(RUN_DIR)/eval/$$set/metrics.json (COCO AP, box precision/recall at IoU 0.4)"; \
	  echo "  predictions: $(RUN_DIR)/eval/$$set/predictions.png (green: ground truth, magenta: predictions)"; \
	  echo "  curves:      $(RUN_DIR)/eval/$$set/pr_curves.png, $(RUN_DIR)/eval/$$set/f1_curve.png"; \
	done
	@echo "TensorBoard: $(BIN)/tensorboard --logdir $(RUN_DIR)/tb"

# The synthetic shapes set: a quick example without real data (ResNet-18 from scratch).
demo-shapes: $(BIN)/.installed
	$(BIN)/python datasets/make_shapes.py --out $(SHAPES)
	$(BIN)/python tools/train.py --config $(SHAPES_CONFIG) $(TRAIN_FLAGS)

# Two pytest workers (pytest-xdist), each taking whole test files so a file's module fixtures are built
# once; most tests train with one torch thread and wait on subprocesses, so two workers keep two cores busy.
# pytest exits with 5 when it collects no tests: report it as the failure it is here.
TEST_WORKERS ?= 2
test: $(BIN)/.installed
	@$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; fi; exit $$rc

lint: $(BIN)/.installed
	$(BIN)/ruff check .

typecheck: $(BIN)/.installed
	$(BIN)/mypy centernet

# Correctness and speed on one CUDA device (~8 min); writes benchmarks/gpu_report_<UTC time>.{json,md}.
gpu-check: $(BIN)/.installed
	$(BIN)/python benchmarks/gpu.py

clean-venv:
	rm -rf $(VENV)
