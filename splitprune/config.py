"""Strict TOML loading into validated pydantic objects.

All profiles in ``configs/`` (boards, links, servers, sweeps) go through :func:`load_toml_model`, so
unknown keys, missing tables and bad values are rejected with one line naming the file and the key.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "SCHEMA_VERSION",
    "StrictModel",
    "check_schema_and_provenance",
    "config_dir",
    "load_toml_model",
    "resolve_profile",
]

ModelT = TypeVar("ModelT", bound=BaseModel)
SCHEMA_VERSION = 1


class StrictModel(BaseModel):
    """Base for config objects: unknown keys are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def check_schema_and_provenance(
    schema_version: int,
    number_keys: Iterable[str],
    provenance_values: Mapping[str, str],
    *,
    supported: int | Iterable[int] = SCHEMA_VERSION,
) -> None:
    """Raise ``ValueError`` unless the schema is supported and every number says where it came from."""
    versions = (supported,) if isinstance(supported, int) else tuple(supported)
    if schema_version not in versions:
        allowed = " or ".join(str(v) for v in versions)
        raise ValueError(f"schema_version {schema_version} is not supported; use {allowed}")
    missing = [key for key in number_keys if key not in provenance_values]
    if missing:
        raise ValueError(f"provenance.values has no entry for {missing[0]}; say where it came from")


def config_dir(kind: str) -> Path:
    """Return the directory holding the shipped profiles of one kind (``boards``, ``links``, ...)."""
    package_copy = Path(__file__).parent / "_configs" / kind
    if package_copy.is_dir():
        return package_copy
    return Path(__file__).resolve().parent.parent / "configs" / kind


def resolve_profile(name_or_path: str | Path, kind: str) -> Path:
    """Turn a shipped profile name (``xavier-nx``) or a path to a TOML file into a path."""
    text = str(name_or_path)
    if text.endswith(".toml") or "/" in text:
        path = Path(text)
        if not path.is_file():
            raise ConfigError(f"{kind[:-1]} profile {text!r} not found: give an existing .toml file")
        return path
    directory = config_dir(kind)
    path = directory / f"{text.replace('-', '_')}.toml"
    if not path.is_file():
        known = ", ".join(shipped_names(kind)) or "none"
        raise ConfigError(f"unknown {kind[:-1]} {text!r}: use one of {known} or a path to a .toml file")
    return path


def shipped_names(kind: str) -> list[str]:
    """Names of the profiles of one kind shipped in ``configs/``, as the CLI spells them."""
    directory = config_dir(kind)
    return sorted(p.stem.replace("_", "-") for p in directory.glob("*.toml"))


def load_toml_model(path: Path, model: type[ModelT]) -> ModelT:
    """Parse ``path`` as TOML and validate it as ``model``; raise :class:`ConfigError` on any fault."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror}); check the path") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}); fix the syntax") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_first_problem(exc)}") from None


def _first_problem(exc: ValidationError) -> str:
    error = exc.errors()[0]
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"unknown key '{key}'; remove it or check its spelling"
    if kind == "missing":
        return f"missing key '{key}'; add it"
    message = error["msg"].removeprefix("Value error, ")
    return f"bad value for '{key}': {message}"
