"""A small residual CNN for the console tests (``console_nets.py:tiny``): fast to trace, split and prune."""

from __future__ import annotations

import torch
from torch import nn


class TinyResidual(nn.Module):
    """Two conv blocks, a residual add, global pooling and a classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU())
        self.block = nn.Sequential(
            nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32),
        )
        self.head = nn.Sequential(
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stem(x)
        return self.head(torch.relu(y + self.block(y)))


def tiny() -> nn.Module:
    """The console tests' model (input 1,3,32,32)."""
    return TinyResidual()
