"""Shared runtime fixtures: one prepared tiny model and one in-process server per test session."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

pytest.importorskip("zmq", reason="pyzmq (extra 'runtime') is not installed")

from splitprune.runtime import Server, SplitSettings, prepare  # noqa: E402

TINY = f"{Path(__file__).parent / 'tiny_net.py'}:build"
TINY_SETTINGS = SplitSettings(board="tx2", link="wifi", input_shape=(1, 3, 32, 32))
TOKEN = "s3cret"


@pytest.fixture(scope="session")
def token():
    return TOKEN


@pytest.fixture(scope="session")
def tiny_model():
    return prepare(TINY, TINY_SETTINGS)


@pytest.fixture(scope="session")
def tiny_server(tiny_model, tmp_path_factory):
    """A server with a token and batching, on a free loopback port, for the whole session."""
    server = Server(tiny_model, listen="tcp://127.0.0.1:0", token=TOKEN, max_message_bytes=200_000,
                    max_batch=4, batch_timeout_s=0.002, cache_dir=tmp_path_factory.mktemp("tails"))
    server.load()
    server.bind()
    stop = threading.Event()
    thread = threading.Thread(target=server.serve, args=(stop,), daemon=True)
    thread.start()
    yield server
    stop.set()
    thread.join(10)
