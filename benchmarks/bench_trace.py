"""Trace + annotate speed next to thop, torchinfo, fvcore and FlopCounterMode, and the estimate process.

Every tool gets a fresh model per call (built before the clock starts), one thread; the tools run
interleaved (one call each per round, so a loaded machine slows them alike), the median of REPEATS
rounds after a warm-up round. splitprune traces a meta-device model (no arithmetic); the others run
a real forward pass, which is how they count. MACs are printed beside each time so a fast wrong
answer shows. Prints one JSON document. Run:
OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_trace.py [spec ...]
"""

import contextlib
import json
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch

import splitprune as sp
from splitprune.models import load_model

MODELS = [
    "torchvision:resnet18", "torchvision:resnet50", "torchvision:mobilenet_v2",
    "torchvision:efficientnet_b0", "torchvision:vit_b_16", "torchvision:ssdlite320_mobilenet_v3_large",
    "ultralytics:yolo11n",
]  # fmt: skip
REPEATS = 7
BIN = Path(sys.executable).parent


def _timed(make, call) -> tuple[float, int]:
    args = make()
    start = time.perf_counter()
    macs = call(*args)
    return time.perf_counter() - start, int(macs)


def _ours(spec: str, board: sp.BoardProfile):
    def make():
        loaded = load_model(spec, device="meta")
        return loaded.module, torch.empty(loaded.input_shape, device=loaded.device)

    def call(model, x):
        return sp.annotate(sp.trace(model, x), board).total_macs

    return make, call


def _real(spec: str):
    def make():
        loaded = load_model(spec)
        return loaded.module, torch.randn(loaded.input_shape)

    return make


def _thop(model, x):
    import thop

    macs, _ = thop.profile(model, inputs=(x,), verbose=False)
    return macs


def _torchinfo(model, x):
    import torchinfo

    return torchinfo.summary(model, input_data=x, verbose=0).total_mult_adds


def _fvcore(model, x):
    from fvcore.nn import FlopCountAnalysis

    analysis = FlopCountAnalysis(model, x)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return analysis.total()  # fvcore counts one "flop" per multiply-accumulate


def _flop_counter(model, x):
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() // 2


TOOLS = {"thop": _thop, "torchinfo": _torchinfo, "fvcore": _fvcore, "flop_counter": _flop_counter}


def bench_model(spec: str, board: sp.BoardProfile) -> dict:
    """Time splitprune and every tool on ``spec``, interleaved (one call of each per round).

    Interleaving puts every tool under the same load on a shared machine; medians of REPEATS
    rounds after a warm-up round.
    """
    tools = {"splitprune": (*_ours(spec, board), False)}
    tools |= {name: (_real(spec), tool, True) for name, tool in TOOLS.items()}
    times: dict[str, list[float]] = {name: [] for name in tools}
    macs: dict[str, int] = {}
    errors: dict[str, str] = {}
    for round_ in range(REPEATS + 1):
        for name, (make, call, no_grad) in tools.items():
            if name in errors:
                continue
            try:
                with torch.no_grad() if no_grad else contextlib.nullcontext():
                    seconds, macs[name] = _timed(make, call)
            except Exception as exc:  # a tool that cannot count a model is reported, not fatal
                errors[name] = f"{type(exc).__name__}: {str(exc)[:120]}"
                continue
            if round_:
                times[name].append(seconds)
    graph = sp.trace(load_model(spec, device="meta").module, torch.empty(load_model(spec).input_shape))
    ours_s = round(statistics.median(times["splitprune"]), 4)
    row: dict[str, Any] = {
        "model": spec,
        "tracer": graph.tracer,
        "splitprune_s": ours_s,
        "splitprune_macs": macs["splitprune"],
    }
    for name in TOOLS:
        if name in errors:
            row[f"{name}_error"] = errors[name]
        else:
            row[f"{name}_s"], row[f"{name}_macs"] = round(statistics.median(times[name]), 4), macs[name]
    others = [row[f"{n}_s"] for n in TOOLS if f"{n}_s" in row]
    row["fastest_other_s"] = min(others) if others else None
    row["ratio_to_fastest"] = round(ours_s / min(others), 3) if others else None
    return row


def process_s(command: list[str], repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return round(statistics.median(times), 3)


def main() -> None:
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    board = sp.load_board("tx2")
    rows = [bench_model(spec, board) for spec in (sys.argv[1:] or MODELS)]
    baseline = process_s(
        [sys.executable, "-c", "import torch, torchvision; torchvision.models.resnet50(weights=None)"]
    )
    estimate = process_s([sys.executable, "-m", "splitprune", "estimate", "torchvision:resnet50", "--json"])
    print(json.dumps({
        "benchmark": "trace",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "repeats": REPEATS,
        "models": rows,
        "slowest_ratio_to_fastest_other": max(r["ratio_to_fastest"] or 0 for r in rows),
        "ratio_target": 1.0,
        "process_import_and_build_resnet50_s": baseline,
        "process_estimate_resnet50_json_s": estimate,
        "process_ratio": round(estimate / baseline, 3),
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
