"""measure: on-board power and latency sweeps that feed ``splitprune calibrate``.

Runs on the board with only the standard library, numpy, torch and tqdm (torchvision for network rows,
onnx for TensorRT through trtexec);
it never imports ``splitprune``. Data flows one way: ``measure`` writes a CSV, ``splitprune calibrate``
reads it.

- :mod:`measure.sensors`: the :class:`PowerSensor` interface, :class:`Measurement`, sampled sensors,
  :class:`NullSensor` (time only), :func:`detect_sensor` / :func:`make_sensor`.
- :mod:`measure.sampler`: power sampling in a child process (or a thread), immune to a busy main thread.
- :mod:`measure.ina3221`: Jetson INA3221 monitors read from sysfs (hwmon and iio layouts).
- :mod:`measure.rails`: per-board table of which rails make a Jetson module's total (one input rail or
  a sum) and which carry its GPU, CPU and SoC, matched by label.
- :mod:`measure.jtop_sensor`: the jetson-stats client. :mod:`measure.nvml`: NVIDIA GPUs through NVML.
- :mod:`measure.window`: window maths (span integrals, counter ticks, update period, window plan).
- :mod:`measure.idle`: idle power read once it has settled.
- :mod:`measure.layers` and :mod:`measure.layers_transformer`: the registry of sweepable layer kinds.
- :mod:`measure.modes`: eager and CUDA-graph execution.
- :mod:`measure.grid`: sweep grids (``configs/sweeps/*.toml``).
- :mod:`measure.record`: the append-only, resumable sweep CSV and its run header.
- :mod:`measure.sensor_facts`: what a sweep measures about its sensor before the first point.
- :mod:`measure.sweep`: the measurement method and :func:`run_sweep`.
- :mod:`measure.models`: whole networks named ``torchvision:NAME``, ``pkg.mod:fn`` or ``file.py:fn``.
- :mod:`measure.tensorrt`: TensorRT through torch-tensorrt or ``trtexec`` (and its log parser).
- :mod:`measure.network_csv`: the whole-network CSV (the ``jetson_published/networks.csv`` columns).
- :mod:`measure.networks`: :func:`run_networks`, whole networks eager, as CUDA graphs or in TensorRT.

Attributes are imported on first use, so that the sampling process (which imports
:mod:`measure.sampler`) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .errors import GridError as GridError
    from .errors import MeasureError as MeasureError
    from .errors import SensorError as SensorError
    from .errors import SweepError as SweepError
    from .grid import Grid as Grid
    from .grid import load_grid as load_grid
    from .ina3221 import Ina3221Sensor as Ina3221Sensor
    from .jtop_sensor import JtopSensor as JtopSensor
    from .networks import NetworkOptions as NetworkOptions
    from .networks import run_networks as run_networks
    from .nvml import NvmlSensor as NvmlSensor
    from .rails import RAIL_LAYOUTS as RAIL_LAYOUTS
    from .rails import RailLayout as RailLayout
    from .rails import match_layout as match_layout
    from .sensors import Measurement as Measurement
    from .sensors import NullSensor as NullSensor
    from .sensors import PowerSensor as PowerSensor
    from .sensors import detect_sensor as detect_sensor
    from .sensors import make_sensor as make_sensor
    from .sweep import run_sweep as run_sweep

_EXPORTS = {
    "GridError": "errors",
    "MeasureError": "errors",
    "SensorError": "errors",
    "SweepError": "errors",
    "Grid": "grid",
    "load_grid": "grid",
    "Ina3221Sensor": "ina3221",
    "JtopSensor": "jtop_sensor",
    "NetworkOptions": "networks",
    "run_networks": "networks",
    "NvmlSensor": "nvml",
    "RAIL_LAYOUTS": "rails",
    "RailLayout": "rails",
    "match_layout": "rails",
    "Measurement": "sensors",
    "NullSensor": "sensors",
    "PowerSensor": "sensors",
    "detect_sensor": "sensors",
    "make_sensor": "sensors",
    "run_sweep": "sweep",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'measure' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
