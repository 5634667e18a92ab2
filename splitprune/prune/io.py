"""Save and reload pruned models without pickled modules.

A pruned file is a ``torch.save`` of plain data: the state dict, torch-pruning's pruning history
(``[module name, out-channel pruning?, indices]`` per pruned group, replayed on a fresh instance of
the original architecture), the input shapes, the modules :func:`~.adapters.adapt` rewrote before
pruning (applied again before the replay) and, when known, the model spec. It loads with
``torch.load(..., weights_only=True)``; no class surgery and no ``weights_only=False`` are needed.
The per-layer energy report goes next to it as JSON (``<file>.json``, written by the CLI).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import SplitpruneError, exception_reason
from ..files import write_atomic
from .adapters import adapt
from .groups import build_dependency, sync_widths

__all__ = ["FORMAT", "PrunedFileError", "load_pruned", "save_pruned"]

FORMAT = "splitprune.pruned/1"


class PrunedFileError(SplitpruneError):
    """A pruned-model file is missing, not ours, or does not fit the given architecture."""


def save_pruned(
    path: str | Path,
    model: nn.Module,
    pruning_history: Sequence[tuple[str, bool, Sequence[int]]],
    input_shapes: Sequence[Sequence[int]],
    *,
    model_spec: str | None = None,
    rewritten: Sequence[str] = (),
) -> None:
    """Write ``model``'s weights and the history that rebuilds its shape to ``path`` (atomically).

    Args:
        path: Destination (``.pt``).
        model: The pruned model.
        pruning_history: ``PruneResult.pruning_history``.
        input_shapes: Shapes of the example inputs used for pruning (the replay traces with them).
        model_spec: ``torchvision:NAME`` or another :func:`splitprune.models.load_model` spec; lets
            :func:`load_pruned` rebuild the original architecture by itself.
        rewritten: ``PruneResult.rewritten``: the modules rewritten before pruning.
    """
    document = {
        "format": FORMAT,
        "model_spec": model_spec,
        "input_shapes": [list(map(int, s)) for s in input_shapes],
        "rewritten": [str(name) for name in rewritten],
        "pruning_history": [[str(m), bool(o), [int(i) for i in idx]] for m, o, idx in pruning_history],
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    buffer = io.BytesIO()
    torch.save(document, buffer)
    write_atomic(Path(path), buffer.getvalue())


def load_pruned(path: str | Path, model: nn.Module | None = None) -> nn.Module:
    """Rebuild a pruned model saved by :func:`save_pruned`.

    Args:
        path: The saved file.
        model: A fresh instance of the original (unpruned) architecture; optional when the file
            records a model spec.

    Returns:
        The pruned model with its weights, in eval mode.

    Raises:
        PrunedFileError: The file is unreadable or not a splitprune pruned model, or ``model`` does
            not have the architecture it was pruned from.
    """
    path = Path(path)
    try:
        document: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise PrunedFileError(f"{path}: no such file") from None
    except Exception as exc:
        raise PrunedFileError(f"{path}: not a readable pruned model ({type(exc).__name__})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise PrunedFileError(f"{path}: not a splitprune pruned model (expected format {FORMAT})")
    if model is None:
        spec = document.get("model_spec")
        if not spec:
            raise PrunedFileError(
                f"{path} was saved from a model object; pass a fresh instance: load_pruned(path, model)"
            )
        from ..models import load_model

        model = load_model(spec, device="cpu").module
    inputs = tuple(torch.zeros(shape) for shape in document["input_shapes"])
    expected = tuple(document.get("rewritten", ()))
    if expected:
        done = adapt(model).rewritten
        if done != expected:
            raise PrunedFileError(
                f"{path} was pruned after rewriting {len(expected)} modules, but this architecture has "
                f"{len(done)} to rewrite; pass the architecture it was pruned from"
            )
    try:
        dg = build_dependency(model, inputs)
        dg.load_pruning_history([list(entry) for entry in document["pruning_history"]])
        sync_widths(model)
        model.load_state_dict(document["state_dict"], strict=True)
    except SplitpruneError:
        raise
    except Exception as exc:
        reason = exception_reason(exc)[:160]
        raise PrunedFileError(
            f"{path} does not fit {type(model).__name__}: {reason}; pass the architecture it was pruned from"
        ) from None
    return model.eval()
