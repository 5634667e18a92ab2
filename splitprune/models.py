"""Resolve a model spec into an ``nn.Module`` and a default input shape.

Specs (nothing is ever downloaded: no weights, no configs):

- ``torchvision:NAME``: any torchvision builder, ``weights=None`` and ``weights_backbone=None``;
  detectors become their traceable network plus a post-processing record (:mod:`splitprune.zoo`).
- ``ultralytics:NAME``: a YOLO (v3/v5u/v8/v9/v10/11/12/26, any task) built from the yaml shipped
  with ultralytics (optional extra ``detect``, AGPL-3.0, imported only here), e.g. ``yolo11n``;
  fused for inference as Ultralytics runs it, ``yolo11n@train`` for the unfused training graph.
- ``timm:NAME``: ``timm.create_model(NAME, pretrained=False)``.
- ``hf:MODEL_ID``: a Hugging Face transformers model built from a config class that ships with the
  library (see :data:`splitprune.zoo.HF_CONFIGS`).
- ``path/to/model.onnx``: an ONNX graph (:mod:`splitprune.onnx_import`; estimate and split, not run).
- ``package.module:callable`` and ``path/to/file.py:callable``. The callable is called with no arguments
and must return an ``nn.Module``. ``device="meta"`` builds the model without allocating or initialising
weights, which is all that estimating needs.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.util
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import zoo
from .errors import ModelLoadError

__all__ = ["LoadedModel", "load_model", "torchvision_classifiers"]

DEFAULT_INPUT_SHAPE = (1, 3, 224, 224)
VIDEO_FRAMES = 16  # the clip length torchvision's video models are evaluated with


@dataclass(frozen=True)
class LoadedModel:
    """A resolved model.

    Attributes:
        module: The network (in eval mode).
        name: The spec it came from.
        input_shape: The input shape to trace it with unless the user gives one.
        device: ``meta`` when built without weights, else ``cpu``.
    """

    module: nn.Module
    name: str
    input_shape: tuple[int, ...]
    device: str


def load_model(spec: str, *, device: str = "cpu") -> LoadedModel:
    """Build the model named by ``spec`` on ``device`` (``cpu`` or ``meta``).

    Raises:
        ModelLoadError: The spec is malformed, names nothing, or does not produce an ``nn.Module``.
    """
    if device not in ("cpu", "meta"):
        raise ModelLoadError(f"device must be 'cpu' or 'meta', got {device!r}")
    if spec.endswith(".onnx"):
        from .onnx_import import OnnxModel

        onnx_model = OnnxModel(Path(spec))
        return LoadedModel(module=onnx_model, name=spec, input_shape=onnx_model.input_shape, device="meta")
    if ":" not in spec:
        raise ModelLoadError(
            f"bad model {spec!r}: use torchvision:NAME, package.module:callable or path/file.py:callable"
        )
    source, _, attr = spec.rpartition(":")
    if source in SOURCES:
        factory, shape = SOURCES[source](attr)
    else:
        factory = _callable_from(source, attr, spec)
        shape = DEFAULT_INPUT_SHAPE
    module = _build(factory, spec, device)
    image_size = getattr(module, "image_size", None)  # ViTs are built for one resolution
    if isinstance(image_size, int):
        shape = (1, 3, image_size, image_size)
    shape = tuple(getattr(module, "example_input_shape", shape))
    module.eval()
    return LoadedModel(module=module, name=spec, input_shape=shape, device=_device_of(module))


def torchvision_classifiers() -> list[str]:
    """Names of torchvision's classification models."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _torchvision_factory(name: str) -> Callable[[], Any]:
    import inspect

    import torchvision

    known = torchvision.models.list_models()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "see torchvision.models.list_models()"
        raise ModelLoadError(f"unknown torchvision model {name!r}: {hint}")
    options: dict[str, Any] = {"weights": None}
    if "weights_backbone" in inspect.signature(torchvision.models.get_model_builder(name)).parameters:
        options["weights_backbone"] = None  # detection and segmentation builders fetch these otherwise
    return lambda: zoo.network_of(torchvision.models.get_model(name, **options))


