"""The device: runs the head of the current cut, sends the cut tensors, gets the output back.

:meth:`Device.infer` picks the cut for the current uplink estimate (:mod:`.rate`), runs its head, and
either finishes locally (all local) or sends the crossing tensors to the server and waits up to
``timeout_s`` for the reply. A request always finishes on the cut it started with. When the server is
unreachable, too slow or refuses the request, the device computes the tail itself on the head's
outputs (a *local fallback*), drops the socket (so nothing queued is sent later, and a late reply has
nowhere to go) and treats the server as down; every ``probe_every`` requests that run all local (by
choice or because the server is down) it sends a small probe, which both measures the link and tells
it the server is back. Every request returns exactly one output; its :class:`RequestRecord` says how.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from ..errors import SplitpruneError
from .cuts import Cut, SplitModel
from .keys import DeviceCurve, HandshakeWatch, check_plaintext, secure_device_socket
from .protocol import ProtocolError, decode_tensors, encode_tensors, pack, parse_header
from .rate import CutChooser, RateEstimator
from .server import as_tuple

__all__ = ["Device", "DeviceOptions", "Inference", "RequestRecord"]


@dataclass(frozen=True)
class DeviceOptions:
    """How a device waits, probes and follows the rate.

    Attributes:
        timeout_s: Longest wait for a reply before finishing locally, s.
        probe_every: Requests between probes while running all local.
        probe_bytes: Payload of a probe, bytes.
        smoothing: Weight of a new rate sample (see :class:`~splitprune.runtime.rate.RateEstimator`).
        hysteresis: Widening of the current cut's rate ranges before switching.
        initial_rate_bps: Estimate before the first transfer (None: the link profile's rate), bit/s.
    """

    timeout_s: float = 1.0
    probe_every: int = 10
    probe_bytes: int = 16384
    smoothing: float = 0.5
    hysteresis: float = 0.15
    initial_rate_bps: float | None = None

    def __post_init__(self) -> None:
        if not (self.timeout_s > 0 and self.probe_every >= 1 and self.probe_bytes >= 0
                and 0 < self.smoothing <= 1 and self.hysteresis >= 0):
            raise SplitpruneError(
                "need --timeout-ms > 0, --probe-every >= 1, 0 < --smoothing <= 1 and --hysteresis >= 0"
            )


@dataclass(frozen=True)
class RequestRecord:
    """One request, as ``--log`` writes it.

    Attributes:
        request_id: The device's request number.
        cut: Cut id the request ran on.
        cut_kind: ``all_local``, ``full_offload`` or ``split``.
        sent_bytes: Bytes sent (header and payloads; 0 when run locally).
        rate_estimate_bps: Uplink estimate the cut was chosen with, bit/s.
        head_s: Time of the head on the device, s.
        transfer_s: Round trip less the server's time and the base round trip, s.
        server_s: Time the server held the request (decode, queue, batch, tail, encode), s.
        tail_s: Time of the tail (of its batch) on the server, s.
        total_s: Wall-clock time of the whole request, s.
        predicted_latency_s: The model's end-to-end latency for this cut at the estimate, s.
        local_fallback: Whether the device finished a request meant for the server.
        batch: Size of the batch the server ran it in (0 when not served).
        fallback_reason: Why the server did not answer (timeout, unreachable, server down, its error
            reply), else None.
        energy_j: Device energy of the request from ``--sensor``, J (None without one).
    """

    request_id: int
    cut: str
    cut_kind: str
    sent_bytes: int
    rate_estimate_bps: float
    head_s: float
    transfer_s: float
    server_s: float
    tail_s: float
    total_s: float
    predicted_latency_s: float
    local_fallback: bool
    batch: int
    fallback_reason: str | None
    energy_j: float | None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return asdict(self)


@dataclass(frozen=True)
class Inference:
    """One request's output and record.

    Attributes:
        output: The model's output (a tensor, or a tuple when the model returns several).
        record: How it was computed.
    """

    output: Any
    record: RequestRecord


class _NoReplyError(Exception):
    """The server did not answer in time (or could not be reached)."""


class Device:
    """Split inference against one server.

    Args:
        model: The prepared model (same settings as the server's).
        connect: The server's ZeroMQ address.
        token: Shared secret, if the server wants one.
        options: Timeout, probing and rate following.
        sensor: A ``measure`` power sensor for per-request device energy (None: no energy).
        pin_cut: Always use this cut id instead of following the policy (falls back all the same).
        curve: The device's CURVE keys and the server's public key (None: plaintext, which a
            non-loopback address allows only with ``insecure``).
        insecure: Allow plaintext to a non-loopback address.

    Raises:
        KeysError: Plaintext to a non-loopback address without ``insecure``.
    """

    def __init__(self, model: SplitModel, connect: str, *, token: str | None = None,
                 options: DeviceOptions | None = None, sensor: Any = None,
                 pin_cut: str | None = None, curve: DeviceCurve | None = None,
                 insecure: bool = False) -> None:
        check_plaintext(connect, encrypted=curve is not None, insecure=insecure, role="run")
        self.curve = curve
        self._watch = HandshakeWatch()  # names a refused key, or a plaintext/CURVE mismatch
        options = options or DeviceOptions()
        self.model, self.address, self.token, self.options = model, connect, token, options
        self.timeout_s, self.probe_every = options.timeout_s, options.probe_every
        self.probe_bytes, self.sensor = options.probe_bytes, sensor
        low, high = model.settings.rate_range_bps
        start = options.initial_rate_bps or model.link.uplink.nominal_rate_bps
        self.estimator = RateEstimator(min(max(start, low), high), options.smoothing, low, high)
        self.chooser = CutChooser(model, options.hysteresis)
        self.pinned = model.cut(pin_cut) if pin_cut is not None else None
        self.server_up = False
        self._ids = itertools.count()
        self._wire_ids = itertools.count()
        self._since_probe = 0
        self._context: Any = None
        self._socket: Any = None
        zeros = torch.zeros(options.probe_bytes, dtype=torch.uint8)
        self._probe_payload = encode_tensors([("probe", zeros)], ["fp32"])

    # -- connection ------------------------------------------------------------------------------
    def connect(self, *, pings: int = 3) -> bool:
        """Open the socket and ping the server (base round trip); return whether it answered."""
        import zmq

        if self._context is None:
            self._context = zmq.Context()
        self._reset()
        for _ in range(pings):
            if not self.probe(payload=False):
                break
        return self.server_up

    def _reset(self) -> None:
        import zmq

        self._close_socket()
        sock = self._context.socket(zmq.DEALER)
        if self.curve is not None:
            secure_device_socket(sock, self.curve)
        self._watch.attach(sock)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IMMEDIATE, 1)  # queue nothing for a server that is not there
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        sock.connect(self.address)
        self._socket = sock

    def _close_socket(self) -> None:
        self._watch.detach()
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None

    def handshake_failure(self) -> str | None:
        """Why the encrypted connection fails (key refused, wrong server key), or None."""
        return self._watch.failure()

    def close(self) -> None:
        """Close the socket and the context (idempotent)."""
        self._close_socket()
        if self._context is not None:
            self._context.term()
            self._context = None

    def __enter__(self) -> Device:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _exchange(self, frames: list[Any], wire_id: int) -> tuple[dict[str, Any], list[Any], float]:
        """Send one message, wait for the reply with ``wire_id``; return header, payloads, round trip."""
        import zmq

        deadline = time.perf_counter() + self.timeout_s
        while True:  # with IMMEDIATE, a send fails until the connection is up: wait for it
            start = time.perf_counter()  # the round trip starts with the send that succeeds
            try:
                self._socket.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
                break
            except zmq.Again:
                left = deadline - time.perf_counter()
                if left <= 0 or not self._socket.poll(left * 1e3, zmq.POLLOUT):
                    raise _NoReplyError(self.handshake_failure() or "unreachable") from None
        while True:
            left = deadline - time.perf_counter()
            if left <= 0 or not self._socket.poll(left * 1e3, zmq.POLLIN):
                raise _NoReplyError("timeout")
            reply = self._socket.recv_multipart(copy=False)
            try:
                header = parse_header(reply[0].buffer)
            except ProtocolError:
                continue
            if header.get("id") == wire_id or (header.get("kind") == "error" and header.get("id") is None):
                return header, reply[1:], time.perf_counter() - start

    def probe(self, *, payload: bool = True) -> bool:
        """Send a probe (with ``probe_bytes`` of payload, or empty); update the estimate and server state."""
        self._since_probe = 0
        if self._socket is None:
            self.connect(pings=0)
        wire_id = next(self._wire_ids)
        encoded = self._probe_payload if payload and self.probe_bytes > 0 else None
        frames = pack({"kind": "probe", "id": wire_id, "token": self.token}, encoded)
        try:
            header, _, rtt = self._exchange(frames, wire_id)
        except _NoReplyError:
            self.server_up = False
            self._reset()
            return False
        if header.get("kind") != "pong":
            self.server_up = False
            return False
        server_s = float(header.get("server_s", 0.0))
        if encoded is None:
            self.estimator.observe_rtt(rtt - server_s)
        else:
            self.estimator.observe(encoded.nbytes + len(frames[0]), rtt, server_s)
        self.server_up = True
        return True

    # -- inference -------------------------------------------------------------------------------
    def infer(self, x: torch.Tensor) -> Inference:
        """Run one request on the current cut; never raises for a missing or misbehaving server."""
        request_id = next(self._ids)
        start = time.perf_counter()
        if self.sensor is not None:
            self.sensor.begin_window()
        wanted = self.pinned or self.chooser.choose(self.estimator.estimate_bps)
        if wanted.all_local or not self.server_up:
            self._since_probe += 1
            if self._since_probe >= self.probe_every:
                self.probe()
                wanted = self.pinned or self.chooser.choose(self.estimator.estimate_bps)
        estimate = self.estimator.estimate_bps
        fallback = not wanted.all_local and not self.server_up
        cut = self.model.all_local_cut if fallback else wanted
        parts = self.model.parts(cut)
        with torch.inference_mode():
            t0 = time.perf_counter()
            crossing = as_tuple(parts.head(x))
            head_s = time.perf_counter() - t0
        sent, transfer_s, server_s, tail_s, batch = 0, 0.0, 0.0, 0.0, 0
        error = "server down" if fallback else None
        output = crossing
        if not cut.all_local:
            try:
                output, sent, transfer_s, server_s, tail_s, batch = self._offload(cut, crossing)
            except _NoReplyError as exc:  # finish this cut's tail here
                error, fallback = str(exc), True
                with torch.inference_mode():
                    output = as_tuple(parts.tail(*crossing))
        energy = None
        if self.sensor is not None:
            energy = self.sensor.end_window().energy_j
        total_s = time.perf_counter() - start
        record = RequestRecord(
            request_id=request_id, cut=cut.cut_id, cut_kind=cut.kind, sent_bytes=sent,
            rate_estimate_bps=estimate, head_s=head_s, transfer_s=transfer_s, server_s=server_s,
            tail_s=tail_s, total_s=total_s, predicted_latency_s=self.model.predicted_latency_s(cut, estimate),
            local_fallback=fallback, batch=batch, fallback_reason=error, energy_j=energy,
        )
        return Inference(output[0] if len(output) == 1 else output, record)

    def _offload(self, cut: Cut, crossing: tuple[torch.Tensor, ...]
                 ) -> tuple[Any, int, float, float, float, int]:
        wire_id = next(self._wire_ids)
        encoded = encode_tensors(list(zip(cut.crossing, crossing, strict=True)), cut.codecs)
        frames = pack({"kind": "infer", "id": wire_id, "model": self.model.model_id, "cut": cut.cut_id,
                       "token": self.token}, encoded)
        sent = encoded.nbytes + len(frames[0])
        try:
            header, payloads, rtt = self._exchange(frames, wire_id)
        except _NoReplyError:
            self.server_up = False
            self._reset()
            raise
        if header.get("kind") != "result":
            self.server_up = False  # it refuses: finish locally, probe again later
            raise _NoReplyError(f"server error: {header.get('error', header.get('kind'))}")
        try:
            output = tuple(decode_tensors(header, payloads))
        except ProtocolError as exc:
            raise _NoReplyError(f"bad reply: {exc}") from None
        server_s = float(header.get("server_s", 0.0))
        self.estimator.observe(sent, rtt, server_s)
        transfer_s = self.estimator.transfer_s(rtt, server_s)
        tail_s = float(header.get("tail_s", 0.0))
        return output, sent, transfer_s, server_s, tail_s, int(header.get("batch", 1))


def reference_error(model: SplitModel, x: torch.Tensor, output: Any) -> float:
    """Largest absolute difference between ``output`` and the unsplit model's output on ``x``."""
    with torch.inference_mode():
        ref = as_tuple(model.module(x))
    got = as_tuple(output)
    return float(np.max([float((a - b).abs().max()) for a, b in zip(got, ref, strict=True)]))
