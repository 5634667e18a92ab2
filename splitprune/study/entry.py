"""Fine-tune-and-evaluate entry points that travel to workers by name.

An :class:`EntryPoint` is ``package.module:function`` or ``path/file.py:function``: a function taking
a pruned model and returning its accuracy. It pickles as its spec and resolves the function on first
call in whichever process calls it, so it can be handed to any executor.

A model whose class lives in a ``file.py`` spec (loaded by :mod:`splitprune.models` as module
``_splitprune_user_<stem>``) only unpickles in a process that has loaded that file too.
:class:`PrimedExecutor` wraps an executor so that every call first loads those files in the worker,
then unpickles its arguments there.
"""

from __future__ import annotations

import importlib
import importlib.util
import pickle
import sys
from collections.abc import Callable
from concurrent.futures import Executor, Future
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import SplitpruneError

__all__ = ["EntryPoint", "PrimedExecutor", "resolve"]


class EntryPointError(SplitpruneError):
    """An entry point names no importable function."""


class EntryPoint:
    """A function named ``package.module:function`` or ``path/file.py:function`` (paths made absolute).

    Args:
        spec: The name.
    """

    def __init__(self, spec: str) -> None:
        source, _, attr = spec.rpartition(":")
        if not source or not attr:
            raise EntryPointError(
                f"bad entry point {spec!r}: use package.module:function or file.py:function"
            )
        if source.endswith(".py"):
            source = str(Path(source).resolve())
        self.spec = f"{source}:{attr}"
        self._fn: Callable[..., Any] | None = None

    def __call__(self, *args: Any) -> Any:
        """Call the function (resolved on first use in this process)."""
        if self._fn is None:
            self._fn = resolve(self.spec)
        return self._fn(*args)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (EntryPoint, (self.spec,))

    def __repr__(self) -> str:
        return f"EntryPoint({self.spec!r})"


def resolve(spec: str) -> Callable[..., Any]:
    """The callable named by ``spec`` (a file is loaded once per process).

    Raises:
        EntryPointError: The module or the attribute cannot be found.
    """
    source, _, attr = spec.rpartition(":")
    module = _load_file(Path(source)) if source.endswith(".py") else _import(source)
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise EntryPointError(f"{source!r} has no function {attr!r}: check the name after ':' in {spec!r}")
    return fn  # type: ignore[no-any-return]


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise EntryPointError(
            f"cannot import {name!r} ({exc}); check the module path or PYTHONPATH"
        ) from None


def _load_file(path: Path) -> ModuleType:
    """Load ``path`` under the name :mod:`splitprune.models` gives it, unless already loaded from there."""
    path = path.resolve()
    name = f"_splitprune_user_{path.stem}"
    loaded = sys.modules.get(name)
    if loaded is not None and Path(getattr(loaded, "__file__", "") or "").resolve() == path:
        return loaded
    if not path.is_file():
        raise EntryPointError(f"entry point file {str(path)!r} not found: check the path")
    file_spec = importlib.util.spec_from_file_location(name, path)
    if file_spec is None or file_spec.loader is None:
        raise EntryPointError(f"cannot import {str(path)!r}: is it a Python file?")
    module = importlib.util.module_from_spec(file_spec)
    sys.modules[name] = module
    file_spec.loader.exec_module(module)
    return module


def _primed_call(primers: tuple[str, ...], payload: bytes) -> Any:
    """Worker side: load the primer files, unpickle ``(fn, args)``, call."""
    for source in primers:
        _load_file(Path(source))
    fn, args = pickle.loads(payload)  # noqa: S301 - our own payload, pickled by PrimedExecutor.submit
    return fn(*args)


class PrimedExecutor(Executor):
    """Submits calls to ``inner`` with their arguments pickled now and the ``primers`` loaded first.

    Pickling at submit time also snapshots the arguments: a model pruned further after the call was
    submitted is evaluated as it was when submitted.

    Args:
        inner: Any executor with ``submit(fn, *args)`` (a process pool, the Ray adapter).
        primers: Model or entry-point specs whose ``file.py`` part the worker must load first.
        gpus: GPUs each call asks for (passed on as ``gpus=`` when positive; a study executor takes it).
    """

    def __init__(self, inner: Any, *, primers: tuple[str, ...] = (), gpus: float = 0.0) -> None:
        self.inner, self.gpus = inner, gpus
        self.primers = tuple(str(Path(s.rpartition(":")[0]).resolve()) for s in primers if ".py:" in s)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Submit ``fn(*args)`` (keyword arguments are not supported)."""
        if kwargs:
            raise TypeError("PrimedExecutor.submit takes positional arguments only")
        payload = pickle.dumps((fn, args), protocol=pickle.HIGHEST_PROTOCOL)
        extra = {"gpus": self.gpus} if self.gpus > 0 else {}
        return self.inner.submit(_primed_call, self.primers, payload, **extra)  # type: ignore[no-any-return]

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """The inner executor belongs to the caller: nothing to shut down here."""
