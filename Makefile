# `make test` and `make demo` work on a fresh clone: they create .venv and install the project first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test lint demo bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
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
	$(BIN)/splitprune validate ../shared/data/h100/h100_b1.csv --board h100-nvml --metric both 2>/dev/null || echo "(no ../shared/data/h100 beside this clone: skipped the check on real H100 measurements)"
	$(BIN)/splitprune split torchvision:mobilenet_v2 --board tx2 --link 5g --server gpu-server --sweep-bandwidth 100k:1G --plot out/split_tx2_5g.png
	$(BIN)/splitprune split torchvision:resnet18 --board tx2 --link wifi --server gpu-server --sweep-bandwidth 100k:1G --objective latency --export out/split_tx2_wifi_latency --json > out/split_tx2_wifi_latency.json
	$(BIN)/splitprune prune torchvision:resnet18 --board tx2 --budget 0.5 --output out/resnet18_pruned_tx2.pt --plot out/prune_tx2.png
	$(BIN)/splitprune plan torchvision:resnet18 --board tx2 --link 5g --energy-budget-mj 77 --plot out/plan_tx2_5g.png
	@echo "demo outputs written to out/"

bench: setup
	$(BIN)/python benchmarks/bench_trace.py

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache .mypy_cache
