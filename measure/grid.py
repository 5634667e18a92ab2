"""Sweep grids: ``configs/sweeps/*.toml`` parsed and checked into a :class:`Grid` of points.

A grid file has ``schema_version = 1``, a ``[provenance]`` table (``description`` and
``intended_for``), a ``[method]`` table (see :class:`Method`) and arrays of tables named after
:data:`measure.layers.LAYERS` entries (``[[conv]]``, ``[[linear]]``, ``[[batchnorm]]`` ...) plus
``[[network]]`` for whole-network validation rows. Inside a table every key holds one value or a list of
values; the table stands for the Cartesian product of its lists. Any unknown key or bad value is a
:class:`~measure.errors.GridError` naming the file and the key.
"""

from __future__ import annotations

import hashlib
import itertools
import sys
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from .errors import GridError
from .layers import LAYERS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["MODES", "Grid", "Method", "Point", "load_grid"]

SCHEMA_VERSION = 1
MODES = ("eager", "graph")


@dataclass(frozen=True)
class Method:
    """How every point is measured.

    Attributes:
        device: ``cpu`` or ``cuda``.
        dtype: ``fp32`` or ``fp16`` (fp16 on CUDA only).
        batch: Batch size of every layer input.
        threads: ``torch.set_num_threads`` value; 0 keeps torch's default.
        warmup_s: Seconds of warm-up runs before a point is measured.
        window_s: Minimum length of one measurement window in seconds.
        min_samples: Minimum power samples per window (sampling sensors only).
        windows: Independent windows per point (at least 2 for a std and an interval).
        idle_s: Seconds of settled idle power measured before every point (power sensors only): two
            blocks of ``idle_s / 2`` that agree within ``idle_tolerance``.
        idle_tolerance: Largest relative difference between two consecutive idle blocks that counts as
            settled.
        idle_settle_max_s: Cap in seconds on the wait for idle power to settle.
        probe_s: Seconds spent at sweep start measuring the sensor's update period, and of the load run
            before the settled-idle reading of the run header.
        mode: ``eager`` (one Python call per inference) or ``graph`` (the calls captured once as a CUDA
            graph and replayed: GPU work without launch overhead; CUDA only).
        retries: Extra attempts at a point whose reading is bad before it is flagged.
        seed: Seed of the random inputs and weights.
        rotate_bytes: Bytes of distinct weight and input copies that layer calls cycle through (at
            least twice the last-level cache makes every call read from memory); 0 re-runs one copy.
    """

    device: str = "cuda"
    dtype: str = "fp32"
    batch: int = 1
    threads: int = 0
    warmup_s: float = 0.5
    window_s: float = 1.0
    min_samples: int = 20
    windows: int = 5
    idle_s: float = 1.0
    retries: int = 2
    seed: int = 0
    rotate_bytes: int = 0
    idle_tolerance: float = 0.02
    idle_settle_max_s: float = 5.0
    probe_s: float = 1.0
    mode: str = "eager"


@dataclass(frozen=True)
class Point:
    """One thing to measure.

    Attributes:
        op: Grid table name (``conv``, ``relu``, ``network`` ...).
        params: The point's values, defaults filled in.
        point_id: Stable readable identity, used to resume a sweep.
    """

    op: str
    params: dict[str, Any]

    @property
    def point_id(self) -> str:
        """``op:key=value,...`` with keys sorted, shapes written ``1x3x224x224``."""
        parts = [f"{key}={_text(value)}" for key, value in sorted(self.params.items())]
        return f"{self.op}:{','.join(parts)}"


def _text(value: Any) -> str:
    if isinstance(value, tuple):
        return "x".join(str(v) for v in value)
    return str(value).lower() if isinstance(value, bool) else str(value)


@dataclass(frozen=True)
class Grid:
    """A parsed sweep grid.

    Attributes:
        path: The TOML file.
        sha256: Hex digest of the file's bytes.
        description: ``provenance.description``.
        method: Measurement settings.
        points: Every point in file order, duplicates removed.
    """

    path: Path
    sha256: str
    description: str
    method: Method
    points: tuple[Point, ...]

    def with_batch(self, batch: int) -> Grid:
        """This grid at another batch size: layers and network rows alike (their ``input_shape[0]``)."""
        points = tuple(
            Point(p.op, {**p.params, "input_shape": (batch, *p.params["input_shape"][1:])})
            if p.op == "network"
            else p
            for p in self.points
        )
        unique = {p.point_id: p for p in points}
        return replace(self, method=replace(self.method, batch=batch), points=tuple(unique.values()))


