"""The server: loads the tail of every cut the policy can choose and answers devices over ZeroMQ.

One ROUTER socket serves any number of DEALER devices. At start-up :class:`Server` exports each cut's
head and tail with :func:`splitprune.export.export_split` (as ``split --export`` does; kept in a cache
folder per model id and cut, so a restart loads instead of exporting), loads the tail program with
``torch.export.load`` (a file it wrote itself) and checks ``tail(head(x)) == model(x)`` on the example
input. A message that breaks a rule (too big, bad token, not the protocol, unknown model or cut, wrong
shape) gets an ``error`` reply and the server carries on. Requests for the same cut that are queued
together (or arrive within ``batch_timeout_s``) run as one batch of up to ``max_batch`` (the tail is
then exported with a dynamic batch dimension); every reply says its batch size and the time the server
held it.
"""

from __future__ import annotations

import hmac
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils._pytree import tree_leaves

from ..errors import SplitpruneError
from .cuts import Cut, SplitModel
from .keys import Authenticator, ServerCurve, check_plaintext, is_loopback, secure_server_socket
from .protocol import (
    MAX_HEADER_BYTES,
    ProtocolError,
    decode_tensors,
    encode_tensors,
    pack,
    parse_header,
)

__all__ = ["Server", "ServerStats", "ServerStartupError", "as_tuple", "check_listen_address"]

class ServerStartupError(SplitpruneError):
    """The server cannot start: bad address, port in use, or a tail that does not match the model."""


def check_listen_address(address: str, *, allow_remote: bool, encrypted: bool = False,
                         insecure: bool = False) -> None:
    """Refuse a non-loopback address unless ``allow_remote``, and plaintext there unless ``insecure``.

    Accepts ``tcp://`` and ``ipc://`` addresses.

    Raises:
        ServerStartupError: A bad address, or a non-loopback one without ``allow_remote``.
        KeysError: Plaintext on a non-loopback address (see :func:`~.keys.check_plaintext`).
    """
    if address.startswith("ipc://"):
        return
    if not address.startswith("tcp://") or ":" not in address[6:]:
        raise ServerStartupError(f"bad address {address!r}: use tcp://HOST:PORT, e.g. tcp://127.0.0.1:5555")
    host = address[6:].rsplit(":", 1)[0]
    if not is_loopback(address) and not allow_remote:
        raise ServerStartupError(
            f"{address} is not a loopback address; pass --allow-remote to listen on {host}"
        )
    check_plaintext(address, encrypted=encrypted, insecure=insecure, role="serve")


def as_tuple(value: Any) -> tuple[torch.Tensor, ...]:
    """A model output as a tuple of tensors: nested outputs (YOLO's tensor and dict) in pytree leaf order."""
    leaves = tree_leaves(value)
    if leaves and all(isinstance(v, torch.Tensor) for v in leaves):
        return tuple(leaves)
    raise SplitpruneError(f"the model returns {type(value).__name__}; the runtime needs tensors")


def _timed(program: Any, args: tuple[torch.Tensor, ...]) -> float:
    start = time.perf_counter()
    program(*args)
    return time.perf_counter() - start


@dataclass
class ServerStats:
    """What the server did.

    Attributes:
        requests: Inference requests answered with a result.
        probes: Probes answered.
        errors: Error replies, by reason (``malformed``, ``oversized``, ``token``, ``model``, ``cut``,
            ``tensor``, ``internal``).
        by_cut: Results per cut id.
        batches: Tail runs with more than one request.
        batched_requests: Requests served in those runs.
        batching_saved_s: Tail time saved by batching: each batched request's single-request tail
            time (measured at start-up) less the batch's time, summed, s.
        tail_s: Total tail compute time, s.
        refused_keys: CURVE handshakes refused because the device's key is not listed (such a
            device gets no connection, so no reply either).
    """

    requests: int = 0
    probes: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    by_cut: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    batched_requests: int = 0
    batching_saved_s: float = 0.0
    tail_s: float = 0.0
    refused_keys: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return asdict(self)


@dataclass
class _Tail:
    cut: Cut
    program: Any
    expected: tuple[tuple[tuple[int, ...], torch.dtype], ...]
    batched: Any = None
    single_s: float = 0.0


@dataclass
class _Request:
    identity: bytes
    header: dict[str, Any]
    tensors: list[torch.Tensor]
    received: float


