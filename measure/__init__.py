"""measure: on-board power and latency sweeps that feed ``splitprune calibrate``.

Runs on the board with only the standard library, numpy, torch and tqdm (torchvision for network rows);
it never imports ``splitprune``. Data flows one way: ``measure`` writes a CSV, ``splitprune calibrate``
reads it.

- :mod:`measure.sensors`: the :class:`PowerSensor` interface, :class:`Measurement`, the sampling thread,
  :class:`NullSensor` (time only), :func:`detect_sensor` / :func:`make_sensor`.
- :mod:`measure.ina3221`: Jetson INA3221 monitors read from sysfs (hwmon and iio layouts).
- :mod:`measure.jtop_sensor`: the jetson-stats client. :mod:`measure.nvml`: NVIDIA GPUs through NVML.
- :mod:`measure.layers`: the registry of sweepable layer kinds (module builders, MAC/byte counts).
- :mod:`measure.grid`: sweep grids (``configs/sweeps/*.toml``).
- :mod:`measure.record`: the append-only, resumable sweep CSV and its run header.
- :mod:`measure.sweep`: the measurement method and :func:`run_sweep`.
"""

from __future__ import annotations

from .errors import GridError as GridError
from .errors import MeasureError as MeasureError
from .errors import SensorError as SensorError
from .errors import SweepError as SweepError
from .grid import Grid as Grid
from .grid import load_grid as load_grid
from .ina3221 import Ina3221Sensor as Ina3221Sensor
from .jtop_sensor import JtopSensor as JtopSensor
from .nvml import NvmlSensor as NvmlSensor
from .sensors import Measurement as Measurement
from .sensors import NullSensor as NullSensor
from .sensors import PowerSensor as PowerSensor
from .sensors import detect_sensor as detect_sensor
from .sensors import make_sensor as make_sensor
from .sweep import run_sweep as run_sweep
