"""Whole networks named on the command line: ``torchvision:NAME``, ``pkg.module:fn`` or ``file.py:fn``.

The forms ``splitprune`` accepts, resolved here without importing it. torchvision models are built with
``weights=None`` (random weights: nothing is downloaded); their input size is the crop size of their
default weights' transforms (299 for Inception v3), else 224. A callable is called with no arguments and
must return an ``nn.Module``; a module with an ``image_size`` attribute (torchvision ViTs) or an
``example_input_shape`` is measured at that size.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from .errors import SweepError

__all__ = ["DEFAULT_INPUT_HW", "Network", "load_network"]

DEFAULT_INPUT_HW = (224, 224)


@dataclass(frozen=True)
class Network:
    """A network ready to measure (on the CPU, fp32, in eval mode).

    Attributes:
        module: The model.
        name: The CSV's ``model``: the torchvision builder name, else the spec as given.
        source_model: The CSV's ``source_model``: what was built.
        input_hw: Default input height and width in pixels.
    """

    module: nn.Module
    name: str
    source_model: str
    input_hw: tuple[int, int]


def _torchvision_input_hw(name: str) -> tuple[int, int]:
    import torchvision

    try:
        crop = torchvision.models.get_model_weights(name).DEFAULT.transforms().crop_size[0]
    except (ValueError, AttributeError, IndexError, TypeError, KeyError):
        return DEFAULT_INPUT_HW
    return int(crop), int(crop)


def _from_torchvision(name: str, spec: str) -> Network:
    try:
        import torchvision
    except ImportError:
        raise SweepError("torchvision is not installed; pip install torchvision") from None
    try:
        module = torchvision.models.get_model(name, weights=None)
    except ValueError:
        raise SweepError(f"model {spec!r}: torchvision has no model {name!r}; check the name") from None
    return Network(module, name, f"torchvision {name} (weights=None)", _torchvision_input_hw(name))


def _namespace(source: str, spec: str) -> Any:
    if not source.endswith(".py"):
        try:
            return importlib.import_module(source)
        except ImportError as exc:
            raise SweepError(f"model {spec!r}: cannot import {source!r} ({exc}); check PYTHONPATH") from None
    path = Path(source)
    if not path.is_file():
        raise SweepError(f"model {spec!r}: file {source!r} not found; check the path")
    module_name = f"_measure_user_{path.stem}"
    file_spec = importlib.util.spec_from_file_location(module_name, path)
    if file_spec is None or file_spec.loader is None:
        raise SweepError(f"model {spec!r}: cannot import {source!r}; is it a Python file?")
    namespace = importlib.util.module_from_spec(file_spec)
    sys.modules[module_name] = namespace
    file_spec.loader.exec_module(namespace)
    return namespace


def load_network(spec: str) -> Network:
    """Build the network ``spec`` names.

    Raises:
        SweepError: The spec is malformed, names nothing, or does not give an ``nn.Module``.
    """
    source, _, attr = spec.rpartition(":")
    if not source or not attr:
        raise SweepError(f"bad model {spec!r}; use torchvision:NAME, package.module:fn or path/file.py:fn")
    if source == "torchvision":
        network = _from_torchvision(attr, spec)
    else:
        factory = getattr(_namespace(source, spec), attr, None)
        if not callable(factory):
            raise SweepError(f"model {spec!r}: {source!r} has no callable {attr!r}; check the name after ':'")
        module = factory()
        if not isinstance(module, nn.Module):
            raise SweepError(f"model {spec!r} returned {type(module).__name__}, not an nn.Module; fix {attr}")
        network = Network(module, spec, spec, DEFAULT_INPUT_HW)
    size = getattr(network.module, "image_size", None)
    if isinstance(size, int):
        network = Network(network.module, network.name, network.source_model, (size, size))
    shape = getattr(network.module, "example_input_shape", None)
    if isinstance(shape, tuple | list) and len(shape) == 4:
        network = Network(network.module, network.name, network.source_model, (int(shape[2]), int(shape[3])))
    network.module.eval()
    return network