def _fail(path: Path, where: str, message: str) -> GridError:
    return GridError(f"{path}: {where}: {message}")


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _check_int(path: Path, where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _fail(path, where, f"bad value {value!r}; give a positive integer")
    return value


def _parse_method(path: Path, table: Any) -> Method:
    if not isinstance(table, dict):
        raise _fail(path, "method", "must be a table")
    known = {f.name: f for f in fields(Method)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in known:
            raise _fail(path, f"method.{key}", f"unknown key; use one of {', '.join(known)}")
        default = known[key].default
        if isinstance(default, str):
            ok = isinstance(value, str)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        else:
            ok = isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
        if not ok:
            raise _fail(path, f"method.{key}", f"bad value {value!r}")
        values[key] = float(value) if isinstance(default, float) else value
    method = Method(**values)
    if method.device not in ("cpu", "cuda"):
        raise _fail(path, "method.device", f"bad value {method.device!r}; use cpu or cuda")
    if method.dtype not in ("fp32", "fp16"):
        raise _fail(path, "method.dtype", f"bad value {method.dtype!r}; use fp32 or fp16")
    if method.mode not in MODES:
        raise _fail(path, "method.mode", f"bad value {method.mode!r}; use eager or graph")
    if method.windows < 2 or method.batch < 1 or method.window_s <= 0:
        raise _fail(path, "method", "need windows >= 2, batch >= 1 and window_s > 0")
    if not 0 < method.idle_tolerance < 1:
        raise _fail(path, "method.idle_tolerance", f"bad value {method.idle_tolerance!r}; give 0 < x < 1")
    return method


def _expand_layer(path: Path, op: str, index: int, table: dict[str, Any]) -> list[Point]:
    spec = LAYERS[op]
    where = f"[[{op}]] #{index}"
    allowed = set(spec.required) | set(spec.optional)
    for key in table:
        if key not in allowed:
            raise _fail(path, f"{where}.{key}", f"unknown key; use {', '.join(sorted(allowed))}")
    for key in spec.required:
        if key not in table:
            raise _fail(path, where, f"missing key '{key}'")
    keys = sorted(allowed)
    choices = []
    for key in keys:
        values = _as_list(table.get(key, spec.optional.get(key)))
        if not values:
            raise _fail(path, f"{where}.{key}", "empty list")
        for value in values:
            if isinstance(spec.optional.get(key), bool):
                if not isinstance(value, bool):
                    raise _fail(path, f"{where}.{key}", f"bad value {value!r}; use true or false")
            else:
                _check_int(path, f"{where}.{key}", value)
        choices.append(values)
    points = []
    for combo in itertools.product(*choices):
        params = dict(zip(keys, combo, strict=True))
        groups = params.get("groups", 1)
        if params.get("in_channels", 1) % groups or params.get("kernels", 1) % groups:
            raise _fail(path, f"{where}.groups", f"{groups} must divide in_channels and kernels")
        points.append(Point(op, params))
    return points


def _expand_network(path: Path, index: int, table: dict[str, Any]) -> list[Point]:
    where = f"[[network]] #{index}"
    for key in table:
        if key not in ("model", "input_shape"):
            raise _fail(path, f"{where}.{key}", "unknown key; use model, input_shape")
    if "model" not in table or "input_shape" not in table:
        raise _fail(path, where, "needs model and input_shape")
    models = _as_list(table["model"])
    if not all(isinstance(m, str) and m.startswith("torchvision:") for m in models):
        raise _fail(path, f"{where}.model", "give torchvision:NAME strings")
    shapes = table["input_shape"]
    if isinstance(shapes, list) and shapes and all(isinstance(s, int) for s in shapes):
        shapes = [shapes]
    if not isinstance(shapes, list) or not shapes:
        raise _fail(path, f"{where}.input_shape", "give a shape like [1, 3, 224, 224]")
    parsed = []
    for shape in shapes:
        if not isinstance(shape, list) or len(shape) != 4:
            raise _fail(path, f"{where}.input_shape", f"bad shape {shape!r}; give [N, C, H, W]")
        parsed.append(tuple(_check_int(path, f"{where}.input_shape", d) for d in shape))
    return [Point("network", {"model": m, "input_shape": s}) for m in models for s in parsed]


def load_grid(path: Path) -> Grid:
    """Read and check a sweep grid TOML.

    Raises:
        GridError: The file is missing, not TOML, or has an unknown key or a bad value.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        data = tomllib.loads(raw.decode("utf-8"))
    except OSError as exc:
        raise GridError(f"{path}: cannot read ({exc.strerror}); check the path") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise GridError(f"{path}: not valid TOML ({exc}); fix the syntax") from None
    if data.get("schema_version") != SCHEMA_VERSION:
        raise _fail(path, "schema_version", f"must be {SCHEMA_VERSION}")
    provenance = data.get("provenance")
    if not isinstance(provenance, dict) or not isinstance(provenance.get("description"), str):
        raise _fail(path, "provenance", "needs a table with a description string")
    for key in provenance:
        if key not in ("description", "intended_for", "sources"):
            raise _fail(path, f"provenance.{key}", "unknown key; use description, intended_for, sources")
    method = _parse_method(path, data.get("method", {}))
    points: list[Point] = []
    for key, tables in data.items():
        if key in ("schema_version", "provenance", "method"):
            continue
        if key != "network" and key not in LAYERS:
            known = ", ".join([*LAYERS, "network"])
            raise _fail(path, key, f"unknown table; use one of {known}")
        if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
            raise _fail(path, key, f"write it as an array of tables, [[{key}]]")
        for index, table in enumerate(tables, start=1):
            if key == "network":
                points.extend(_expand_network(path, index, table))
            else:
                points.extend(_expand_layer(path, key, index, table))
    if not points:
        raise _fail(path, "(top level)", "no points; add [[conv]], [[linear]] ... tables")
    unique = {p.point_id: p for p in points}
    return Grid(
        path=path,
        sha256=hashlib.sha256(raw).hexdigest(),
        description=provenance["description"],
        method=method,
        points=tuple(unique.values()),
    )