class Server:
    """Serves the tails of a :class:`~splitprune.runtime.cuts.SplitModel`.

    Args:
        model: The prepared model (policy and cuts).
        listen: ZeroMQ address to bind (loopback unless ``allow_remote``).
        token: Shared secret every request must carry (None: none needed).
        max_message_bytes: Largest accepted request (header and payloads), bytes.
        max_batch: Most requests of one cut run as one batch.
        batch_timeout_s: How long a request waits for others of its cut, s (0: batch only what is
            already queued, so a lone request never waits).
        cache_dir: Where exported programs are kept (default: a temporary folder).
        allow_remote: Allow binding a non-loopback address.
        curve: The server's CURVE keys and the devices it accepts (None: plaintext, which a
            non-loopback address allows only with ``insecure``).
        insecure: Allow plaintext on a non-loopback address.
    """

    def __init__(self, model: SplitModel, *, listen: str = "tcp://127.0.0.1:5555", token: str | None = None,
                 max_message_bytes: int = 64 * 2**20, max_batch: int = 1, batch_timeout_s: float = 0.0,
                 cache_dir: Path | None = None, allow_remote: bool = False, curve: ServerCurve | None = None,
                 insecure: bool = False) -> None:
        check_listen_address(listen, allow_remote=allow_remote, encrypted=curve is not None,
                             insecure=insecure)
        self.curve = curve
        self._auth: Authenticator | None = None
        if max_batch < 1 or max_message_bytes < 1:
            raise ServerStartupError("--max-batch and --max-message-bytes must be at least 1")
        self.model, self.listen, self.token = model, listen, token
        self.max_message_bytes, self.max_batch = max_message_bytes, max_batch
        self.batch_timeout_s = batch_timeout_s
        self._tmp = tempfile.TemporaryDirectory(prefix="splitprune-serve-") if cache_dir is None else None
        self.cache_dir = Path(self._tmp.name if self._tmp else cache_dir)  # type: ignore[arg-type]
        self.stats = ServerStats()
        self.tails: dict[str, _Tail] = {}
        self.check_errors: dict[str, float] = {}
        self.batch_refused: dict[str, str] = {}
        self._socket: Any = None
        self._context: Any = None
        self.bound: str | None = None

    # -- start-up --------------------------------------------------------------------------------
    def load(self) -> dict[str, float]:
        """Export (or load from the cache) every cut's tail and check it; return max errors by cut.

        Raises:
            ServerStartupError: A tail does not reproduce the model.
        """
        from ..export import export_split

        m = self.model
        with torch.inference_mode():
            reference = as_tuple(m.module(m.example))
        for cut in m.cuts:
            if cut.all_local:
                continue
            folder = self.cache_dir / m.model_id / cut.cut_id
            if not (folder / "manifest.json").is_file():
                export_split(m.graph.gm, cut.device_nodes, (m.example,), folder, model=m.spec)
            program = torch.export.load(folder / "tail.pt2").module()
            with torch.inference_mode():
                crossing = as_tuple(m.parts(cut).head(m.example))
                out = as_tuple(program(*crossing))
                single_s = min(_timed(program, crossing) for _ in range(3))
            error = max(float((a - b).abs().max()) for a, b in zip(out, reference, strict=True))
            scale = max(float(r.abs().max()) for r in reference)
            if not error <= 1e-4 * max(scale, 1.0):
                raise ServerStartupError(
                    f"the tail of cut {cut.cut_id} differs from the model by {error:.3g}; re-export it "
                    f"(delete {folder})"
                )
            self.check_errors[cut.cut_id] = error
            expected = tuple((tuple(t.shape), t.dtype) for t in crossing)
            tail = _Tail(cut, program, expected, single_s=single_s)
            if self.max_batch > 1:
                tail.batched = self._batched_tail(cut, crossing)
            self.tails[cut.cut_id] = tail
        return dict(self.check_errors)

    def _batched_tail(self, cut: Cut, crossing: tuple[torch.Tensor, ...]) -> Any:
        """The tail exported with a dynamic batch dimension, or None where torch.export refuses."""
        if any(t.dim() == 0 or t.shape[0] != 1 for t in crossing):
            return None
        # Batches of one run the static program; export sees two rows, so batch is not specialised to 1.
        batch = torch.export.Dim("batch", min=2, max=max(self.max_batch, 2))
        pairs = tuple(torch.cat([t, t]) for t in crossing)
        try:
            program = torch.export.export(self.model.parts(cut).tail, pairs,
                                          dynamic_shapes=tuple({0: batch} for _ in crossing))
        except Exception as exc:  # torch.export raises many types; serve this cut unbatched
            text = str(exc).strip()
            self.batch_refused[cut.cut_id] = text.splitlines()[0][:200] if text else type(exc).__name__
            return None
        return program.module()

    def bind(self) -> str:
        """Bind the socket; return the address bound (a ``tcp://...:0`` address gets a free port)."""
        import zmq

        self._context = zmq.Context()
        sock = self._context.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        if self.curve is not None:  # the ZAP handler runs before the socket can accept anyone
            self._auth = Authenticator(self._context, self.curve, on_refused=self._refused)
            secure_server_socket(sock, self.curve)
        # A frame 4x over the limit drops the connection unread (memory); smaller ones get an error reply.
        sock.setsockopt(zmq.MAXMSGSIZE, 4 * self.max_message_bytes + MAX_HEADER_BYTES)
        try:
            if self.listen.endswith(":0"):
                port = sock.bind_to_random_port(self.listen[:-2])
                self.bound = f"{self.listen[:-2]}:{port}"
            else:
                sock.bind(self.listen)
                self.bound = self.listen
        except zmq.ZMQError as exc:
            sock.close()
            self.close()
            raise ServerStartupError(f"cannot listen on {self.listen}: {exc}; choose another port") from None
        self._socket = sock
        return self.bound

    # -- serving ---------------------------------------------------------------------------------
    def serve(self, stop: threading.Event | None = None) -> None:
        """Answer requests until ``stop`` is set (or KeyboardInterrupt); then close the socket."""
        import zmq

        if self._socket is None:
            self.bind()
        stop = stop or threading.Event()
        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        try:
            while not stop.is_set():
                if not poller.poll(50):
                    continue
                pending: list[_Request] = []
                self._receive(pending)
                deadline = time.perf_counter() + self.batch_timeout_s
                while self.max_batch > 1 and len(pending) < self.max_batch:  # what is queued, or comes soon
                    left_ms = (deadline - time.perf_counter()) * 1e3
                    if not poller.poll(max(0, round(left_ms))):
                        break
                    self._receive(pending)
                self._run(pending)
        finally:
            self.close()

    def close(self) -> None:
        """Close the socket and the context (idempotent)."""
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if self._context is not None:
            self._context.term()
            self._context = None

    def _refused(self, key: bytes) -> None:  # the ZAP thread: one writer, so += is safe here
        self.stats.refused_keys += 1

    def _reply(self, identity: bytes, header: dict[str, Any], tensors: Any = None) -> None:
        self._socket.send_multipart([identity, *pack(header, tensors)], copy=False)

    def _error(self, identity: bytes, request_id: Any, reason: str, message: str) -> None:
        self.stats.errors[reason] = self.stats.errors.get(reason, 0) + 1
        self._reply(identity, {"kind": "error", "id": request_id, "reason": reason, "error": message})

    def _receive(self, pending: list[_Request]) -> None:
        frames = self._socket.recv_multipart(copy=False)
        received = time.perf_counter()
        identity, body = frames[0].bytes, frames[1:]
        if not body:
            return
        try:
            self._admit(identity, body, received, pending)
        except Exception as exc:  # a bug met by one message must not stop the server
            self._error(identity, None, "internal", f"{type(exc).__name__}: {exc}"[:300])

    def _admit(self, identity: bytes, body: list[Any], received: float, pending: list[_Request]) -> None:
        """Check one message; answer probes and errors at once, queue inference requests."""
        size = sum(len(f.buffer) for f in body)
        if size > self.max_message_bytes:
            self._error(identity, None, "oversized",
                        f"message of {size} bytes exceeds the server's limit of {self.max_message_bytes}")
            return
        try:
            header = parse_header(body[0].buffer)
        except ProtocolError as exc:
            self._error(identity, None, "malformed", str(exc))
            return
        request_id = header.get("id")
        if self.token is not None and not hmac.compare_digest(str(header.get("token", "")), self.token):
            self._error(identity, request_id, "token", "bad or missing token; give the server's --token-file")
            return
        if header["kind"] == "probe":
            self.stats.probes += 1
            self._reply(identity, {"kind": "pong", "id": request_id,  # received_s: arrival spacing of a train
                                   "server_s": time.perf_counter() - received, "received_s": received,
                                   "model": self.model.model_id})
            return
        if header["kind"] != "infer":
            self._error(identity, request_id, "malformed",
                        f"a server takes infer or probe, not {header['kind']}")
            return
        if header.get("model") != self.model.model_id:
            self._error(identity, request_id, "model",
                        f"model {header.get('model')!r} is not the served {self.model.model_id} "
                        f"({self.model.spec}); use the same model, seed, input shape and split options")
            return
        tail = self.tails.get(str(header.get("cut")))
        if tail is None:
            self._error(identity, request_id, "cut", f"unknown cut {header.get('cut')!r}; the server serves "
                        f"{', '.join(sorted(self.tails)) or 'none'}")
            return
        try:
            tensors = decode_tensors(header, body[1:])
            tensors = self._conform(tail, tensors)
        except ProtocolError as exc:
            self._error(identity, request_id, "tensor", str(exc))
            return
        pending.append(_Request(identity, header, tensors, received))

    @staticmethod
    def _conform(tail: _Tail, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(tensors) != len(tail.expected):
            raise ProtocolError(
                f"cut {tail.cut.cut_id} takes {len(tail.expected)} tensors, got {len(tensors)}")
        out = []
        for name, t, (shape, dtype) in zip(tail.cut.crossing, tensors, tail.expected, strict=True):
            if tuple(t.shape) != shape:
                raise ProtocolError(f"tensor {name!r} has shape {list(t.shape)}, cut needs {list(shape)}")
            if t.is_floating_point() != dtype.is_floating_point:
                raise ProtocolError(f"tensor {name!r} is {t.dtype}, cut needs {dtype}")
            out.append(t.to(dtype))
        return out

    def _run(self, pending: list[_Request]) -> None:
        groups: dict[str, list[_Request]] = {}
        for request in pending:
            groups.setdefault(request.header["cut"], []).append(request)
        for cut_id, requests in groups.items():
            tail = self.tails[cut_id]
            if len(requests) > 1 and tail.batched is not None:
                self._answer(tail, requests, lambda t=tail, rs=requests: self._batch(t, rs))
            else:
                for r in requests:
                    self._answer(tail, [r], lambda t=tail, r=r: [as_tuple(t.program(*r.tensors))])

    @staticmethod
    def _batch(tail: _Tail, requests: list[_Request]) -> list[tuple[torch.Tensor, ...]]:
        stacked = [torch.cat(ts) for ts in zip(*(r.tensors for r in requests), strict=True)]
        out = as_tuple(tail.batched(*stacked))
        return [tuple(o[i : i + 1] for o in out) for i in range(len(requests))]

    def _answer(self, tail: _Tail, requests: list[_Request], compute: Any) -> None:
        """Run ``compute`` (the tail on these requests) and reply to each; a failure is an error reply."""
        start = time.perf_counter()
        try:
            with torch.inference_mode():
                results = compute()
        except Exception as exc:  # a tail that fails on some input must not stop the server
            for r in requests:
                self._error(r.identity, r.header.get("id"), "internal",
                            f"the tail failed: {type(exc).__name__}: {exc}"[:300])
            return
        tail_s = time.perf_counter() - start
        self.stats.tail_s += tail_s
        batch = len(requests)
        if batch > 1:
            self.stats.batches += 1
            self.stats.batched_requests += batch
            self.stats.batching_saved_s += tail.single_s * batch - tail_s
        cut_id = tail.cut.cut_id
        for request, outputs in zip(requests, results, strict=True):
            named = [(f"out{i}", o) for i, o in enumerate(outputs)]
            encoded = encode_tensors(named, ["fp32"] * len(named))
            self.stats.requests += 1
            self.stats.by_cut[cut_id] = self.stats.by_cut.get(cut_id, 0) + 1
            reply = {"kind": "result", "id": request.header.get("id"), "batch": batch, "tail_s": tail_s,
                     "server_s": time.perf_counter() - request.received}
            self._reply(request.identity, reply, encoded)
