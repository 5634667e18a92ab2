"""Atomic file writing: results appear whole or not at all."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import OutputError

__all__ = ["make_directory", "write_atomic"]


def make_directory(path: Path) -> Path:
    """Create the directory ``path`` (and its parents) if missing.

    Raises:
        OutputError: It cannot be created (a file in the way, no permission).
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
        reason = f"{blocker} is a file" if blocker is not None else _reason(exc)
        raise OutputError(f"cannot create directory {path} ({reason}); choose a writable path") from None
    return path


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` via a temporary file and rename, so readers never see half a file.

    Raises:
        OutputError: ``path`` cannot be written (its directory cannot be made, no permission, a
            directory in the way, a full disk).
    """
    path = Path(path)
    make_directory(path.parent)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        _write(path, payload)
    except OSError as exc:
        raise OutputError(f"cannot write {path} ({_reason(exc)}); choose a writable path") from None


def _write(path: Path, payload: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file ordinary permissions
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
