"""CURVE keys for ``serve``/``run``: key pairs on disk, the server's list of devices, encrypted sockets.

ZeroMQ CURVE (CurveZMQ: Curve25519 key agreement, every message sealed with XSalsa20-Poly1305)
encrypts and authenticates the connection between a device and the server: the server proves it
holds the secret key matching the public key the device was given, the device proves it holds one
of the keys the server lists, and nothing (tensors, headers, the token) crosses the link in clear.

Key files are ZeroMQ's certificate format, written by :func:`zmq.auth.create_certificates` and read by
:func:`zmq.auth.load_certificate`: ``NAME.key`` holds the public key (give it to the other side),
``NAME.key_secret`` the pair (mode 0600; it stays on its machine). A server's list of devices is a
folder of their ``.key`` files, checked by a ZAP handler (:class:`zmq.auth.thread.ThreadAuthenticator`)
during each connection's handshake: an unlisted device gets no connection, so not a single reply.

Plaintext is allowed only on loopback (or ``ipc://``) or when asked for explicitly (``--insecure``):
see :func:`check_plaintext`.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SplitpruneError

__all__ = [
    "PUBLIC_SUFFIX",
    "SECRET_SUFFIX",
    "Authenticator",
    "DeviceCurve",
    "HandshakeWatch",
    "KeyFiles",
    "KeysError",
    "ServerCurve",
    "check_plaintext",
    "create_keypair",
    "is_loopback",
    "load_authorized_keys",
    "load_public_key",
    "load_secret_key",
    "secure_device_socket",
    "secure_server_socket",
]

PUBLIC_SUFFIX = ".key"
SECRET_SUFFIX = ".key_secret"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class KeysError(SplitpruneError):
    """A key file or folder is missing, unreadable or not a CURVE certificate; or plaintext was refused."""


@dataclass(frozen=True)
class KeyFiles:
    """A key pair written by :func:`create_keypair`.

    Attributes:
        name: The pair's name (the file stem).
        public_key: The public key, Z85 text (40 characters).
        public_key_file: ``NAME.key``: give it to the other side.
        secret_key_file: ``NAME.key_secret`` (mode 0600): keep it on this machine.
    """

    name: str
    public_key: str
    public_key_file: Path
    secret_key_file: Path

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return {"name": self.name, "public_key": self.public_key,
                "public_key_file": str(self.public_key_file), "secret_key_file": str(self.secret_key_file)}


def create_keypair(directory: Path, name: str, *, force: bool = False) -> KeyFiles:
    """Write a new CURVE key pair ``DIRECTORY/NAME.key`` and ``DIRECTORY/NAME.key_secret``.

    The files are written by :func:`zmq.auth.create_certificates` into a private (0700) folder made
    next to their destination, the secret one made 0600 and synced, then both renamed into place: a
    reader never sees half a key, and the secret key is never readable by others.

    Raises:
        KeysError: A bad name, an existing pair (without ``force``), or a folder that cannot be written.
    """
    import zmq.auth

    if not _NAME.match(name):
        raise KeysError(f"bad key name {name!r}: use letters, digits, '_', '.' or '-' (e.g. server, jetson1)")
    directory = Path(directory)
    public, secret = directory / f"{name}{PUBLIC_SUFFIX}", directory / f"{name}{SECRET_SUFFIX}"
    if not force and (public.exists() or secret.exists()):
        raise KeysError(f"{public} or {secret} already exists; pass --force to replace the pair (devices "
                        f"and servers holding the old public key will then be refused)")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=directory, prefix=f".{name}.keys."))  # mode 0700
    except OSError as exc:
        raise _unwritable(directory, exc) from None
    try:
        made_public, made_secret = (Path(p) for p in zmq.auth.create_certificates(staging, name))
        for path, mode in ((made_secret, 0o600), (made_public, 0o644)):
            os.chmod(path, mode)
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        os.replace(made_secret, secret)  # the secret first: a public key never exists without its pair
        os.replace(made_public, public)
    except OSError as exc:
        raise _unwritable(directory, exc) from None
    finally:
        for leftover in staging.iterdir():
            leftover.unlink()
        staging.rmdir()
    public_key, _ = zmq.auth.load_certificate(public)
    return KeyFiles(name, public_key.decode("ascii"), public, secret)


def _unwritable(directory: Path, exc: OSError) -> KeysError:
    return KeysError(f"cannot write keys in {directory} ({exc.strerror}); choose a writable folder")


def _load(path: Path, option: str) -> tuple[bytes, bytes | None]:
    import zmq.auth

    path = Path(path)
    if not path.is_file():
        raise KeysError(f"{option} {path} not found; create a key pair with `splitprune keys NAME --out DIR`")
    try:
        public, secret = zmq.auth.load_certificate(path)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise KeysError(f"cannot read {option} {path} ({reason}); check its permissions") from None
    except (ValueError, UnicodeDecodeError):
        raise KeysError(f"{option} {path} is not a CURVE key file; use one `splitprune keys` made") from None
    for key in (public, secret):
        if key is not None and not _valid_z85_key(key):
            raise KeysError(f"{option} {path} holds a malformed key (a CURVE key is 40 Z85 characters); "
                            f"write a new pair with `splitprune keys`")
    return public, secret


def _valid_z85_key(key: bytes) -> bool:
    from zmq.utils import z85

    try:
        return len(key) == 40 and len(z85.decode(key)) == 32
    except (ValueError, KeyError, IndexError):
        return False


def load_secret_key(path: Path, *, option: str = "--curve") -> tuple[bytes, bytes]:
    """The (public, secret) Z85 keys of a ``NAME.key_secret`` file.

    Raises:
        KeysError: Missing, unreadable, not a key file, or a public key file only.
    """
    public, secret = _load(path, option)
    if secret is None:
        raise KeysError(f"{option} {path} holds only a public key; give this machine's {SECRET_SUFFIX} file")
    return public, secret


def load_public_key(path: Path, *, option: str = "--server-key") -> bytes:
    """The Z85 public key of a ``NAME.key`` (or ``NAME.key_secret``) file.

    Raises:
        KeysError: Missing, unreadable or not a key file.
    """
    return _load(path, option)[0]


def load_authorized_keys(directory: Path, *, option: str = "--authorized-keys") -> frozenset[bytes]:
    """The Z85 public keys of every ``*.key`` file in ``directory`` (the devices a server accepts).

    Raises:
        KeysError: Not a folder, no ``.key`` file in it, or one that is not a key file.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise KeysError(f"{option} {directory} is not a folder; put the devices' {PUBLIC_SUFFIX} files in it")
    try:
        files = sorted(directory.glob(f"*{PUBLIC_SUFFIX}"))
    except OSError as exc:
        raise KeysError(f"cannot list {option} {directory} ({exc.strerror}); check its permissions") from None
    if not files:
        raise KeysError(f"{option} {directory} has no {PUBLIC_SUFFIX} file; copy each device's public key "
                        f"there (splitprune keys NAME writes NAME{PUBLIC_SUFFIX})")
    return frozenset(load_public_key(f, option=f"{option} file") for f in files)


