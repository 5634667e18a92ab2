"""A real server on loopback: bad messages get error replies, and it keeps serving."""

import json
import math
import threading

import pytest
import torch
import zmq

from splitprune.errors import SplitpruneError
from splitprune.runtime import Device, DeviceOptions, Server, SplitSettings
from splitprune.runtime.protocol import encode_tensors, pack, parse_header

TOKEN = "s3cret"  # the tiny_server fixture's token


@pytest.fixture()
def dealer(tiny_server):
    context = zmq.Context()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(tiny_server.bound)
    yield sock
    sock.close()
    context.term()


def _ask(sock, frames):
    sock.send_multipart(frames)
    assert sock.poll(10_000), "no reply: the server is not serving"
    reply = sock.recv_multipart()
    return parse_header(reply[0]), reply[1:]


def _infer_frames(model, *, token=TOKEN, cut=None, x=None, model_id=None, request_id=1):
    offload = next(c for c in model.cuts if not c.all_local)
    x = model.example if x is None else x
    return pack({"kind": "infer", "id": request_id, "model": model_id or model.model_id,
                 "cut": cut or offload.cut_id, "token": token},
                encode_tensors([("x", x)], list(offload.codecs)))


def test_a_valid_request_is_answered_with_the_model_output(tiny_model, dealer):
    header, payloads = _ask(dealer, _infer_frames(tiny_model))
    assert header["kind"] == "result" and header["id"] == 1 and header["server_s"] >= 0
    out = torch.frombuffer(bytearray(payloads[0]), dtype=torch.float32).reshape(header["tensors"][0]["shape"])
    with torch.no_grad():
        expected = tiny_model.module(tiny_model.example)
    # the input travelled as uint8 pixels (the default input wire): close, not equal
    assert out.shape == expected.shape and float((out - expected).abs().max()) < 0.05


@pytest.mark.parametrize(("frames", "reason"), [
    ([b"\x00\xffgarbage"], "malformed"),
    ([b'{"v": 1, "kind": "infer"'], "malformed"),
    ([json.dumps({"v": 2, "kind": "infer", "id": 3}).encode()], "malformed"),
    ([b"{}", b"\0" * 300_000], "oversized"),
])
def test_garbage_and_oversized_messages_get_error_replies(dealer, frames, reason):
    header, _ = _ask(dealer, frames)
    assert header["kind"] == "error" and header["reason"] == reason and header["error"]


def test_rule_breaking_requests_get_error_replies_and_the_server_keeps_serving(tiny_model, tiny_server,
                                                                               dealer):
    cases = {
        "token": _infer_frames(tiny_model, token="wrong", request_id=10),
        "cut": _infer_frames(tiny_model, cut="0123456789ab", request_id=11),
        "model": _infer_frames(tiny_model, model_id="not-this-model", request_id=12),
        "tensor": _infer_frames(tiny_model, x=torch.randn(1, 3, 16, 16), request_id=13),
    }
    errors_before = sum(tiny_server.stats.errors.values())
    for reason, frames in cases.items():
        header, _ = _ask(dealer, frames)
        expected = ("error", reason, json.loads(frames[0])["id"])
        assert (header["kind"], header["reason"], header["id"]) == expected
    missing = pack({"kind": "infer", "id": 14, "model": tiny_model.model_id, "cut": "x"})  # no token at all
    assert _ask(dealer, missing)[0]["reason"] == "token"
    assert sum(tiny_server.stats.errors.values()) == errors_before + 5
    header, _ = _ask(dealer, _infer_frames(tiny_model, request_id=15))
    assert header["kind"] == "result" and header["id"] == 15


