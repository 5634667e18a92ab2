"""Model adapters: rewrites that make a model prunable and the layers kept whole, keyed by class name.

Ultralytics YOLO (v8, 11) is the case in point; Torch-Pruning's YOLOv8 example does the same:

- ``C2f`` and ``C3k2`` (and YOLO11's ``C2PSA``) split one conv's output into two halves with ``chunk``
  or ``split``. torch-pruning's index bookkeeping through that split prunes the wrong channels of the
  second half (the pruned model no longer runs). :func:`adapt` replaces each such block with an
  equivalent one whose conv is two convs, one per half, holding the same weights (the model's output
  does not change), so each half is a group of its own.
- ``Detect``'s output layers (the last conv of each box and class tower, and the DFL) and YOLO's
  ``Attention`` keep their output channels: those are the model's outputs (box distributions, class
  scores) or attention heads laid out by a ``view``. Their input channels still shrink with the
  layers that feed them; the towers' hidden widths are pruned like any other layer.

Classes are matched by name (and their module under ``ultralytics``), so the core never imports
ultralytics (AGPL-3.0, the optional ``detect`` extra). Adding a model family is an entry in
:data:`REWRITES` or :data:`KEPT`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["KEPT", "REWRITES", "Adaptation", "adapt", "kept_modules"]

_BOOKKEEPING = ("i", "f", "type", "np")  # what Ultralytics' forward loop reads from each block


def _half(conv: Any, start: int, stop: int) -> nn.Module:
    """Copy of an Ultralytics ``Conv`` (conv, batch norm unless fused, activation): outputs [start, stop)."""
    half: Any = copy.deepcopy(conv)
    bn = getattr(half, "bn", None)  # ``model.fuse()`` folds it into the conv and deletes it
    with torch.no_grad():
        for owner in (half.conv, bn):
            for name in ("weight", "bias"):
                p = getattr(owner, name, None)
                if p is not None:
                    setattr(owner, name, nn.Parameter(p[start:stop].clone(), requires_grad=p.requires_grad))
        for name in ("running_mean", "running_var"):
            b = getattr(bn, name, None)
            if b is not None:
                setattr(bn, name, b[start:stop].clone())
    half.conv.out_channels = stop - start
    if bn is not None:
        bn.num_features = stop - start
    return half


class _TwoHalves(nn.Module):
    """A CSP block whose first conv is two convs, ``cv0`` and ``cv1``, one per half of its output."""

    m: Any

    def __init__(self, block: Any) -> None:
        super().__init__()
        c = int(block.c)
        self.c = c
        self.cv0 = _half(block.cv1, 0, c)
        self.cv1 = _half(block.cv1, c, 2 * c)
        self.cv2 = block.cv2
        self.m = block.m
        for name in _BOOKKEEPING:
            if hasattr(block, name):
                setattr(self, name, getattr(block, name))


class TwoConvC2f(_TwoHalves):
    """``C2f`` / ``C3k2`` without the ``chunk``: ``cv2(cat(cv0(x), cv1(x), m_1(...), ...))``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same output as the original block."""
        y = [self.cv0(x), self.cv1(x)]
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))


class TwoConvC2PSA(_TwoHalves):
    """YOLO11's ``C2PSA`` without the ``split``: ``cv2(cat(cv0(x), m(cv1(x))))``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same output as the original block."""
        return self.cv2(torch.cat((self.cv0(x), self.m(self.cv1(x))), 1))


REWRITES: dict[str, Callable[[Any], nn.Module]] = {
    "ultralytics.C2f": TwoConvC2f,
    "ultralytics.C3k2": TwoConvC2f,
    "ultralytics.C2PSA": TwoConvC2PSA,
}
"""``package.ClassName`` -> a function returning an equivalent, prunable replacement."""

def _detect_outputs(head: Any) -> list[str]:
    """A Detect head's output layers: the last conv of every box and class tower, and the DFL."""
    kept = []
    for towers in ("cv2", "cv3", "one2one_cv2", "one2one_cv3"):
        for i, tower in enumerate(getattr(head, towers, ())):
            last = f".{len(tower) - 1}" if isinstance(tower, nn.Sequential) else ""
            kept.append(f"{towers}.{i}{last}")
    if isinstance(getattr(head, "dfl", None), nn.Module):
        kept.append("dfl")
    return kept


KEPT: dict[str, Callable[[Any], list[str]]] = {
    "ultralytics.Detect": _detect_outputs,
    "ultralytics.Attention": lambda module: [""],
}
"""``package.ClassName`` (subclasses match too) -> the submodules (``""``: all of it) whose layers keep
their output channels."""


def _keys(module: nn.Module) -> list[str]:
    """``package.ClassName`` for the module's class and its bases (``ultralytics.Segment`` is a Detect)."""
    return [f"{c.__module__.split('.', 1)[0]}.{c.__name__}" for c in type(module).__mro__]


@dataclass(frozen=True)
class Adaptation:
    """What :func:`adapt` did.

    Attributes:
        rewritten: Names of the modules replaced by prunable equivalents, in model order.
        kept: Names of the modules whose layers keep their output channels.
    """

    rewritten: tuple[str, ...]
    kept: tuple[str, ...]


def adapt(model: nn.Module) -> Adaptation:
    """Replace every module :data:`REWRITES` names, in place; return what changed and what is kept."""
    rewritten = []
    for name, module in list(model.named_modules()):
        rewrite = next((REWRITES[k] for k in _keys(module)[:1] if k in REWRITES), None)
        if rewrite is None or not name:
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        replacement = rewrite(module)
        replacement.train(module.training)
        setattr(parent, child, replacement)
        rewritten.append(name)
    return Adaptation(tuple(rewritten), kept_modules(model))


def kept_modules(model: nn.Module) -> tuple[str, ...]:
    """Names of the modules of ``model`` whose layers :data:`KEPT` keeps whole."""
    kept: list[str] = []
    for name, module in model.named_modules():
        if any(name == k or name.startswith(k + ".") for k in kept):
            continue
        rule = next((KEPT[k] for k in _keys(module) if k in KEPT), None)
        if rule is not None:
            kept.extend(".".join(p for p in (name, sub) if p) for sub in rule(module))
    return tuple(kept)
