"""A small supervised fine-tuning loop (for the bundled digits example and quick experiments)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

__all__ = ["accuracy", "finetune_classifier"]


def finetune_classifier(
    model: nn.Module,
    batches: Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]],
    *,
    epochs: int = 3,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
) -> list[float]:
    """Train ``model`` with Adam and cross entropy; returns the mean loss of each epoch.

    Args:
        model: The (pruned) classifier; trained in place.
        batches: Called once per epoch; yields ``(inputs, class indices)``.
        epochs: Passes over ``batches()``.
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    was_training = model.training
    model.train()
    losses = []
    try:
        for _ in range(epochs):
            total, count = 0.0, 0
            for x, y in batches():
                optimiser.zero_grad()
                loss = nn.functional.cross_entropy(model(x), y)
                loss.backward()
                optimiser.step()
                total += float(loss.detach()) * len(y)
                count += len(y)
            losses.append(total / max(count, 1))
    finally:
        model.train(was_training)
    return losses


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy of ``model`` on ``(x, y)`` in eval mode."""
    was_training = model.training
    model.eval()
    try:
        return float((model(x).argmax(1) == y).float().mean())
    finally:
        model.train(was_training)
