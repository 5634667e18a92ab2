"""How a network is deployed on a board: one frozen :class:`Deployment` value, parsed once.

A deployment is everything that changes the price of a network on a board apart from the network:

- the board profile (its fitted cost tables and hardware tables);
- ``mode``: ``eager`` (PyTorch dispatches every op), ``graph`` (a CUDA-graph replay) or ``tensorrt``
  (a fused engine);
- ``precision``: ``fp32``, ``fp16`` or ``int8`` (int8 with TensorRT only);
- ``power_mode``: one of the profile's nvpmodel modes, or explicit ``clocks`` (a custom setting, or
  one read from a board's own ``/etc/nvpmodel.conf``: :mod:`splitprune.nvpmodel`);
- ``batch``: the batch size the network runs at (None: the model's own input shape);
- ``launch``: how a TensorRT engine is launched, ``enqueue`` (one ``enqueueV3`` per inference, the
  default, as trtexec, torch2trt and Ultralytics do) or ``cuda-graph`` (a captured engine replayed,
  as MLPerf's harness does); None for the other modes.

The CLI options, a study row and Python keywords all become a deployment through
:meth:`Deployment.of`; :func:`splitprune.pricing.price` is the only function that turns one into costs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .board import MODES, PRECISIONS, BoardProfile, load_board
from .errors import ConfigError
from .hardware import PowerMode

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "LAUNCHES",
    "Deployment",
    "configure",
    "parse_clocks",
    "resolve_power_mode",
]

LAUNCHES = ("enqueue", "cuda-graph")
"""How a TensorRT engine is launched; the first is the default."""
DEFAULT_LAUNCH = LAUNCHES[0]
CUSTOM_MODE = "custom"
"""The power-mode name of a deployment priced at explicit clocks."""

_CLOCK_KEYS = {"gpu": "gpu_clock_hz", "emc": "emc_clock_hz", "cpu": "cpu_clock_hz"}
_COUNT_KEYS = {"cpu_cores": "cpu_cores", "sm": "sm_count", "sms": "sm_count"}
_UNITS = {"": 1.0, "hz": 1.0, "khz": 1e3, "mhz": 1e6, "ghz": 1e9}


def resolve_power_mode(profile: BoardProfile, name: str | None) -> str:
    """The profile's name for power mode ``name`` (a key, an alias, or the ``nvpmodel`` number).

    Raises:
        ConfigError: The profile has no such mode.
    """
    if name is None or name == profile.board.power_mode:
        return profile.board.power_mode
    for key, mode in profile.power_modes.items():
        names = {key.lower(), *(a.lower() for a in mode.aliases)}
        if name.lower() in names or (mode.nvpmodel_id is not None and name == str(mode.nvpmodel_id)):
            return key
    known = ", ".join(profile.power_modes) or profile.board.power_mode
    raise ConfigError(f"board {profile.board.name!r} has no power mode {name!r}; use one of: {known}")


def parse_clocks(text: str, base: PowerMode) -> PowerMode:
    """``gpu=624.75MHz,emc=2133MHz,cpu=576MHz,cpu_cores=4`` (any subset) over the clocks of ``base``.

    Frequencies take Hz, kHz, MHz or GHz (a bare number is Hz); ``cpu_cores`` and ``sm`` are counts.

    Raises:
        ConfigError: A key or value is malformed (the message names it and the format).
    """
    hint = "use --clocks gpu=624.75MHz,emc=2133MHz,cpu=576MHz,cpu_cores=4 (any subset)"
    values: dict[str, Any] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if not sep:
            raise ConfigError(f"bad --clocks item {part!r}: {hint}")
        if key in _CLOCK_KEYS:
            match = re.fullmatch(r"([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kmg]?hz)?", value.strip().lower())
            if not match or float(match.group(1)) <= 0:
                raise ConfigError(f"bad --clocks {key}={value!r}: give a positive frequency like 624.75MHz")
            values[_CLOCK_KEYS[key]] = float(match.group(1)) * _UNITS[match.group(2) or ""]
        elif key in _COUNT_KEYS:
            if not value.strip().isdigit() or int(value) < 1:
                raise ConfigError(f"bad --clocks {key}={value!r}: give a positive whole number")
            values[_COUNT_KEYS[key]] = int(value)
        else:
            raise ConfigError(f"unknown --clocks key {key!r}: {hint}")
    if not values:
        raise ConfigError(f"empty --clocks: {hint}")
    data = base.model_dump()
    data.update(values, nvpmodel_id=None, aliases=[], power_budget_w=None, static_power_w=None)
    return PowerMode.model_validate(data)


@dataclass(frozen=True)
class Deployment:
    """One way of running networks on a board (see the module docstring).

    Attributes:
        base: The board profile as loaded (fitted coefficients, hardware tables).
        mode: ``eager``, ``graph`` or ``tensorrt``.
        precision: ``fp32``, ``fp16`` or ``int8``.
        power_mode: The profile's power mode, ``custom`` with explicit ``clocks``, or
            ``nvpmodel:NAME`` for a mode read from an ``nvpmodel.conf``.
        clocks: The clock caps priced when they are not one of the profile's modes, else None.
        batch: Batch size (replaces the input's first dimension), None: the model's own.
        launch: TensorRT launch method (``enqueue`` or ``cuda-graph``), None outside TensorRT.
        source: Where ``board`` came from (a shipped name or a path), for reports and studies.
    """

    base: BoardProfile = field(repr=False, compare=False)
    mode: str
    precision: str
    power_mode: str
    clocks: PowerMode | None = None
    batch: int | None = None
    launch: str | None = None
    source: str = ""

    @classmethod
    def of(
        cls,
        board: str | Path | BoardProfile,
        *,
        mode: str = "eager",
        precision: str | None = None,
        power_mode: str | None = None,
        clocks: str | PowerMode | None = None,
        nvpmodel_conf: str | Path | None = None,
        batch: int | None = None,
        launch: str | None = None,
    ) -> Deployment:
        """Parse and check one deployment (CLI options, a study row or Python keywords).

        Args:
            board: A shipped board name, a profile path, or a loaded :class:`BoardProfile`.
            mode: ``eager``, ``graph`` or ``tensorrt``.
            precision: ``fp32``, ``fp16`` or ``int8`` (None: the profile's own).
            power_mode: A mode of the profile (name, alias or nvpmodel number); with
                ``nvpmodel_conf``, a mode of that file (ID or NAME).
            clocks: Explicit clocks, ``gpu=..,emc=..,cpu=..,cpu_cores=..`` (any subset, over
                ``power_mode``'s), or a :class:`PowerMode`.
            nvpmodel_conf: A Jetson's ``/etc/nvpmodel.conf``: ``power_mode`` is looked up there.
            batch: Batch size (None: the model's own input shape).
            launch: ``enqueue`` or ``cuda-graph`` (``--mode tensorrt`` only; default ``enqueue``).

        Raises:
            ConfigError: Anything the board cannot price; the message names the fix.
        """
        profile = board if isinstance(board, BoardProfile) else load_board(board)
        source = profile.board.name if isinstance(board, BoardProfile) else str(board)
        if mode not in MODES:
            raise ConfigError(f"unknown mode {mode!r}: use {', '.join(MODES)}")
        precision = precision or profile.board.precision
        if precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {precision!r}: use {', '.join(PRECISIONS)}")
        if precision == "int8" and mode != "tensorrt":
            raise ConfigError("int8 needs a quantising runtime: use --mode tensorrt (or fp16/fp32)")
        if launch is not None and mode != "tensorrt":
            raise ConfigError(f"--launch applies to --mode tensorrt, not {mode}; drop it")
        if launch is not None and launch not in LAUNCHES:
            raise ConfigError(f"unknown launch {launch!r}: use {', '.join(LAUNCHES)}")
        if mode == "tensorrt":
            launch = launch or DEFAULT_LAUNCH
        if batch is not None and (isinstance(batch, bool) or int(batch) != batch or batch < 1):
            raise ConfigError(f"batch must be a whole number >= 1, got {batch}")
        if profile.board.runtime != "eager" and (mode, precision) != (
            profile.board.runtime, profile.board.precision
        ):
            raise ConfigError(
                f"profile {profile.name!r} is already configured for {profile.board.runtime}; "
                "configure the profile as loaded (load_board) instead"
            )
        custom: PowerMode | None = None
        power_key, label = profile.board.power_mode, CUSTOM_MODE
        if nvpmodel_conf is not None:
            from .nvpmodel import load_nvpmodel

            if power_mode is None:
                raise ConfigError("--nvpmodel-conf needs --power-mode ID or NAME of a mode in that file")
            conf = load_nvpmodel(nvpmodel_conf)
            custom = conf.power_mode(power_mode, profile)
            found = conf.find(power_mode)
            label = f"nvpmodel:{found.name if found else power_mode}"
        else:
            power_key = resolve_power_mode(profile, power_mode)
        if clocks is not None:
            base_mode = custom or profile.power_modes.get(power_key)
            if base_mode is None:
                raise ConfigError(
                    f"board {profile.board.name!r} has no [power_modes] table to scale clocks against; "
                    "use a schema-3 profile"
                )
            custom = clocks if isinstance(clocks, PowerMode) else parse_clocks(clocks, base_mode)
            label = CUSTOM_MODE
        if custom is not None:
            if profile.device is None or profile.board.power_mode not in profile.power_modes:
                raise ConfigError(
                    f"board {profile.board.name!r} has no [device] and [power_modes] tables; explicit "
                    "clocks need a schema-3 profile"
                )
            power_key = label
        deployment = cls(profile, mode, precision, power_key, custom, batch, launch, source)
        deployment.profile  # noqa: B018 - price once now: a missing rate fails here, with its message
        return deployment

    @classmethod
    def coerce(cls, board: BoardProfile | Deployment) -> Deployment:
        """``board`` as a deployment: a profile is deployed as it is (its own mode, precision, power mode)."""
        if isinstance(board, Deployment):
            return board
        info = board.board
        if info.runtime != "eager":  # an already-configured profile (configure() of old code)
            return cls(board, info.runtime, info.precision, info.power_mode,
                       launch=DEFAULT_LAUNCH if info.runtime == "tensorrt" else None,
                       source=info.name)  # fmt: skip
        return cls.of(board)

    @cached_property
    def profile(self) -> BoardProfile:
        """The board profile with every coefficient scaled to this deployment (see :mod:`.pricing`)."""
        from .pricing import deployed_profile

        return deployed_profile(self)

    @property
    def power(self) -> PowerMode | None:
        """The clock caps priced (the profile's mode or the explicit clocks), None without a table."""
        return self.clocks or self.base.power_modes.get(self.power_mode)

    @property
    def name(self) -> str:
        """Short human name, e.g. ``NVIDIA Jetson TX2 (MAXN, fp16, tensorrt)``."""
        return self.profile.name

    def input_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        """``shape`` with its first dimension replaced by :attr:`batch` (unchanged without one)."""
        return tuple(shape) if self.batch is None else (self.batch, *tuple(shape)[1:])

    def with_batch(self, batch: int | None) -> Deployment:
        """This deployment at another batch size."""
        from dataclasses import replace

        if batch is not None and batch < 1:
            raise ConfigError(f"batch must be a whole number >= 1, got {batch}")
        new = replace(self, batch=batch)
        if "profile" in self.__dict__:
            new.__dict__["profile"] = self.__dict__["profile"]  # batch does not change coefficients
        return new

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON (every field; ``launch`` is stated, None outside TensorRT)."""
        power = self.power
        return {
            "board": self.base.board.name,
            "profile": self.source,
            "mode": self.mode,
            "precision": self.precision,
            "power_mode": self.power_mode,
            "clocks": None if power is None else {
                "gpu_clock_hz": power.gpu_clock_hz, "emc_clock_hz": power.emc_clock_hz,
                "cpu_clock_hz": power.cpu_clock_hz, "cpu_cores": power.cpu_cores,
                "sm_count": power.sm_count,
            },
            "explicit_clocks": self.clocks is not None,
            "batch": self.batch,
            "launch": self.launch,
        }  # fmt: skip


def configure(
    profile: BoardProfile, *, mode: str = "eager", precision: str | None = None, power_mode: str | None = None
) -> BoardProfile:
    """The profile of one deployment of ``profile``: shorthand for ``Deployment.of(...).profile``.

    Raises:
        ConfigError: Unknown mode, a precision the board cannot run or has no rate for, or an unknown
            power mode; each message names the fix.
    """
    return Deployment.of(profile, mode=mode, precision=precision, power_mode=power_mode).profile
