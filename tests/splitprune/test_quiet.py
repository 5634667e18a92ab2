"""The fd-1 guard: native writes vanish while it is held, and fd 1 is itself again afterwards."""

from __future__ import annotations

import ctypes
import os
import threading

import pytest

from splitprune.quiet import native_stdout_silenced


def _native(text: str) -> None:
    os.write(1, f"{text} (write)\n".encode())
    ctypes.CDLL(None).printf(f"{text} (stdio)\n".encode())


def test_native_writes_vanish_inside_and_reach_fd_1_after(capfd: pytest.CaptureFixture[str]):
    print("before", flush=True)
    with native_stdout_silenced():
        _native("inside")
        with native_stdout_silenced():  # nested holders share one redirection
            _native("nested")
        _native("still inside")
    os.write(1, b"after\n")
    out, err = capfd.readouterr()
    assert out == "before\nafter\n"
    assert "inside" not in err and "nested" not in err


def test_concurrent_holders_restore_fd_1_once_all_have_left(capfd: pytest.CaptureFixture[str]):
    entered, release = threading.Barrier(4), threading.Event()

    def hold() -> None:
        with native_stdout_silenced():
            entered.wait()
            release.wait()
            _native("worker")

    workers = [threading.Thread(target=hold) for _ in range(3)]
    for worker in workers:
        worker.start()
    entered.wait()
    os.write(1, b"while held\n")
    release.set()
    for worker in workers:
        worker.join()
    os.write(1, b"after\n")
    out, _ = capfd.readouterr()
    assert out == "after\n"


def test_an_exception_inside_still_restores_fd_1(capfd: pytest.CaptureFixture[str]):
    with pytest.raises(RuntimeError), native_stdout_silenced():
        raise RuntimeError("solver failed")
    os.write(1, b"after\n")
    assert capfd.readouterr().out == "after\n"
