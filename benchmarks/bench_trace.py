"""Trace + annotate speed, and the whole `estimate` process against building the model alone.

Prints one JSON document. Run: .venv/bin/python benchmarks/bench_trace.py
"""

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

import splitprune as sp
from splitprune.models import load_model

MODELS = [
    "resnet18", "resnet50", "mobilenet_v2", "efficientnet_b0", "googlenet", "densenet121",
    "inception_v3", "convnext_tiny", "vit_b_16", "swin_t", "regnet_y_400mf",
]  # fmt: skip
REPEATS = 5
BIN = Path(sys.executable).parent


def trace_and_annotate_s(name: str, board: sp.BoardProfile) -> dict:
    loaded = load_model(f"torchvision:{name}", device="meta")
    x = torch.empty(loaded.input_shape, device="meta")
    times = []
    for _ in range(REPEATS + 1):
        start = time.perf_counter()
        graph = sp.annotate(sp.trace(loaded.module, x), board)
        times.append(time.perf_counter() - start)
    return {
        "model": name,
        "nodes": len(graph.order),
        "gmacs": round(graph.total_macs / 1e9, 3),
        "energy_mj": round(graph.total_energy_j * 1e3, 2),
        "first_s": round(times[0], 4),
        "median_s": round(statistics.median(times[1:]), 4),
    }


def process_s(command: list[str], repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return round(statistics.median(times), 3)


def main() -> None:
    board = sp.load_board("tx2")
    rows = [trace_and_annotate_s(name, board) for name in MODELS]
    baseline = process_s(
        [sys.executable, "-c", "import torch, torchvision; torchvision.models.resnet50(weights=None)"]
    )
    estimate = process_s([str(BIN / "splitprune"), "estimate", "torchvision:resnet50", "--json"])
    resnet50 = next(r for r in rows if r["model"] == "resnet50")
    print(json.dumps({
        "benchmark": "trace",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "models": rows,
        "resnet50_trace_annotate_median_s": resnet50["median_s"],
        "resnet50_target_s": 0.3,
        "process_import_and_build_resnet50_s": baseline,
        "process_estimate_resnet50_json_s": estimate,
        "process_ratio": round(estimate / baseline, 3),
        "process_ratio_target": 1.0,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
