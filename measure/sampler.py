"""Power sampling that keeps its rate whatever the main thread does.

A sampler reads a sensor every ``interval_s`` between :meth:`start` and :meth:`stop` and hands back the
timestamped readings (:class:`Samples`). Two kinds:

- :class:`ProcessSampler` reads in a child process started with the ``spawn`` context (safe after CUDA
  is initialised). It shares no GIL with the main process: on an H100 a main thread launching kernels
  in a tight Python loop starved the old sampling thread to 5-20 % of its rate. The child gets a
  picklable :class:`Reader` and opens the sensor itself. Timestamps come from ``time.perf_counter``
  (``CLOCK_MONOTONIC`` on Linux, one clock for every process), so they compare with the main process's.
- :class:`ThreadSampler` reads in a thread of this process. It stays for what cannot leave the process
  (an injected clock, a client object passed in, mocks in tests).

A reading is ``(power by rail in W, energy counter in J or None)``; the first is taken when the window
opens and the last when it closes.
"""

from __future__ import annotations

import multiprocessing
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Protocol

from .errors import SensorError

__all__ = ["ProcessSampler", "Reader", "Reading", "Samples", "ThreadSampler"]

Reading = tuple[dict[str, float], float | None]

# Seconds to wait for the child to open the sensor (spawning a Python process takes seconds on a board).
_START_TIMEOUT_S = 120.0
_REPLY_TIMEOUT_S = 30.0


class Reader(Protocol):
    """What the child process needs: a picklable object that opens the sensor there and reads it."""

    def open(self) -> None:
        """Open the sensor (called once, in the process that reads)."""

    def read(self) -> Reading:
        """Power by rail in watts and the energy counter in joules (None without one), now."""

    def close(self) -> None:
        """Release the sensor."""


