"""A tiny CNN for the ``measure networks`` tests (``tiny_net.py:tiny``)."""

from torch import nn


def tiny() -> nn.Module:
    """Conv, ReLU, pool and a linear head: milliseconds per batch on a CPU."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 10),
    )