def _torchvision(name: str) -> tuple[Callable[[], Any], tuple[int, ...]]:
    shape = zoo.TORCHVISION_INPUT_SHAPES.get(name) or _torchvision_input_shape(name)
    return _torchvision_factory(name), shape


def _torchvision_input_shape(name: str) -> tuple[int, ...]:
    """The resolution torchvision's default weights were evaluated at (read from metadata, no download)."""
    import torchvision

    try:
        crop = torchvision.models.get_model_weights(name).DEFAULT.transforms().crop_size[0]
    except (ValueError, AttributeError, IndexError, TypeError):
        return DEFAULT_INPUT_SHAPE
    if name in torchvision.models.list_models(module=torchvision.models.video):
        return (1, 3, VIDEO_FRAMES, int(crop), int(crop))  # (batch, channels, frames, height, width)
    return (1, 3, int(crop), int(crop))


SOURCES: dict[str, Callable[[str], tuple[Callable[[], Any], tuple[int, ...]]]] = {
    "torchvision": _torchvision,
    "ultralytics": zoo.ultralytics,
    "timm": zoo.timm,
    "hf": zoo.hugging_face,
}
"""Spec prefixes and their resolvers: name -> (factory, default input shape)."""


def _callable_from(source: str, attr: str, spec: str) -> Callable[[], Any]:
    if source.endswith(".py"):
        path = Path(source)
        if not path.is_file():
            raise ModelLoadError(f"model file {source!r} not found: check the path in {spec!r}")
        module_name = f"_splitprune_user_{path.stem}"
        loaded = sys.modules.get(module_name)
        if loaded is not None and Path(getattr(loaded, "__file__", "") or "").resolve() == path.resolve():
            namespace = loaded  # loaded before: its classes stay the same objects (and pickle)
        else:
            file_spec = importlib.util.spec_from_file_location(module_name, path)
            if file_spec is None or file_spec.loader is None:
                raise ModelLoadError(f"cannot import {source!r}: is it a Python file?")
            namespace = importlib.util.module_from_spec(file_spec)
            sys.modules[module_name] = namespace
            try:
                _exec_user_code(lambda: file_spec.loader.exec_module(namespace), spec)  # type: ignore[union-attr]
            except ModelLoadError:
                del sys.modules[module_name]  # a file that failed to load is loaded afresh next time
                raise
    else:
        try:
            namespace = importlib.import_module(source)
        except ImportError as exc:
            raise ModelLoadError(
                f"cannot import {source!r} ({exc}); check the module path or PYTHONPATH"
            ) from None
    factory = getattr(namespace, attr, None)
    if factory is None:
        raise ModelLoadError(f"{source!r} has no attribute {attr!r}: check the name after ':' in {spec!r}")
    if not callable(factory):
        raise ModelLoadError(f"{spec!r} is not callable: point at a function or class returning an nn.Module")
    return factory


def _build(factory: Callable[[], Any], spec: str, device: str) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = None
        if device == "meta":
            # Some constructors compute on tensors (e.g. RegNet's widths); those fall back to CPU.
            with contextlib.suppress(Exception), torch.device("meta"):
                module = factory()
        if module is None:
            module = _exec_user_code(factory, spec)
    if not isinstance(module, nn.Module):
        raise ModelLoadError(
            f"{spec!r} returned {type(module).__name__}, not an nn.Module: make the callable return the model"
        )
    return module


def _exec_user_code(fn: Callable[[], Any], spec: str) -> Any:
    try:
        return fn()
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"building {spec!r} failed: {type(exc).__name__}: {exc}") from None


def _device_of(module: nn.Module) -> str:
    tensor = next(iter(module.parameters()), None)
    return "meta" if tensor is not None and tensor.device.type == "meta" else "cpu"
