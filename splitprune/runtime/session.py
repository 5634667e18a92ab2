"""Drive a device through a run: the inputs, the requests, and the checks against the unsplit model."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ..errors import SplitpruneError
from .device import Device, RequestRecord, reference_error
from .report import RunSummary, summarize

__all__ = ["InputError", "inputs", "run_requests"]

_IMAGES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm")
_MEAN, _STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # the ImageNet normalisation


class InputError(SplitpruneError):
    """An input file cannot be used."""


def _load(path: Path, shape: tuple[int, ...]) -> torch.Tensor:
    if path.suffix == ".pt":
        try:
            value = torch.load(path, map_location="cpu", weights_only=True)  # a local file, tensors only
        except Exception as exc:
            raise InputError(f"cannot read {path}: {exc}; save a tensor with torch.save") from None
        if not isinstance(value, torch.Tensor):
            raise InputError(f"{path} holds {type(value).__name__}, not a tensor; save one tensor per file")
        tensor = value.float()
    else:
        from PIL import Image

        if len(shape) != 4 or shape[1] != 3:
            raise InputError(f"images need a (1, 3, H, W) input, not {list(shape)}; use .pt files")
        with Image.open(path) as image:
            rgb = image.convert("RGB").resize((shape[3], shape[2]))
            data = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8)
        tensor = data.reshape(shape[2], shape[3], 3).permute(2, 0, 1).float().div(255)
        tensor = ((tensor - torch.tensor(_MEAN)[:, None, None]) / torch.tensor(_STD)[:, None, None])[None]
    if tuple(tensor.shape) != tuple(shape):
        if tensor.numel() == torch.Size(shape).numel():
            return tensor.reshape(shape)
        raise InputError(f"{path} has shape {list(tensor.shape)}, the model takes {list(shape)}")
    return tensor


def inputs(count: int, shape: tuple[int, ...], *, directory: Path | None = None, seed: int = 1
           ) -> Iterator[torch.Tensor]:
    """``count`` inputs: random tensors of ``shape``, or the files of ``directory`` in turn.

    Raises:
        InputError: The folder has no image or ``.pt`` file.
    """
    if directory is None:
        generator = torch.Generator().manual_seed(seed)
        for _ in range(count):
            yield torch.randn(shape, generator=generator)
        return
    files = sorted(p for p in Path(directory).iterdir() if p.suffix.lower() in (*_IMAGES, ".pt"))
    if not files:
        raise InputError(f"{directory} holds no image or .pt file; add some or drop --inputs")
    for i in range(count):
        yield _load(files[i % len(files)], shape)


def run_requests(
    device: Device,
    source: Iterator[torch.Tensor],
    *,
    count: int,
    check: bool = True,
    on_record: Callable[[RequestRecord], Any] | None = None,
) -> tuple[list[RequestRecord], RunSummary]:
    """Make ``count`` requests; with ``check`` compare each output with the unsplit model's.

    Ctrl-C stops between or inside a request; the summary then counts what was started.
    """
    records: list[RequestRecord] = []
    errors: dict[str, int] = {}
    worst: float | None = None
    started, interrupted = 0, False
    try:
        for x in source:
            if started >= count:
                break
            started += 1
            try:
                result = device.infer(x)
            except (SplitpruneError, RuntimeError, ValueError) as exc:
                reason = type(exc).__name__
                errors[reason] = errors.get(reason, 0) + 1
                continue
            records.append(result.record)
            if on_record is not None:
                on_record(result.record)
            if check:
                err = reference_error(device.model, x, result.output)
                worst = err if worst is None else max(worst, err)
    except KeyboardInterrupt:
        interrupted = True
        if started > len(records) + sum(errors.values()):  # the request in flight is abandoned
            errors["interrupted"] = errors.get("interrupted", 0) + 1
    settings = asdict(device.model.settings)
    settings["rate_range_bps"] = list(settings["rate_range_bps"])
    if settings["input_shape"] is not None:
        settings["input_shape"] = list(settings["input_shape"])
    summary = summarize(
        records, model=device.model.spec, connect=device.address, settings=settings, requests=started,
        errors=errors, switches=device.chooser.switches, final_estimate_bps=device.estimator.estimate_bps,
        max_abs_error=worst, interrupted=interrupted,
    )
    return records, summary
