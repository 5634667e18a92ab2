"""Digits study: prune a small CNN to 70/50/30 % of its TX2 energy with energy vs magnitude importance.

Real data, no download: scikit-learn's bundled ``load_digits`` (1,797 8x8 digits), upsampled to
16x16. The CNN has a residual block and a depthwise-separable block. Energy is estimated for a batch
of 32 images on the TX2 profile (batching is how a board would run this; at batch 1 the per-layer
launch cost of such a tiny net dominates and nothing can be pruned to 30 %). Every pruned model is
fine-tuned for a few epochs. Seeded; runs on CPU in a few minutes.

Prints one JSON document; with ``--out DIR`` also writes ``digits_study.md`` (table) and
``digits_study.png`` (accuracy vs energy). Run: .venv/bin/python benchmarks/digits_study.py --out out
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from splitprune.board import load_board
from splitprune.prune import PruneOptions, prune_to_budget
from splitprune.prune.finetune import accuracy, finetune_classifier

BUDGETS = (0.7, 0.5, 0.3)
IMPORTANCES = ("energy", "magnitude")
BATCH_ON_BOARD = 32
SIDE = 16


class DigitsNet(nn.Module):
    """Stem, a residual block and a depthwise-separable block; widths are multiples of 32."""

    def __init__(self) -> None:
        super().__init__()

        def cbr(cin: int, cout: int, k: int = 3, groups: int = 1) -> nn.Sequential:
            conv = nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups, bias=False)
            return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.ReLU())

        self.stem = nn.Sequential(cbr(1, 32), cbr(32, 64))
        self.res1 = cbr(64, 64)
        self.res2 = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64))
        self.pool = nn.MaxPool2d(2)
        self.expand = cbr(64, 128, k=1)
        self.depthwise = cbr(128, 128, groups=128)
        self.project = nn.Sequential(nn.Conv2d(128, 96, 1, bias=False), nn.BatchNorm2d(96), nn.ReLU())
        self.head = nn.Linear(96, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.relu(x + self.res2(self.res1(x)))
        x = self.pool(x)
        x = self.project(self.depthwise(self.expand(x)))
        return self.head(x.mean((2, 3)))


def load_data(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Digits as (N, 1, 16, 16) float tensors in [0, 1], split 75/25 stratified."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = nn.functional.interpolate(images, size=(SIDE, SIDE), mode="bilinear", align_corners=False)
    labels = torch.tensor(digits.target, dtype=torch.long)
    train_idx, test_idx = train_test_split(
        list(range(len(labels))), test_size=0.25, random_state=seed, stratify=digits.target
    )
    return images[train_idx], labels[train_idx], images[test_idx], labels[test_idx]


def batches(x: torch.Tensor, y: torch.Tensor, size: int, seed: int):
    """A callable yielding shuffled mini-batches (a new order every call, reproducibly)."""
    state = {"epoch": 0}

    def generate():
        g = torch.Generator().manual_seed(seed * 1000 + state["epoch"])
        state["epoch"] += 1
        order = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), size):
            idx = order[i : i + size]
            yield x[idx], y[idx]

    return generate


@functools.lru_cache(maxsize=4)
def _cached_data(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return load_data(seed)


@functools.lru_cache(maxsize=1)
def _trained(seed: int = 0, epochs: int = 8) -> DigitsNet:
    torch.manual_seed(seed)
    x_train, y_train, _, _ = _cached_data(seed)
    model = DigitsNet()
    finetune_classifier(model, batches(x_train, y_train, 64, seed), epochs=epochs, lr=3e-3)
    return model.eval()


def trained_net() -> nn.Module:
    """Study model spec ``benchmarks/digits_study.py:trained_net``: the CNN trained as the studies do.

    Trained once per process (seed 0, 8 epochs); a fresh copy each call. Traced at a batch of 32.
    """
    model = copy.deepcopy(_trained())
    model.example_input_shape = (BATCH_ON_BOARD, 1, SIDE, SIDE)
    return model


def finetune_and_score(model: nn.Module, epochs: int = 1) -> float:
    """Study entry point ``benchmarks/digits_study.py:finetune_and_score``: 1 epoch, then test accuracy.

    The plan study's fine-tune (seed 0: batches seeded 1, Adam at 1e-3).
    """
    x_train, y_train, x_test, y_test = _cached_data(0)
    finetune_classifier(model, batches(x_train, y_train, 64, 1), epochs=epochs, lr=1e-3)
    return accuracy(model, x_test, y_test)


def finetune_3_epochs_and_score(model: nn.Module) -> float:
    """Study entry point for this study's prune runs: 3 epochs (as ``run_study``), then test accuracy."""
    return finetune_and_score(model, epochs=3)


