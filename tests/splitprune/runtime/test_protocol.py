import json

import pytest
import torch

from splitprune.runtime.protocol import ProtocolError, decode_tensors, encode_tensors, pack, parse_header


def _roundtrip(tensors, codecs):
    frames = pack({"kind": "infer", "id": 7}, encode_tensors(list(tensors.items()), codecs))
    header = parse_header(frames[0])
    return header, decode_tensors(header, [memoryview(f).cast("B") for f in frames[1:]])


def test_fp32_and_integer_tensors_come_back_exactly():
    x, ids = torch.randn(2, 3, 5), torch.arange(6).reshape(2, 3)
    header, (x2, ids2) = _roundtrip({"x": x, "ids": ids}, ["fp32", "fp32"])
    assert header["id"] == 7 and [t["name"] for t in header["tensors"]] == ["x", "ids"]
    assert torch.equal(x2, x) and torch.equal(ids2, ids) and ids2.dtype == torch.int64


@pytest.mark.parametrize(("codec", "nbytes_per_element", "tolerance"),
                         [("fp16", 2, 2e-3), ("int8", 1, 2 / 255), ("uint8", 1, 2 / 255)])
def test_lossy_codecs_shrink_and_stay_close(codec, nbytes_per_element, tolerance):
    x = torch.randn(4, 64)
    span = float(x.max() - x.min())
    header, (y,) = _roundtrip({"x": x}, [codec])
    assert header["tensors"][0]["nbytes"] == x.numel() * nbytes_per_element
    assert float((y.float() - x).abs().max()) <= tolerance * max(span, 1.0)
    assert float((y.float() - x).abs().max()) > 0  # it is lossy: the test would catch a raw copy


def test_decoded_tensors_own_their_memory():
    x = torch.zeros(10)
    frames = pack({"kind": "infer", "id": 1}, encode_tensors([("x", x)], ["fp32"]))
    buffer = bytearray(bytes(frames[1]))
    (y,) = decode_tensors(parse_header(frames[0]), [buffer])
    buffer[:4] = b"\xff\xff\xff\xff"
    y.add_(1)  # writable, and not a view of the received bytes
    assert torch.equal(y, torch.ones(10))


def _one(spec, payload):
    return json.dumps({"v": 1, "kind": "infer", "tensors": [spec]}).encode(), [payload]


@pytest.mark.parametrize(("header", "frames", "message"), [
    (b"\x80not json", [], "not UTF-8 JSON"),
    (b"[1, 2]", [], "not a JSON object"),
    (json.dumps({"v": 99, "kind": "infer"}).encode(), [], "protocol version"),
    (json.dumps({"v": 1, "kind": "shutdown"}).encode(), [], "unknown message kind"),
    (*_one({"name": "x", "dtype": "object", "shape": [1], "nbytes": 8}, b"\0" * 8), "not allowed"),
    (*_one({"name": "x", "dtype": "float32", "shape": [4], "nbytes": 16}, b"\0" * 12), "payload bytes"),
    (*_one({"name": "x", "dtype": "float32", "shape": [-1], "nbytes": 4}, b"\0" * 4), "bad shape"),
    (json.dumps({"v": 1, "kind": "infer", "tensors": []}).encode(), [b"\0" * 4], "describes 0 tensors"),
    (*_one({"name": "x", "dtype": "int8", "shape": [4], "nbytes": 4, "scale": -1.0, "zero_point": 0},
           b"\0" * 4), "quantisation"),
])
def test_bad_messages_raise_protocol_errors(header, frames, message):
    with pytest.raises(ProtocolError, match=message):
        decode_tensors(parse_header(header), frames)


def test_oversized_header_is_refused_before_parsing():
    with pytest.raises(ProtocolError, match="exceeds"):
        parse_header(b" " * (64 * 1024 + 1))
