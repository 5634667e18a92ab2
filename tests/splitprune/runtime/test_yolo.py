"""Serving YOLO11n (ATen graph, nested output) over loopback: every cut the policy uses reproduces it."""

from __future__ import annotations

import threading

import pytest
import torch

from splitprune.runtime import Device, Server, SplitSettings, prepare
from splitprune.runtime.server import as_tuple

pytest.importorskip("ultralytics")

SETTINGS = SplitSettings(board="tx2", link="5g", wire="fp16", input_wire="fp32", input_shape=(1, 3, 128, 128),
                         rate_range_bps=(2e6, 2e8))


@pytest.fixture(scope="module")
def yolo_server(tmp_path_factory):
    model = prepare("ultralytics:yolo11n", SETTINGS)
    tails = tmp_path_factory.mktemp("tails")
    server = Server(model, listen="tcp://127.0.0.1:0", max_batch=1, cache_dir=tails)
    errors = server.load()
    server.bind()
    stop = threading.Event()
    thread = threading.Thread(target=server.serve, args=(stop,), daemon=True)
    thread.start()
    yield model, server, errors
    stop.set()
    thread.join(10)


def test_yolo11n_is_served_on_every_cut_with_the_model_output(yolo_server):
    model, server, errors = yolo_server
    splits = [c for c in model.cuts if not c.all_local]
    assert splits and set(errors) == {c.cut_id for c in splits}
    assert all(e < 1e-4 for e in errors.values())
    with torch.no_grad():
        reference = as_tuple(model.module(model.example))
    assert len(reference) > 1  # boxes and scores, raw maps, features: a nested output, flattened
    for cut in model.cuts:
        device = Device(model, server.bound, pin_cut=cut.cut_id)
        try:
            assert device.connect()
            for _ in range(2):
                done = device.infer(model.example)
                assert not done.record.local_fallback, done.record.fallback_reason
                assert (done.record.sent_bytes > 0) == (not cut.all_local)
                got = as_tuple(done.output)
                assert [t.shape for t in got] == [t.shape for t in reference]
                scale = max(float(t.abs().max()) for t in reference)
                error = max(float((a - b).abs().max()) for a, b in zip(got, reference, strict=True))
                assert error <= 1e-2 * max(scale, 1.0)  # fp16 on the wire
        finally:
            device.close()