def test_four_devices_times_100_requests_nothing_lost_or_mixed_up(tiny_model, tiny_server):
    results: dict[int, list] = {}

    def device_run(k):
        device = Device(tiny_model, tiny_server.bound, token=TOKEN, options=DeviceOptions(timeout_s=10.0))
        assert device.connect()
        generator = torch.Generator().manual_seed(100 + k)
        rows = []
        for _ in range(100):
            x = torch.randn(tuple(tiny_model.example.shape), generator=generator)
            inference = device.infer(x)
            rows.append((x, inference.output, inference.record))
        device.close()
        results[k] = rows

    served_before, batched_before = tiny_server.stats.requests, tiny_server.stats.batched_requests
    threads = [threading.Thread(target=device_run, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(results) == [0, 1, 2, 3]
    with torch.no_grad():
        for rows in results.values():
            assert [r.request_id for _, _, r in rows] == list(range(100))
            assert not any(r.local_fallback for _, _, r in rows)
            for x, out, _ in rows:  # each output is its own input's (uint8 input wire: close, not equal)
                expected = tiny_model.module(x)
                assert float((out - expected).abs().max()) < 0.05
                others = [tiny_model.module(y) for y, _, _ in rows[:3] if y is not x]
                assert all(float((out - o).abs().max()) > float((out - expected).abs().max()) for o in others)
    assert tiny_server.stats.requests - served_before == 400
    batched = sum(r.batch > 1 for rows in results.values() for _, _, r in rows)
    assert batched == tiny_server.stats.batched_requests - batched_before  # replies tell the truth


def test_same_cut_requests_arriving_together_run_as_one_batch(tiny_model, tiny_server, dealer):
    xs = [torch.randn(tuple(tiny_model.example.shape)) for _ in range(4)]
    for i, x in enumerate(xs):
        dealer.send_multipart(_infer_frames(tiny_model, x=x, request_id=100 + i))
    replies = {}
    for _ in xs:
        assert dealer.poll(10_000)
        frames = dealer.recv_multipart()
        header = parse_header(frames[0])
        replies[header["id"]] = (header, frames[1])
    assert sorted(replies) == [100, 101, 102, 103]
    assert max(h["batch"] for h, _ in replies.values()) >= 2
    with torch.no_grad():
        for i, x in enumerate(xs):  # a batched reply still carries its own request's output
            header, payload = replies[100 + i]
            shape = header["tensors"][0]["shape"]
            out = torch.frombuffer(bytearray(payload), dtype=torch.float32).reshape(shape)
            assert float((out - tiny_model.module(x)).abs().max()) < 0.05
    assert math.isfinite(tiny_server.stats.batching_saved_s)


def test_the_server_refuses_a_remote_address_unless_asked(tiny_model):
    from splitprune.runtime.server import ServerStartupError

    with pytest.raises(ServerStartupError, match="--allow-remote"):
        Server(tiny_model, listen="tcp://0.0.0.0:5555")
    with pytest.raises(SplitpruneError, match="use fp32, fp16 or int8"):
        SplitSettings(wire="ratio:4")


def test_a_tail_that_fails_gets_an_error_reply_and_the_server_keeps_serving(tiny_model, tiny_server, dealer):
    tail = next(iter(tiny_server.tails.values()))
    program = tail.program

    def broken(*args):
        raise RuntimeError("out of memory")

    tail.program = broken
    try:
        header, _ = _ask(dealer, _infer_frames(tiny_model, request_id=200))
    finally:
        tail.program = program
    assert (header["kind"], header["reason"], header["id"]) == ("error", "internal", 200)
    assert "out of memory" in header["error"]
    assert _ask(dealer, _infer_frames(tiny_model, request_id=201))[0]["kind"] == "result"


def test_probing_while_all_local_sends_a_train_where_one_probe_would_fit_in_the_burst(tiny_model, tiny_server,
                                                                                      token):
    device = Device(tiny_model, tiny_server.bound, token=token, options=DeviceOptions(probe_every=2),
                    pin_cut=tiny_model.all_local_cut.cut_id)
    calls = []
    with device:

        def called(name):
            def record(**_):
                calls.append(name)
                device._since_probe = 0
                return True
            return record

        device.measure_link, device.probe = called("train"), called("probe")
        device.estimator.burst_bytes = 10**6  # a 16 kB probe passes at once: it cannot show the rate
        for _ in range(4):
            device.infer(tiny_model.example)
        device.estimator.burst_bytes = 0
        for _ in range(2):
            device.infer(tiny_model.example)
    assert calls == ["train", "train", "probe"]
