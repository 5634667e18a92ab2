"""Inputs, and a hung server: timeout -> local fallback -> probe -> resume."""

import threading
import time

import pytest
import torch
import zmq
from PIL import Image

from splitprune.runtime import Device, DeviceOptions
from splitprune.runtime.protocol import decode_tensors, encode_tensors, pack, parse_header
from splitprune.runtime.session import InputError, inputs


def test_inputs_from_a_folder_of_images_and_tensors(tmp_path):
    Image.new("RGB", (40, 20), (255, 0, 0)).save(tmp_path / "a.png")
    torch.save(torch.full((1, 3, 8, 8), 0.5), tmp_path / "b.pt")
    (tmp_path / "notes.txt").write_text("ignored")
    a, b, again = inputs(3, (1, 3, 8, 8), directory=tmp_path)
    assert a.shape == b.shape == (1, 3, 8, 8)
    # red, ImageNet-normalised: (1 - 0.485) / 0.229 in the red channel, (0 - mean) / std elsewhere
    assert a[0, 0].mean().item() == pytest.approx((1 - 0.485) / 0.229, abs=1e-3)
    assert a[0, 2].mean().item() == pytest.approx(-0.406 / 0.225, abs=1e-3)
    assert torch.equal(b, torch.full((1, 3, 8, 8), 0.5)) and torch.equal(again, a)  # files in turn


def test_inputs_refuse_an_empty_folder_and_a_wrong_shape(tmp_path):
    with pytest.raises(InputError, match="no image or .pt file"):
        next(inputs(1, (1, 3, 8, 8), directory=tmp_path))
    torch.save(torch.zeros(5), tmp_path / "x.pt")
    with pytest.raises(InputError, match="has shape"):
        next(inputs(1, (1, 3, 8, 8), directory=tmp_path))


def test_random_inputs_are_reproducible():
    assert all(torch.equal(a, b) for a, b in zip(inputs(3, (1, 4)), inputs(3, (1, 4)), strict=True))


class _HungServer:
    """A ROUTER that answers probes but holds inference requests until told to serve them."""

    def __init__(self, model):
        self.model, self.serve_infer = model, threading.Event()
        self.context = zmq.Context()
        self.sock = self.context.socket(zmq.ROUTER)
        self.port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.held, self.stop, self.delay_s = [], threading.Event(), 0.0
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        while not self.stop.is_set():
            if not self.sock.poll(20):
                continue
            identity, *body = self.sock.recv_multipart()
            header = parse_header(body[0])
            if header["kind"] == "probe":
                pong = {"kind": "pong", "id": header["id"], "server_s": 0.0}
                self.sock.send_multipart([identity, *pack(pong)])
            elif not self.serve_infer.is_set():
                self.held.append((identity, header["id"]))
            else:
                (x,) = decode_tensors(header, body[1:])
                time.sleep(self.delay_s)  # a slow link: the server says it spent no time itself
                with torch.no_grad():
                    y = self.model.module(x)
                reply = {"kind": "result", "id": header["id"], "server_s": 0.0, "batch": 1}
                self.sock.send_multipart([identity, *pack(reply, encode_tensors([("y", y)], ["fp32"]))])

    def late_replies(self):
        for identity, request_id in self.held:  # to a socket the device has dropped: must go nowhere
            self.sock.send_multipart([identity, *pack({"kind": "result", "id": request_id, "server_s": 0.0},
                                                      encode_tensors([("y", torch.zeros(1, 10))], ["fp32"]))])

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.sock.close(linger=0)
        self.context.term()


def test_a_hung_server_times_out_to_local_then_probing_resumes_offloading(tiny_model):
    fake = _HungServer(tiny_model)
    options = DeviceOptions(timeout_s=0.3, probe_every=2)
    device = Device(tiny_model, f"tcp://127.0.0.1:{fake.port}", options=options)
    try:
        assert device.connect()
        xs = [torch.randn(tuple(tiny_model.example.shape)) for _ in range(4)]
        first = device.infer(xs[0])
        assert first.record.local_fallback and first.record.fallback_reason == "timeout"
        assert first.record.total_s >= 0.3 and not device.server_up
        fake.late_replies()
        fake.serve_infer.set()
        second = device.infer(xs[1])  # server down: local at once, no wait
        assert second.record.fallback_reason == "server down" and second.record.total_s < 0.3
        third, fourth = device.infer(xs[2]), device.infer(xs[3])  # the probe before the third finds it back
        assert device.server_up and not third.record.local_fallback and not fourth.record.local_fallback
        with torch.no_grad():
            for x, inference in zip(xs, (first, second, third, fourth), strict=True):
                error = float((inference.output - tiny_model.module(x)).abs().max())
                assert error < 0.05  # its own output, not a late reply's zeros
        assert [i.record.request_id for i in (first, second, third, fourth)] == [0, 1, 2, 3]
    finally:
        device.close()
        fake.close()


def test_the_wait_scales_with_the_bytes_so_a_slow_link_is_not_a_dead_server(tiny_model):
    fake = _HungServer(tiny_model)
    fake.serve_infer.set()
    fake.delay_s = 0.5  # the reply comes 0.5 s after the request
    x = torch.randn(tuple(tiny_model.example.shape))
    try:
        # at 100 kbit/s the ~3 kB request needs ~0.25 s: the wait is 0.2 s + 4 x that
        slow = Device(tiny_model, f"tcp://127.0.0.1:{fake.port}",
                      options=DeviceOptions(timeout_s=0.2, initial_rate_bps=1e5))
        with slow:
            assert slow.reply_wait_s(3000) == pytest.approx(0.2 + 4 * 8 * 3000 / 1e5)
            record = slow.infer(x).record
            assert not record.local_fallback and record.total_s >= 0.5
        # at 1 Gbit/s the same bytes need nothing: 0.2 s is all the wait, and it runs out
        fast = Device(tiny_model, f"tcp://127.0.0.1:{fake.port}",
                      options=DeviceOptions(timeout_s=0.2, initial_rate_bps=1e9))
        with fast:
            record = fast.infer(x).record
            assert record.local_fallback and record.fallback_reason == "timeout"
    finally:
        fake.close()
