"""The wire protocol between devices and the server: a JSON header frame, then raw tensor frames.

A message is a ZeroMQ multipart message ``[header, payload_0, payload_1, ...]``. The header is UTF-8
JSON (at most :data:`MAX_HEADER_BYTES`) with the protocol version ``v``, the message ``kind``
(``infer``, ``probe``; replies ``result``, ``pong``, ``error``), the request ``id``, the ``model`` id,
the ``cut`` id, an optional shared-secret ``token`` and one descriptor per payload frame: ``name``,
``dtype`` (on the wire), ``shape``, ``nbytes`` and, for quantised tensors, ``scale`` and
``zero_point`` (the value is ``(q - zero_point) * scale``, decoded to float32). Payload frames are the
tensors' raw bytes in C order, little-endian. Nothing received is unpickled or ``torch.load``-ed:
a payload is only ever read as an array of a whitelisted dtype whose size the header states.

Codecs follow ``split``'s wire formats: intermediate tensors ``fp32`` (as they are), ``fp16``
(cast), ``int8`` (per-tensor affine: 8 header bytes, as ``split`` prices it); the model's input
``fp32``, ``fp16`` or ``uint8`` (per-tensor affine onto 256 levels, as raw pixels are).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import SplitpruneError

__all__ = [
    "CODECS",
    "MAX_HEADER_BYTES",
    "PROTOCOL_VERSION",
    "ProtocolError",
    "decode_tensors",
    "encode_tensors",
    "pack",
    "parse_header",
    "payload_bytes",
]

PROTOCOL_VERSION = 1
MAX_HEADER_BYTES = 64 * 1024
KINDS = ("infer", "probe", "result", "pong", "error")

# Wire dtypes a payload may have (no object, no pickle): name -> (numpy dtype, torch dtype).
_DTYPES: dict[str, tuple[Any, torch.dtype]] = {
    "float32": (np.float32, torch.float32), "float16": (np.float16, torch.float16),
    "float64": (np.float64, torch.float64), "uint8": (np.uint8, torch.uint8),
    "int8": (np.int8, torch.int8), "int16": (np.int16, torch.int16), "int32": (np.int32, torch.int32),
    "int64": (np.int64, torch.int64), "bool": (np.bool_, torch.bool),
}
CODECS = ("fp32", "fp16", "int8", "uint8")
_QUANT = {"int8": (torch.int8, -128, 127), "uint8": (torch.uint8, 0, 255)}


class ProtocolError(SplitpruneError):
    """A message does not follow the protocol (the reply says why)."""


@dataclass(frozen=True)
class Encoded:
    """Tensors ready to send: their descriptors and their raw bytes.

    Attributes:
        specs: One JSON descriptor per tensor.
        frames: The payloads (contiguous numpy arrays, sent without a copy).
    """

    specs: tuple[dict[str, Any], ...]
    frames: tuple[np.ndarray, ...]

    @property
    def nbytes(self) -> int:
        """Payload bytes."""
        return sum(int(f.nbytes) for f in self.frames)


def _quantise(t: torch.Tensor, codec: str) -> tuple[torch.Tensor, float, int]:
    dtype, qmin, qmax = _QUANT[codec]
    lo, hi = (float(t.min()), float(t.max())) if t.numel() else (0.0, 0.0)
    lo, hi = min(lo, 0.0), max(hi, 0.0)  # zero stays exact
    scale = (hi - lo) / (qmax - qmin) or 1.0
    zero_point = int(round(qmin - lo / scale))
    q = torch.clamp(torch.round(t / scale) + zero_point, qmin, qmax).to(dtype)
    return q, scale, zero_point


def encode_tensors(named: Sequence[tuple[str, torch.Tensor]], codecs: Sequence[str]) -> Encoded:
    """Encode tensors with one codec each (``fp32`` sends any dtype as it is; others apply to floats)."""
    specs, frames = [], []
    for (name, tensor), codec in zip(named, codecs, strict=True):
        t = tensor.detach()
        spec: dict[str, Any] = {"name": name}
        if t.is_floating_point() and codec == "fp16":
            t = t.to(torch.float16)
        elif t.is_floating_point() and codec in _QUANT:
            t, spec["scale"], spec["zero_point"] = _quantise(t.float(), codec)
        array = np.ascontiguousarray(t.cpu().numpy())
        spec.update(dtype=str(array.dtype), shape=list(array.shape), nbytes=int(array.nbytes))
        specs.append(spec)
        frames.append(array)
    return Encoded(tuple(specs), tuple(frames))


def pack(header: dict[str, Any], encoded: Encoded | None = None) -> list[Any]:
    """The frames of one message: the header (with the tensor descriptors) and the payloads."""
    body = {"v": PROTOCOL_VERSION, **header, "tensors": list(encoded.specs) if encoded else []}
    frames: list[Any] = [json.dumps(body, separators=(",", ":"), allow_nan=False).encode()]
    if encoded is not None:
        frames.extend(encoded.frames)
    return frames


def payload_bytes(frames: Sequence[Any]) -> int:
    """Bytes of a message's frames."""
    return sum(len(memoryview(f)) if not hasattr(f, "nbytes") else int(f.nbytes) for f in frames)