@dataclass
class Samples:
    """Readings of one window.

    Attributes:
        times_s: Time of every reading in seconds (``time.perf_counter`` or the injected clock).
        powers_w: Power by rail at every reading, in watts.
        counters_j: Energy counter at every reading in joules, or None for sensors without one.
    """

    times_s: list[float] = field(default_factory=list)
    powers_w: list[dict[str, float]] = field(default_factory=list)
    counters_j: list[float | None] = field(default_factory=list)

    def add(self, t_s: float, reading: Reading) -> None:
        """Append one reading."""
        self.times_s.append(t_s)
        self.powers_w.append(reading[0])
        self.counters_j.append(reading[1])


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class ThreadSampler:
    """Reads in a background thread of this process (see the module docstring for when)."""

    def __init__(
        self, read: Callable[[], Reading], *, interval_s: float, clock: Callable[[], float], name: str
    ) -> None:
        """Set up sampling.

        Args:
            read: Takes one reading.
            interval_s: Time between readings in seconds.
            clock: Monotonic clock in seconds that timestamps readings.
            name: Sensor name for messages.
        """
        self._name = name
        self._read = read
        self.interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._samples = Samples()
        self._error: BaseException | None = None

    def _sample(self) -> None:
        with self._lock:
            t_s = self._clock()
            self._samples.add(t_s, self._read())

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._sample()
            except BaseException as exc:  # reported by stop()
                self._error = exc
                return

    def start(self) -> None:
        """Take the first reading and start the thread."""
        if self._thread is not None:
            raise SensorError("begin_window() while a window is open; call end_window() first")
        self._samples, self._error = Samples(), None
        self._stop.clear()
        self._sample()
        self._thread = threading.Thread(target=self._run, name="power-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> Samples:
        """Stop the thread, take the last reading and return the window's readings."""
        if self._thread is None:
            raise SensorError("end_window() without begin_window(); open a window first")
        self._stop.set()
        self._thread.join()
        self._thread = None
        if self._error is not None:
            raise SensorError(f"{self._name}: reading power failed ({_describe(self._error)})") from None
        self._sample()
        return self._samples

    def close(self) -> None:
        """Stop a window left open."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None


def _serve(conn: Connection, reader: Reader, interval_s: float) -> None:
    """The child process: open the sensor, then sample between ``begin`` and ``end`` commands."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it closes us
    try:
        reader.open()
    except BaseException as exc:
        conn.send(("error", _describe(exc)))
        return
    conn.send(("ready",))
    samples, active, error, next_s = Samples(), False, "", 0.0

    def take() -> None:
        nonlocal error
        try:
            t_s = time.perf_counter()
            samples.add(t_s, reader.read())
        except Exception as exc:
            error = _describe(exc)

    try:
        while True:
            sampling = active and not error
            timeout = max(0.0, next_s - time.perf_counter()) if sampling else None
            if conn.poll(timeout):
                command = conn.recv()
                if command == "begin":
                    samples, active, error = Samples(), True, ""
                    take()
                    next_s = time.perf_counter() + interval_s
                    conn.send(("begun",))
                elif command == "end":
                    if active and not error:
                        take()
                    active = False
                    conn.send(("error", error) if error else ("samples", samples))
                elif command == "close":
                    return
            elif sampling:
                take()
                next_s += interval_s
                now_s = time.perf_counter()
                if next_s < now_s - interval_s:  # fell behind (a slow read): do not burst to catch up
                    next_s = now_s
    except (EOFError, OSError):  # the parent went away
        return
    finally:
        reader.close()


class ProcessSampler:
    """Reads in a child process (``spawn``), started on first use and kept for every later window."""

    def __init__(self, reader: Reader, *, interval_s: float, name: str) -> None:
        """Set up sampling; the child starts with the first window.

        Args:
            reader: Picklable reader; the child opens and reads it.
            interval_s: Time between readings in seconds.
            name: Sensor name for messages.
        """
        self._reader = reader
        self.interval_s = interval_s
        self._name = name
        self._conn: Connection | None = None
        self._process: Any = None
        self._open_window = False

    def _receive(self, timeout_s: float) -> tuple[Any, ...]:
        assert self._conn is not None
        if not self._conn.poll(timeout_s):
            self.close()
            raise SensorError(f"{self._name}: the sampling process did not answer in {timeout_s:.0f} s")
        try:
            message = self._conn.recv()
        except EOFError:
            self.close()
            raise SensorError(
                f"{self._name}: the sampling process died (a script that starts a sweep needs an "
                "'if __name__ == \"__main__\":' guard); fix that and rerun, or use --sensor none"
            ) from None
        if message[0] == "error":
            raise SensorError(f"{self._name}: reading power failed in the sampling process ({message[1]})")
        return tuple(message)

    def _ensure_started(self) -> None:
        if self._process is not None:
            return
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        process = context.Process(
            target=_serve, args=(child, self._reader, self.interval_s), name="power-sampler", daemon=True
        )
        process.start()
        child.close()
        self._conn, self._process = parent, process
        try:
            self._receive(_START_TIMEOUT_S)
        except SensorError:
            self.close()
            raise

    def start(self) -> None:
        """Open a window: the child takes its first reading before this returns."""
        if self._open_window:
            raise SensorError("begin_window() while a window is open; call end_window() first")
        self._ensure_started()
        assert self._conn is not None
        self._conn.send("begin")
        self._receive(_REPLY_TIMEOUT_S)
        self._open_window = True

    def stop(self) -> Samples:
        """Close the window: the child takes its last reading and sends every reading."""
        if not self._open_window:
            raise SensorError("end_window() without begin_window(); open a window first")
        assert self._conn is not None
        self._open_window = False
        self._conn.send("end")
        samples = self._receive(_REPLY_TIMEOUT_S)[1]
        assert isinstance(samples, Samples)
        return samples

    def close(self) -> None:
        """Stop the child process (idempotent)."""
        conn, process = self._conn, self._process
        self._conn, self._process, self._open_window = None, None, False
        if conn is not None:
            try:
                conn.send("close")
            except (OSError, ValueError):
                pass
            conn.close()
        if process is not None:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
