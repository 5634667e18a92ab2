"""Digits ViT study: prune a small vision transformer to 70/50/30 % of its TX2 energy, energy vs magnitude.

The transformer counterpart of ``digits_study.py`` (same data, split, board, batch and fine-tuning).
Real data, no download: scikit-learn's bundled ``load_digits`` (1,797 8x8 digits), cut into 2x2
patches (16 tokens and a class token). The model is torchvision's ``VisionTransformer`` (3 blocks,
4 heads, embedding 128, MLP 256) with a one-channel patch embedding, so the pruner works on the same
code path as ``vit_b_16``: the embedding width in whole head slots through ``nn.MultiheadAttention``
and every block's MLP hidden channels. Energy is estimated for a batch of 32 images on the TX2
profile. Every pruned model is fine-tuned for a few epochs. Seeded; runs on CPU in a few minutes.

Prints one JSON document; with ``--out DIR`` also writes ``digits_vit_study.md`` (table) and
``digits_vit_study.png`` (accuracy vs energy). Run: .venv/bin/python benchmarks/digits_vit_study.py --out out
"""

from __future__ import annotations

import copy
import importlib.util
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models.vision_transformer import VisionTransformer

from splitprune.board import load_board
from splitprune.prune import PruneOptions, prune_to_budget
from splitprune.prune.finetune import accuracy, finetune_classifier

BUDGETS = (0.7, 0.5, 0.3)
IMPORTANCES = ("energy", "magnitude")
BATCH_ON_BOARD = 32
SIDE = 8
PATCH = 2


def _cnn_study() -> Any:
    """The sibling CNN study, for its batching and table helpers."""
    spec = importlib.util.spec_from_file_location("digits_study", Path(__file__).with_name("digits_study.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def digits_vit() -> VisionTransformer:
    """torchvision's ViT on 8x8 one-channel images in 2x2 patches."""
    model = VisionTransformer(
        image_size=SIDE, patch_size=PATCH, num_layers=3, num_heads=4, hidden_dim=128, mlp_dim=256,
        num_classes=10,
    )  # fmt: skip
    model.conv_proj = nn.Conv2d(1, 128, kernel_size=PATCH, stride=PATCH)
    return model


def load_data(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Digits as (N, 1, 8, 8) float tensors in [0, 1], split 75/25 stratified (as the CNN study)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(digits.target, dtype=torch.long)
    train_idx, test_idx = train_test_split(
        list(range(len(labels))), test_size=0.25, random_state=seed, stratify=digits.target
    )
    return images[train_idx], labels[train_idx], images[test_idx], labels[test_idx]


def run_study(*, seed: int = 0, train_epochs: int = 60, finetune_epochs: int = 5) -> dict:
    """Train, prune at every budget with every importance, fine-tune; returns the results."""
    cnn = _cnn_study()
    torch.manual_seed(seed)
    board = load_board("tx2")
    x_train, y_train, x_test, y_test = load_data(seed)
    base = digits_vit()
    started = time.perf_counter()
    finetune_classifier(base, cnn.batches(x_train, y_train, 64, seed), epochs=train_epochs, lr=2e-3)
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
            finetune_classifier(
                m, cnn.batches(x_train, y_train, 64, seed + 1), epochs=finetune_epochs, lr=5e-4
            )

        result = prune_to_budget(
            model, example, board, budget, importance=importance, finetune=tune,
            options=PruneOptions(round_to=round_to), name="DigitsViT",
        )  # fmt: skip
        attention = model.encoder.layers[0].self_attention
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
                "embedding": int(attention.embed_dim),
                "head_dim": int(attention.head_dim),
                "mlp_hidden": [int(block.mlp[0].out_features) for block in model.encoder.layers],
                "accuracy_pruned": seen["pruned"],
                "accuracy_finetuned": accuracy(model, x_test, y_test),
            }
        )
    return {
        "schema": "splitprune.digits_vit_study/1",
        "seed": seed,
        "board": board.name,
        "batch_on_board": BATCH_ON_BOARD,
        "input_side": SIDE,
        "patch": PATCH,
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
        f"Digits ViT study ({study['test_images']} test images, TX2 estimate per batch of "
        f"{study['batch_on_board']}): baseline accuracy {study['baseline_accuracy']:.3f}, "
        f"energy {study['baseline_energy_j'] * 1e3:.2f} mJ",
        "",
        "| budget | importance | round_to | energy mJ | of baseline | embedding | MLP hidden | MMAC "
        "| acc pruned | acc fine-tuned |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for r in study["runs"]:
        lines.append(
            f"| {r['budget_fraction']:.0%} | {r['importance']} | {r['round_to']} | "
            f"{r['energy_j'] * 1e3:.2f} | {r['energy_fraction']:.3f} | {r['embedding']} | "
            f"{'/'.join(map(str, r['mlp_hidden']))} | {r['macs'] / 1e6:.1f} | "
            f"{r['accuracy_pruned']:.3f} | {r['accuracy_finetuned']:.3f} |"
        )  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    _cnn_study().main(run_study, table, name="digits_vit_study", subject="ViT", doc=__doc__ or "")


if __name__ == "__main__":
    main()