def parse_header(frame: bytes | memoryview) -> dict[str, Any]:
    """Decode and check a header frame.

    Raises:
        ProtocolError: Too long, not JSON, not an object, wrong version or unknown kind.
    """
    raw = bytes(frame)
    if len(raw) > MAX_HEADER_BYTES:
        raise ProtocolError(f"header of {len(raw)} bytes exceeds {MAX_HEADER_BYTES}")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ProtocolError("header is not UTF-8 JSON") from None
    if not isinstance(header, dict):
        raise ProtocolError("header is not a JSON object")
    if header.get("v") != PROTOCOL_VERSION:
        raise ProtocolError(f"protocol version {header.get('v')!r} is not {PROTOCOL_VERSION}")
    if header.get("kind") not in KINDS:
        raise ProtocolError(f"unknown message kind {header.get('kind')!r}")
    if not isinstance(header.get("tensors", []), list):
        raise ProtocolError("'tensors' must be a list")
    return header


def _check_spec(spec: Any, frame_len: int) -> tuple[str, Any, torch.dtype, tuple[int, ...]]:
    if not isinstance(spec, dict):
        raise ProtocolError("a tensor descriptor is not an object")
    dtype = spec.get("dtype")
    if dtype not in _DTYPES:
        raise ProtocolError(f"dtype {dtype!r} is not allowed; use one of {', '.join(_DTYPES)}")
    shape = spec.get("shape")
    if not isinstance(shape, list) or len(shape) > 8 or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise ProtocolError(f"bad shape {shape!r}: a list of at most 8 non-negative integers")
    np_dtype, torch_dtype = _DTYPES[dtype]
    expected = math.prod(shape) * np.dtype(np_dtype).itemsize
    if spec.get("nbytes") != expected or frame_len != expected:
        raise ProtocolError(
            f"tensor {spec.get('name')!r}: {frame_len} payload bytes, header says {spec.get('nbytes')!r}, "
            f"shape and dtype need {expected}"
        )
    return str(spec.get("name", "")), np_dtype, torch_dtype, tuple(shape)


def decode_tensors(header: dict[str, Any], frames: Sequence[Any]) -> list[torch.Tensor]:
    """The tensors of a message, each in its own memory; quantised ones come back as float32.

    The receiver casts them to the dtypes it expects (an ``fp16`` tensor arrives as float16).

    Raises:
        ProtocolError: Descriptors and payload frames do not match.
    """
    specs = header.get("tensors", [])
    if len(specs) != len(frames):
        raise ProtocolError(f"header describes {len(specs)} tensors, message has {len(frames)} payloads")
    out = []
    for spec, frame in zip(specs, frames, strict=True):
        view = memoryview(frame)
        _, np_dtype, _, shape = _check_spec(spec, view.nbytes)
        array = np.frombuffer(view, dtype=np.dtype(np_dtype).newbyteorder("<")).reshape(shape)
        tensor = torch.from_numpy(array.astype(array.dtype.newbyteorder("="), copy=True))
        if "scale" in spec or "zero_point" in spec:
            scale, zero_point = spec.get("scale"), spec.get("zero_point")
            if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0
                    and isinstance(zero_point, int) and spec["dtype"] in _QUANT):
                raise ProtocolError(f"tensor {spec.get('name')!r}: bad quantisation scale/zero point")
            tensor = (tensor.to(torch.float32) - zero_point) * float(scale)
        out.append(tensor)
    return out
