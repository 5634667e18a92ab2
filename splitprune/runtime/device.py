"""The device: runs the head of the current cut, sends the cut tensors, gets the output back.

:meth:`Device.infer` picks the cut for the current uplink estimate (:mod:`.rate`), runs its head, and
either finishes locally (all local) or sends the crossing tensors to the server and waits for the
reply. The wait scales with what was sent: ``timeout_s`` plus ``transfer_margin`` times the time the
bytes take at the current rate estimate, so a large tensor on a slow but working link is not taken for
a dead server (a fixed wait would time out every large request there; a timeout yields no rate
sample, so the estimate would never learn the link is slow and the device would retry the same
too-large cut after every probe). Reaching the server (a connection up to send on) waits ``timeout_s``
only. A request always finishes on the cut it started with. When the server is unreachable, does not
answer in that time or refuses the request, the device computes the tail itself on the head's outputs
(a *local fallback*), drops the socket (so nothing queued is sent later, and a late reply has nowhere
to go) and treats the server as down; every ``probe_every`` requests that run all local (by choice or
because the server is down) it sends a small probe, which both measures the link and tells it the
server is back (a train of probes instead where one probe would fit in the link's burst). Every
request returns exactly one output; its :class:`RequestRecord` says how.
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
        timeout_s: Longest wait for a reply beyond the transfer time, s (also the longest wait for a
            connection to send on).
        probe_every: Requests between probes while running all local.
        probe_bytes: Payload of a probe, bytes.
        smoothing: Weight of a new rate sample (see :class:`~splitprune.runtime.rate.RateEstimator`).
        hysteresis: Widening of the current cut's rate ranges before switching.
        initial_rate_bps: Estimate before the first transfer (None: the link profile's rate), bit/s.
        transfer_margin: The wait allows this many times the bytes' time at the estimate.
        confirm: Requests in a row the estimate must point to another cut before switching.
        train_probes: Probes of ``train_probe_bytes`` sent back to back on connecting, to measure the
            link's burst and rate (0: none).
        train_probe_bytes: Payload of each probe of the train, bytes.
    """

    timeout_s: float = 1.0
    probe_every: int = 10
    probe_bytes: int = 16384
    smoothing: float = 0.5
    hysteresis: float = 0.15
    initial_rate_bps: float | None = None
    transfer_margin: float = 4.0
    confirm: int = 2
    train_probes: int = 48
    train_probe_bytes: int = 4096

    def __post_init__(self) -> None:
        if not (self.timeout_s > 0 and self.probe_every >= 1 and self.probe_bytes >= 0
                and 0 < self.smoothing <= 1 and self.hysteresis >= 0 and self.transfer_margin >= 0
                and self.confirm >= 1 and self.train_probes >= 0 and self.train_probe_bytes >= 0):
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
        self.chooser = CutChooser(model, options.hysteresis, options.confirm)
        self.pinned = model.cut(pin_cut) if pin_cut is not None else None
        self.server_up = False
        self._ids = itertools.count()
        self._wire_ids = itertools.count()
        self._since_probe = 0
        self._last_transfer_end: float | None = None  # when the link last went idle (None: unknown)
        self._context: Any = None
        self._socket: Any = None
        zeros = torch.zeros(options.probe_bytes, dtype=torch.uint8)
        self._probe_payload = encode_tensors([("probe", zeros)], ["fp32"])
        small = torch.zeros(options.train_probe_bytes, dtype=torch.uint8)
        self._train_payload = encode_tensors([("probe", small)], ["fp32"])

    # -- connection ------------------------------------------------------------------------------
    def connect(self, *, pings: int = 3) -> bool:
        """Open the socket, ping the server (base round trip), measure the link with a train of probes.

        Return whether the server answered.
        """
        import zmq

        if self._context is None:
            self._context = zmq.Context()
        self._reset()
        for _ in range(pings):
            if not self.probe(payload=False):
                break
        if pings and self.server_up:
            self.measure_link()
        return self.server_up

    def measure_link(self) -> bool:
        """Send ``train_probes`` probes back to back and learn the link's burst and rate from them.

        A token bucket passes its burst at once and the rest at its rate: when each probe reached the
        server shows both (:meth:`~splitprune.runtime.rate.RateEstimator.observe_train`). The server's
        arrival times are used, not the replies' (on a loopback both directions share one queue, so the
        replies would wait behind the train). Where the train takes longer than the wait (a link slower
        than the estimate), the part that arrived is used. Return whether it measured the rate (False:
        no server, under four probes answered in time, or the whole train fitted in the burst).
        """
        import zmq

        self._since_probe = 0
        count, payload = self.options.train_probes, self._train_payload
        if count < 2 or self._socket is None or not self.server_up:
            return False
        messages = []
        for _ in range(count):
            wire_id = next(self._wire_ids)
            frames = pack({"kind": "probe", "id": wire_id, "token": self.token}, payload)
            messages.append((wire_id, frames, len(frames[0]) + payload.nbytes))
        start = time.perf_counter()
        deadline = start + self.reply_wait_s(sum(size for _, _, size in messages))
        try:
            for _, frames, _ in messages:
                self._socket.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return False
        arrivals: dict[int, Any] = {}  # when each probe reached the server, by the server's clock
        while len(arrivals) < count:
            left = deadline - time.perf_counter()
            if left <= 0 or not self._socket.poll(left * 1e3, zmq.POLLIN):
                self._reset()  # late pongs must not be taken for the replies to later messages
                self._last_transfer_end = None
                break  # a link slower than the estimate: the part of the train that arrived still tells
            reply = self._socket.recv_multipart(copy=False)
            try:
                header = parse_header(reply[0].buffer)
            except ProtocolError:
                continue
            if header.get("kind") == "pong" and header.get("id") in {w for w, _, _ in messages}:
                arrivals[header["id"]] = header.get("received_s")
        else:
            self._last_transfer_end = time.perf_counter()
        arrived = [w for w, _, _ in messages]
        arrived = arrived[: next((i for i, w in enumerate(arrived) if w not in arrivals), len(arrived))]
        times = [arrivals[w] for w in arrived]
        if len(times) < 4 or not all(isinstance(t, float) for t in times):
            return False  # too little of it arrived, or a server that does not say when probes arrived
        return self.estimator.observe_train([size for _, _, size in messages[: len(times)]], times)

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

    def reply_wait_s(self, sent_bytes: int) -> float:
        """How long to wait for the reply to ``sent_bytes``: the timeout plus their time at the estimate."""
        return self.timeout_s + self.options.transfer_margin * self.estimator.expected_transfer_s(sent_bytes)

    def _exchange(self, frames: list[Any], wire_id: int, sent_bytes: int
                  ) -> tuple[dict[str, Any], list[Any], float]:
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
        deadline = start + self.reply_wait_s(sent_bytes)  # a slow link is not a dead server
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
        sent = len(frames[0]) + (encoded.nbytes if encoded is not None else 0)
        try:
            header, _, rtt = self._exchange(frames, wire_id, sent)
        except _NoReplyError:
            self.server_up = False
            self._last_transfer_end = None
            self._reset()
            return False
        if header.get("kind") != "pong":
            self.server_up = False
            return False
        server_s = float(header.get("server_s", 0.0))
        if encoded is None:
            self.estimator.observe_rtt(rtt - server_s)
        else:
            self.estimator.observe(sent, rtt, server_s, idle_s=self._idle_s(rtt))
        self.server_up = True
        return True

    def _idle_s(self, rtt: float) -> float | None:
        """Time the link was idle before the exchange that just ended after ``rtt``; mark it busy now."""
        now = time.perf_counter()
        idle = None if self._last_transfer_end is None else max(now - rtt - self._last_transfer_end, 0.0)
        self._last_transfer_end = now
        return idle

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
                if self.server_up and 0 < self.probe_bytes <= self.estimator.burst_bytes:
                    self.measure_link()  # a probe that fits in the burst would say nothing of the rate
                else:
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
            header, payloads, rtt = self._exchange(frames, wire_id, sent)
        except _NoReplyError:
            self.server_up = False
            self._last_transfer_end = None  # bytes may still be on the link: idle time unknown
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
        self.estimator.observe(sent, rtt, server_s, idle_s=self._idle_s(rtt))
        transfer_s = self.estimator.transfer_s(rtt, server_s)
        tail_s = float(header.get("tail_s", 0.0))
        return output, sent, transfer_s, server_s, tail_s, int(header.get("batch", 1))


def reference_error(model: SplitModel, x: torch.Tensor, output: Any) -> float:
    """Largest absolute difference between ``output`` and the unsplit model's output on ``x``."""
    with torch.inference_mode():
        ref = as_tuple(model.module(x))
    got = as_tuple(output)
    return float(np.max([float((a - b).abs().max()) for a, b in zip(got, ref, strict=True)]))
