"""Fit a board profile to a ``measure`` sweep CSV, and check a profile against whole networks.

Data flows ``measure`` -> CSV -> here (this package never imports ``measure``):

- :mod:`splitprune.calibrate.data`: :func:`read_sweep` parses the CSV into :class:`SweepData`.
- :mod:`splitprune.calibrate.fit`: :func:`fit_latency` and :func:`fit_energy`, the relative-error fits
  of the two cost tables on single layers, with cross-validated quality per layer group.
- :mod:`splitprune.calibrate.network`: the network-level term, fitted on a few training networks.
- :mod:`splitprune.calibrate.profile`: :func:`calibrate` builds a measured
  :class:`~splitprune.board.BoardProfile` (provenance, fit quality); :func:`profile_toml` writes it.
- :mod:`splitprune.calibrate.validate`: :func:`validate` compares a profile's predictions with the
  measured whole-network rows the fit did not train on.
"""

from __future__ import annotations

from .data import SweepData as SweepData
from .data import SweepRow as SweepRow
from .data import read_sweep as read_sweep
from .fit import GRANULARITIES as GRANULARITIES
from .fit import FitResult as FitResult
from .fit import LayerData as LayerData
from .fit import fit_energy as fit_energy
from .fit import fit_latency as fit_latency
from .profile import Calibration as Calibration
from .profile import Terms as Terms
from .profile import calibrate as calibrate
from .profile import profile_toml as profile_toml
from .validate import ValidationResult as ValidationResult
from .validate import ValidationRow as ValidationRow
from .validate import validate as validate
