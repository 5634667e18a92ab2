# `make test` and `make demo` work on a fresh clone: they create .venv and install the project first,
# at the versions in constraints.txt (the lock, frozen from a green run). `make test-latest` runs the
# same checks in .venv-latest against the newest versions pyproject.toml allows; `make lock` rewrites
# constraints.txt from .venv after a green run (see README, "Test environment").
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := constraints.txt
LATEST := .venv-latest
LATEST_BIN := $(LATEST)/bin

.PHONY: setup test lint demo bench clean lock test-latest

$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c $(LOCK) --upgrade pip
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

demo: setup
	mkdir -p out
	$(BIN)/splitprune estimate torchvision:resnet18 --board tx2 --plot out/estimate_tx2.png
	$(BIN)/splitprune estimate torchvision:resnet18 --board tx2 --json > out/estimate_tx2.json
	$(BIN)/splitprune estimate torchvision:resnet18 --board xavier-nx --plot out/estimate_xavier_nx.png
	$(BIN)/splitprune estimate torchvision:resnet18 --board xavier-nx --json > out/estimate_xavier_nx.json
	$(BIN)/splitprune estimate torchvision:resnet18 --board tx2 --mode graph --top 5
	$(BIN)/splitprune estimate torchvision:resnet18 --board xavier-nx --mode tensorrt --precision int8 --batch 8 --top 5
	$(BIN)/splitprune estimate torchvision:resnet50 --board agx-xavier --mode tensorrt --precision fp16 --power-mode all --deadline-ms 10
	$(BIN)/splitprune estimate torchvision:resnet50 --board agx-orin --mode tensorrt --precision int8 --launch cuda-graph --batch 8 --top 5
	$(BIN)/splitprune estimate ultralytics:yolo11n --board orin-nano --mode tensorrt --precision fp16 --input-shape 1,3,640,640 --top 5
	$(BIN)/splitprune validate --networks data/jetson_published/networks.csv --board tx2 --board-filter jetson-tx2
	$(BIN)/splitprune validate --networks data/jetson_published/networks_orin.csv --board agx-orin --board-filter jetson-agx-orin
	$(BIN)/splitprune validate data/h100/h100_b1.csv --board h100-nvml --metric both
	$(BIN)/splitprune split torchvision:mobilenet_v2 --board tx2 --link 5g --server gpu-server --sweep-bandwidth 100k:1G --plot out/split_tx2_5g.png
	$(BIN)/splitprune split torchvision:resnet18 --board tx2 --link wifi --server gpu-server --sweep-bandwidth 100k:1G --objective latency --export out/split_tx2_wifi_latency --json > out/split_tx2_wifi_latency.json
	$(BIN)/splitprune prune torchvision:resnet18 --board tx2 --budget 0.5 --output out/resnet18_pruned_tx2.pt --plot out/prune_tx2.png
	$(BIN)/splitprune plan torchvision:resnet18 --board tx2 --link 5g --mode tensorrt --precision fp16 --energy-budget-mj 50 --plot out/plan_tx2_5g.png
	@echo "demo outputs written to out/"

# Keep the locked versions where they still satisfy pyproject.toml and resolve the rest afresh (a
# dependency added since the last lock; or everything, when the locked set no longer installs), run
# the checks, and freeze what passed. The project itself is left out of the lock.
# `make lock FRESH=1` moves every package to the newest version allowed instead.
lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(if $(FRESH),--upgrade --upgrade-strategy eager,-c $(LOCK)) -e ".[dev]" \
		|| { echo "the lock no longer installs with pyproject.toml: resolving afresh"; \
		     $(BIN)/python -m pip install --quiet -e ".[dev]"; }
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest
	{ echo "# The versions \`make test\` installs, frozen from a green run by \`make lock\` (see README)."; \
	  $(BIN)/python -m pip freeze --all --exclude-editable | grep -v -i -E '^splitprune( |=|@|$$)'; } > $(LOCK).new
	mv $(LOCK).new $(LOCK)
	touch $(STAMP)

# The newest versions pyproject.toml allows (torch stays at what the dev extra pins), in their own
# venv, through the same checks: drift shows up here on purpose before it reaches the lock.
test-latest:
	test -x $(LATEST_BIN)/python || $(PYTHON) -m venv $(LATEST)
	$(LATEST_BIN)/python -m pip install --quiet --upgrade pip
	$(LATEST_BIN)/python -m pip install --quiet --upgrade --upgrade-strategy eager -e ".[dev]"
	$(LATEST_BIN)/python -m pip list 2>/dev/null | grep -i -E '^(cvxpy|highspy|numpy|scipy|torch|torch-pruning|torchvision) '
	$(LATEST_BIN)/ruff check .
	$(LATEST_BIN)/mypy
	$(LATEST_BIN)/pytest

bench: setup
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e ".[dev,bench]"
	$(BIN)/python benchmarks/bench_trace.py

clean:
	rm -rf $(VENV) $(LATEST) out .pytest_cache .ruff_cache .mypy_cache
