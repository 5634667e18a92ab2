"""Models and entry points for the study tests, loaded by path (``.../models.py:NAME``) in workers."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn


class SmallNet(nn.Module):
    """A small CNN (three convs, a linear head) on 1 x 8 x 8 digits, batch 32 on the board."""

    example_input_shape = (32, 1, 8, 8)

    def __init__(self) -> None:
        super().__init__()

        def cbr(cin: int, cout: int, groups: int = 1) -> nn.Sequential:
            conv = nn.Conv2d(cin, cout, 3, padding=1, groups=groups, bias=False)
            return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.ReLU())

        self.features = nn.Sequential(cbr(1, 32), cbr(32, 48), nn.MaxPool2d(2), cbr(48, 48))
        self.head = nn.Linear(48, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean((2, 3)))


def small() -> nn.Module:
    """An untrained SmallNet (seeded by the caller)."""
    return SmallNet()


def broken() -> nn.Module:
    """A model spec whose constructor fails."""
    raise RuntimeError("this model cannot be built")


def dies_once() -> nn.Module:
    """Kills its worker process the first time (marker file in $SPLITPRUNE_TEST_MARKER_DIR)."""
    marker = Path(os.environ["SPLITPRUNE_TEST_MARKER_DIR"]) / "died"
    if not marker.exists():
        marker.write_text("x")
        os._exit(1)
    return SmallNet()


@lru_cache(maxsize=1)
def _digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(digits.target, dtype=torch.long)
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(labels), generator=g)
    train, test = order[:1200], order[1200:]
    return images[train], labels[train], images[test], labels[test]


def _batches(x: torch.Tensor, y: torch.Tensor):
    def generate():
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(1))
        for i in range(0, len(y), 100):
            idx = order[i : i + 100]
            yield x[idx], y[idx]

    return generate


def trained_digits() -> nn.Module:
    """SmallNet trained for three epochs on scikit-learn's digits (deterministic)."""
    from splitprune.prune.finetune import finetune_classifier

    torch.manual_seed(0)
    model = SmallNet()
    x, y, _, _ = _digits()
    finetune_classifier(model, _batches(x, y), epochs=3, lr=1e-2)
    return model.eval()


def finetune_and_score(model: nn.Module) -> float:
    """One fine-tuning epoch on the digits, then test accuracy."""
    from splitprune.prune.finetune import accuracy, finetune_classifier

    x, y, x_test, y_test = _digits()
    finetune_classifier(model, _batches(x, y), epochs=1, lr=1e-3)
    return accuracy(model, x_test, y_test)


def head_width(model: nn.Module) -> float:
    """An 'evaluation' that needs the model's class in the worker: the classifier's input width."""
    assert type(model).__name__ == "SmallNet"
    return float(model.head.in_features)