@dataclass(frozen=True)
class ServerCurve:
    """What a server needs for CURVE: its own key pair and the public keys of the devices it accepts.

    Attributes:
        public_key: The server's public key (Z85).
        secret_key: The server's secret key (Z85; never printed).
        authorized: Public keys (Z85) of the devices allowed to connect.
    """

    public_key: bytes
    secret_key: bytes = field(repr=False)
    authorized: frozenset[bytes]

    @classmethod
    def from_files(cls, secret_file: Path, authorized_dir: Path) -> ServerCurve:
        """Load ``--curve SERVER.key_secret`` and ``--authorized-keys DIR``.

        Raises:
            KeysError: A file or the folder is missing or not usable.
        """
        public, secret = load_secret_key(secret_file)
        return cls(public, secret, load_authorized_keys(authorized_dir))


@dataclass(frozen=True)
class DeviceCurve:
    """What a device needs for CURVE: its own key pair and the server's public key.

    Attributes:
        public_key: The device's public key (Z85; the server must list it).
        secret_key: The device's secret key (Z85; never printed).
        server_key: The server's public key (Z85): a server without its secret key cannot answer.
    """

    public_key: bytes
    secret_key: bytes = field(repr=False)
    server_key: bytes

    @classmethod
    def from_files(cls, secret_file: Path, server_key_file: Path) -> DeviceCurve:
        """Load ``--curve DEVICE.key_secret`` and ``--server-key SERVER.key``.

        Raises:
            KeysError: A file is missing or not usable.
        """
        public, secret = load_secret_key(secret_file)
        return cls(public, secret, load_public_key(server_key_file))


def secure_server_socket(sock: Any, curve: ServerCurve) -> None:
    """Make ``sock`` (not yet bound) a CURVE server with the server's key pair."""
    sock.curve_secretkey = curve.secret_key
    sock.curve_publickey = curve.public_key
    sock.curve_server = True


def secure_device_socket(sock: Any, curve: DeviceCurve) -> None:
    """Make ``sock`` (not yet connected) a CURVE client of the server whose public key ``curve`` holds."""
    sock.curve_secretkey = curve.secret_key
    sock.curve_publickey = curve.public_key
    sock.curve_serverkey = curve.server_key


class _DeviceList:
    """The ZAP check (a pyzmq credentials provider): is this device's key listed?"""

    def __init__(self, authorized: frozenset[bytes], on_refused: Callable[[bytes], None] | None) -> None:
        self.authorized, self.on_refused = authorized, on_refused

    def callback(self, domain: str, key: bytes) -> bool:
        allowed = key in self.authorized
        if not allowed and self.on_refused is not None:
            self.on_refused(key)
        return allowed


