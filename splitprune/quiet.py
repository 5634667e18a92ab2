"""Keep native libraries off standard output.

``--json`` promises exactly one JSON document on stdout, and the library promises never to print
there. Some native code writes to file descriptor 1 behind Python's back: highspy's C library prints a
banner when a ``Highs`` object is built, whatever options cvxpy passes later. Swapping
``sys.stdout`` cannot catch that, so :func:`native_stdout_silenced` points the descriptor itself at
``/dev/null`` while a native call runs and restores it afterwards.

The descriptor is process-wide: nested and concurrent holders share one redirection (a counter under
a lock); the first to enter redirects, the last to leave restores. Python code that writes to
``sys.stdout`` while the guard is held is flushed to where the descriptor points then (``/dev/null``),
so hold it only around the native call itself.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["native_stdout_silenced"]

_lock = threading.Lock()
_holders = 0
_saved_fd: int | None = None


@contextmanager
def native_stdout_silenced() -> Iterator[None]:
    """While held, whatever native code writes to file descriptor 1 goes to ``/dev/null``.

    Does nothing when descriptor 1 is not open (an embedded interpreter, a closed stdout).
    """
    _enter()
    try:
        yield
    finally:
        _leave()


def _enter() -> None:
    global _holders, _saved_fd
    with _lock:
        _holders += 1
        if _holders > 1:
            return
        _flush_python()
        try:
            saved = os.dup(1)
        except OSError:  # no descriptor 1 to protect
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 1)
        finally:
            os.close(devnull)
        _saved_fd = saved


def _leave() -> None:
    global _holders, _saved_fd
    with _lock:
        _holders -= 1
        if _holders > 0 or _saved_fd is None:
            return
        _flush_python()
        _flush_c_stdio()  # what C buffered for a pipe must land in /dev/null, not after we restore
        saved, _saved_fd = _saved_fd, None
        try:
            os.dup2(saved, 1)
        finally:
            os.close(saved)


def _flush_python() -> None:
    for stream in (sys.stdout, sys.__stdout__):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # a closed or broken stream: nothing to keep
            pass


def _flush_c_stdio() -> None:
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError, TypeError):  # no C library to ask (Windows): nothing we know of
        pass
