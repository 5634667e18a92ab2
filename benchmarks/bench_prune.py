"""Pruning benchmark: time to 50 % energy on ResNet-50 and ViT-B/16 (TX2, 224x224, no fine-tuning)
and the digits studies (CNN and ViT).

Prints one JSON document. Run: .venv/bin/python benchmarks/bench_prune.py [--skip-digits] [--only-vit]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torchvision

from splitprune.board import load_board
from splitprune.prune import PruneOptions, prune_to_budget


def _digits_study(name: str = "digits_study"):
    """Load a sibling study script (benchmarks/ is a folder of scripts, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def to_half(name: str = "resnet50", round_to: int | None = None, target_s: float = 30.0) -> dict:
    """Prune a (randomly initialised) torchvision model to 50 % of its TX2 energy and time it."""
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None).eval()
    x = torch.randn(1, 3, 224, 224)
    started = time.perf_counter()
    result = prune_to_budget(model, x, load_board("tx2"), 0.5, options=PruneOptions(round_to=round_to))
    wall_s = time.perf_counter() - started
    return {
        "model": f"torchvision:{name}",
        "input_shape": [1, 3, 224, 224],
        "budget_fraction": 0.5,
        "round_to": result.round_to,
        "wall_s": wall_s,
        "target_s": target_s,
        "steps": result.steps,
        "budget_error": result.budget_error,
        "within_tolerance": result.within_tolerance,
        "energy_before_j": result.energy_before_j,
        "energy_after_j": result.energy_after_j,
        "macs_before": result.macs_before,
        "macs_after": result.macs_after,
        "params_before": result.params_before,
        "params_after": result.params_after,
        "padding_after_j": result.padding_after_j,
    }


def resnet50_to_half(round_to: int | None = None) -> dict:
    """Prune a (randomly initialised) ResNet-50 to 50 % of its TX2 energy and time it."""
    return to_half("resnet50", round_to=round_to)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-digits", action="store_true", help="only the timings")
    parser.add_argument("--only-vit", action="store_true", help="only the ViT-B/16 timing")
    args = parser.parse_args()
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    document: dict = {"schema": "splitprune.bench_prune/1", "torch_threads": torch.get_num_threads()}
    document["vit_b_16_to_50pct"] = to_half("vit_b_16", target_s=60.0)
    if not args.only_vit:
        document["resnet50_to_50pct"] = resnet50_to_half()
        document["resnet50_to_50pct_round_to_1"] = resnet50_to_half(round_to=1)
    if not args.skip_digits and not args.only_vit:
        document["digits_study"] = _digits_study().run_study(seed=0)
        document["digits_vit_study"] = _digits_study("digits_vit_study").run_study(seed=0)
    print(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