class Authenticator:
    """A running ZAP handler on ``context`` that admits only the devices ``curve`` lists.

    Start it before binding a CURVE socket on the same context (a CURVE socket with no ZAP handler
    would admit any key); :meth:`stop` it before terminating the context.

    Args:
        context: The ZeroMQ context of the server's socket.
        curve: The server's keys and the devices it accepts.
        on_refused: Called (from the handler's thread) with the Z85 key of each refused device.
    """

    def __init__(self, context: Any, curve: ServerCurve, *,
                 on_refused: Callable[[bytes], None] | None = None) -> None:
        from zmq.auth.thread import ThreadAuthenticator

        self._auth = ThreadAuthenticator(context)
        self._auth.start()
        self._auth.configure_curve_callback(domain="*",
                                            credentials_provider=_DeviceList(curve.authorized, on_refused))
        if not self._auth.is_alive():  # without a ZAP handler a CURVE socket would admit any key
            raise KeysError("the CURVE key check (ZAP handler) did not start; the server will not listen")

    def stop(self) -> None:
        """Stop the handler thread (idempotent)."""
        if self._auth.is_alive():
            self._auth.stop()


class HandshakeWatch:
    """Why a device's encrypted connection fails (key refused, wrong server key), from socket monitors.

    libzmq reports a refused handshake only as a monitor event (the socket itself just never
    connects); this turns those events into a one-line reason. The reason outlives the socket (a
    device replaces its socket after a failure) until a handshake succeeds.
    """

    _EVENTS = ("EVENT_HANDSHAKE_SUCCEEDED", "EVENT_HANDSHAKE_FAILED_AUTH", "EVENT_HANDSHAKE_FAILED_PROTOCOL",
               "EVENT_HANDSHAKE_FAILED_NO_DETAIL")

    def __init__(self) -> None:
        self.reason: str | None = None
        self._sock: Any = None
        self._monitor: Any = None

    def attach(self, sock: Any) -> None:
        """Watch ``sock`` (before it connects), instead of the socket watched so far."""
        import zmq

        self.detach()
        mask = 0
        for name in self._EVENTS:
            mask |= getattr(zmq, name)
        self._sock, self._monitor = sock, sock.get_monitor_socket(mask)

    def failure(self) -> str | None:
        """The last handshake failure seen (None if none, or once a handshake succeeded)."""
        import zmq
        from zmq.utils.monitor import recv_monitor_message

        while self._monitor is not None and self._monitor.poll(0):
            event = recv_monitor_message(self._monitor)
            kind, value = event["event"], event["value"]
            if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.reason = None
            elif kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                self.reason = (f"refused: the server does not list this device's key (status {value}); "
                               f"copy its {PUBLIC_SUFFIX} file into the server's --authorized-keys folder")
            elif kind == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
                self.reason = (f"handshake failed (ZMTP error {value:#x}): one side uses CURVE and the other "
                               f"does not; give both --curve keys, or neither on loopback")
            else:
                self.reason = ("handshake failed: check that --server-key is that server's .key file and "
                               "that both sides use --curve (or neither, on loopback)")
        return self.reason

    def detach(self) -> None:
        """Stop watching the current socket (before it closes; idempotent); keep the reason."""
        if self._monitor is not None:
            self.failure()
            self._sock.disable_monitor()
            self._monitor.close(linger=0)
            self._sock = self._monitor = None


def is_loopback(address: str) -> bool:
    """Whether a ZeroMQ address stays on this machine (``ipc://``, ``inproc://``, a loopback host)."""
    if address.startswith(("ipc://", "inproc://")):
        return True
    if not address.startswith("tcp://"):
        return False
    host = address[6:].rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_plaintext(address: str, *, encrypted: bool, insecure: bool, role: str) -> None:
    """Refuse plaintext to or from a non-loopback ``address`` unless ``insecure``.

    Args:
        address: The ZeroMQ address listened on or connected to.
        encrypted: Whether CURVE is configured.
        insecure: The explicit ``--insecure``.
        role: ``serve`` or ``run`` (names the options in the message).

    Raises:
        KeysError: Plaintext on a non-loopback address without ``insecure``.
    """
    if encrypted and insecure:
        raise KeysError("--insecure and --curve contradict each other; drop --insecure to encrypt")
    if encrypted or insecure or is_loopback(address):
        return
    keys = "--curve SERVER.key_secret --authorized-keys DIR" if role == "serve" else \
        "--curve DEVICE.key_secret --server-key SERVER.key"
    raise KeysError(f"{address} is not a loopback address and tensors and token would cross it in clear; "
                    f"pass {keys} (see `splitprune keys`), or --insecure to send plaintext anyway")