def run_study(*, seed: int = 0, train_epochs: int = 8, finetune_epochs: int = 3) -> dict:
    """Train, prune at every budget with every importance, fine-tune; returns the results."""
    torch.manual_seed(seed)
    board = load_board("tx2")
    x_train, y_train, x_test, y_test = load_data(seed)
    base = DigitsNet()
    started = time.perf_counter()
    finetune_classifier(base, batches(x_train, y_train, 64, seed), epochs=train_epochs, lr=3e-3)
    base_acc = accuracy(base, x_test, y_test)
    example = torch.zeros(BATCH_ON_BOARD, 1, SIDE, SIDE)
    runs = []
    variants = [(imp, b, None) for b in BUDGETS for imp in IMPORTANCES]
    variants.append(("energy", 0.5, 1))  # hardware-blind widths, for comparison
    for importance, budget, round_to in variants:
        torch.manual_seed(seed)
        model = copy.deepcopy(base)
        seen: dict[str, float] = {}

        def tune(m: nn.Module, seen: dict[str, float] = seen) -> None:
            seen["pruned"] = accuracy(m, x_test, y_test)
            finetune_classifier(m, batches(x_train, y_train, 64, seed + 1), epochs=finetune_epochs, lr=1e-3)

        result = prune_to_budget(
            model, example, board, budget, importance=importance, finetune=tune,
            options=PruneOptions(round_to=round_to), name="DigitsNet",
        )  # fmt: skip
        runs.append(
            {
                "importance": importance,
                "round_to": result.round_to,
                "budget_fraction": budget,
                "energy_j": result.energy_after_j,
                "energy_fraction": result.energy_after_j / result.energy_before_j,
                "within_tolerance": result.within_tolerance,
                "steps": result.steps,
                "macs": result.macs_after,
                "params": result.params_after,
                "padding_j": result.padding_after_j,
                "accuracy_pruned": seen["pruned"],
                "accuracy_finetuned": accuracy(model, x_test, y_test),
            }
        )
    return {
        "schema": "splitprune.digits_study/1",
        "seed": seed,
        "board": board.name,
        "batch_on_board": BATCH_ON_BOARD,
        "input_side": SIDE,
        "train_epochs": train_epochs,
        "finetune_epochs": finetune_epochs,
        "test_images": len(y_test),
        "baseline_accuracy": base_acc,
        "baseline_energy_j": result.energy_before_j,
        "runs": runs,
        "elapsed_s": time.perf_counter() - started,
    }


def table(study: dict) -> str:
    """Markdown table of the runs."""
    lines = [
        f"Digits study ({study['test_images']} test images, TX2 estimate per batch of "
        f"{study['batch_on_board']}): baseline accuracy {study['baseline_accuracy']:.3f}, "
        f"energy {study['baseline_energy_j'] * 1e3:.2f} mJ",
        "",
        "| budget | importance | round_to | energy mJ | of baseline | MMAC | params | acc pruned "
        "| acc fine-tuned |",
        "|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for r in study["runs"]:
        lines.append(
            f"| {r['budget_fraction']:.0%} | {r['importance']} | {r['round_to']} | "
            f"{r['energy_j'] * 1e3:.2f} | "
            f"{r['energy_fraction']:.3f} | {r['macs'] / 1e6:.1f} | {r['params']:,} | "
            f"{r['accuracy_pruned']:.3f} | {r['accuracy_finetuned']:.3f} |"
        )  # fmt: skip
    return "\n".join(lines) + "\n"


def plot(study: dict, path: Path, *, subject: str = "CNN") -> None:
    """Accuracy after fine-tuning against estimated energy, one line per importance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.5, 4.2))
    for importance, color in (("energy", "tab:blue"), ("magnitude", "tab:orange")):
        runs = sorted(
            (r for r in study["runs"] if r["importance"] == importance and r["round_to"] > 1),
            key=lambda r: r["energy_j"],
        )
        axes.plot([r["energy_j"] * 1e3 for r in runs], [r["accuracy_finetuned"] for r in runs],
                  marker="o", color=color, label=f"{importance} importance")  # fmt: skip
    blind = [r for r in study["runs"] if r["round_to"] == 1]
    axes.scatter([r["energy_j"] * 1e3 for r in blind], [r["accuracy_finetuned"] for r in blind],
                 marker="x", color="tab:red", label="energy, round_to=1")  # fmt: skip
    axes.scatter([study["baseline_energy_j"] * 1e3], [study["baseline_accuracy"]], color="black",
                 label="unpruned")  # fmt: skip
    axes.set_xlabel(f"estimated TX2 energy per batch of {study['batch_on_board']} (mJ)")
    axes.set_ylabel("test accuracy after fine-tuning")
    axes.set_title(f"Digits {subject} pruned to 70 / 50 / 30 % energy")
    axes.legend(fontsize="small")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(figure)


def main(
    run: Any = None,
    make_table: Any = None,
    *,
    name: str = "digits_study",
    subject: str = "CNN",
    doc: str = "",
) -> None:
    """Run a digits study (this one by default) and write its table, plot and JSON."""
    parser = argparse.ArgumentParser(description=(doc or __doc__ or "").splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help=f"write {name}.md/.png here")
    args = parser.parse_args()
    study = (run or run_study)(seed=args.seed)
    text = (make_table or table)(study)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"{name}.md").write_text(text)
        plot(study, args.out / f"{name}.png", subject=subject)
    sys.stderr.write(text)
    print(json.dumps(study, indent=2))


if __name__ == "__main__":
    main()
