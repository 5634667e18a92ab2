"""Helpers shared by the CLI commands: output channels, JSON, one-line errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from ..errors import InputShapeError
from ..files import write_atomic

if TYPE_CHECKING:
    import torch

    from ..deploy import Deployment
    from ..graph import LayerGraph

__all__ = [
    "BatchOption",
    "BoardOption",
    "ClocksOption",
    "InputShapeOption",
    "JsonOption",
    "LaunchOption",
    "ModeOption",
    "ModelArgument",
    "NvpmodelConfOption",
    "PowerModeOption",
    "PrecisionOption",
    "deployment",
    "annotated_model",
    "emit_json",
    "parse_input_shape",
    "people",
    "status",
    "write_atomic",
]

# Arguments and options that several commands share.
ModelArgument = Annotated[str, typer.Argument(help="torchvision:NAME, package.module:fn or file.py:fn")]
BoardOption = Annotated[str, typer.Option(help="Board profile: tx2, xavier-nx or a path to a .toml")]
InputShapeOption = Annotated[
    str | None, typer.Option(help="Input shape like 1,3,224,224 (default: the model's own)")
]
ModeOption = Annotated[
    str,
    typer.Option(help="eager (PyTorch dispatches every op), graph (a CUDA graph replay) or tensorrt (fused)"),
]
PrecisionOption = Annotated[
    str | None, typer.Option(help="fp32, fp16 or int8 (int8 with --mode tensorrt); default: the profile's")
]
PowerModeOption = Annotated[
    str | None,
    typer.Option(help="nvpmodel power mode: name, alias (MAXN, MAXQ, MAXP) or number (with --nvpmodel-conf: "
                      "an ID or NAME of that file)"),
]
ClocksOption = Annotated[
    str | None,
    typer.Option(help="Explicit clocks, e.g. gpu=624.75MHz,emc=2133MHz,cpu=576MHz,cpu_cores=4 (any subset, "
                      "over the power mode's; Hz, kHz, MHz, GHz)"),
]
NvpmodelConfOption = Annotated[
    Path | None,
    typer.Option(help="A Jetson's /etc/nvpmodel.conf: price --power-mode ID/NAME from its clock caps"),
]
LaunchOption = Annotated[
    str | None,
    typer.Option(help="With --mode tensorrt: enqueue (one enqueue per inference, the default) or cuda-graph "
                      "(a captured engine replayed, as MLPerf does)"),
]
BatchOption = Annotated[int | None, typer.Option(help="Batch size (replaces the first dimension)")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print only a JSON document on stdout")]

# Tables for people go to stdout; progress and warnings to stderr. With --json nothing but the
# document is printed to stdout, so commands print their tables only when json_out is false.
people = Console(width=None if sys.stdout.isatty() else 150)
status = Console(stderr=True, soft_wrap=True)  # one message, one line, whatever the width


def emit_json(document: dict[str, Any]) -> None:
    """Print ``document`` as the only thing on stdout."""
    sys.stdout.write(json.dumps(document, indent=2, allow_nan=False) + "\n")
    sys.stdout.flush()


def parse_input_shape(
    text: str | None, *, default: Sequence[int], batch: int | None = None
) -> tuple[int, ...]:
    """Parse ``1,3,224,224`` (or take ``default``); ``batch`` replaces the first dimension."""
    if batch is not None and batch < 1:
        raise InputShapeError(f"--batch must be at least 1, got {batch}")
    if text is None:
        shape = tuple(default)
    else:
        try:
            shape = tuple(int(p) for p in text.replace("x", ",").split(",") if p.strip())
        except ValueError:
            shape = ()
        if not shape or any(d < 1 for d in shape):
            raise InputShapeError(
                f"bad --input-shape {text!r}: give comma-separated positive integers like 1,3,224,224"
            )
    return shape if batch is None else (batch, *shape[1:])


def deployment(
    board: str,
    mode: str = "eager",
    precision: str | None = None,
    power_mode: str | None = None,
    *,
    clocks: str | None = None,
    nvpmodel_conf: Path | None = None,
    batch: int | None = None,
    launch: str | None = None,
) -> Deployment:
    """The deployment the shared options describe (:meth:`splitprune.deploy.Deployment.of`)."""
    from ..deploy import Deployment

    if batch is not None and batch < 1:
        raise InputShapeError(f"--batch must be at least 1, got {batch}")
    return Deployment.of(board, mode=mode, precision=precision, power_mode=power_mode, clocks=clocks,
                         nvpmodel_conf=nvpmodel_conf, batch=batch, launch=launch)


def annotated_model(
    spec: str,
    deployed: Deployment,
    input_shape: str | None,
    *,
    runnable: bool = False,
) -> tuple[LayerGraph, torch.Tensor]:
    """Load, trace (at the deployment's batch size) and price ``spec``: its graph and example input.

    With ``runnable`` the model gets real weights and a random input (to export or run it); otherwise
    both live on the meta device, which is all estimating needs.
    """
    import torch

    from ..energy import annotate
    from ..graph import trace
    from ..models import load_model

    batch = deployed.batch
    parse_input_shape(input_shape, default=(1,), batch=batch)  # a typo fails before the model loads
    loaded = load_model(spec, device="cpu" if runnable else "meta")
    shape = parse_input_shape(input_shape, default=loaded.input_shape, batch=batch)
    example = torch.randn(shape) if runnable else torch.empty(shape, device="meta")
    graph = annotate(trace(loaded.module, example, name=spec), deployed)
    return graph, example
