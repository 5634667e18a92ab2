"""CURVE keys: files on disk, one-line errors, and a server that admits only the devices it lists."""

import stat
import threading

import pytest
import torch
import zmq.auth

from splitprune.runtime import Device, DeviceOptions, Server
from splitprune.runtime.keys import (
    DeviceCurve,
    KeysError,
    ServerCurve,
    check_plaintext,
    create_keypair,
    is_loopback,
    load_authorized_keys,
    load_public_key,
    load_secret_key,
)

pytestmark = pytest.mark.skipif(not zmq.has("curve"), reason="this libzmq has no CURVE")


def test_a_key_pair_is_zeromq_certificates_with_a_private_secret(tmp_path):
    made = create_keypair(tmp_path / "keys", "jetson1")
    assert made.public_key_file == tmp_path / "keys" / "jetson1.key"
    assert made.secret_key_file == tmp_path / "keys" / "jetson1.key_secret"
    assert stat.S_IMODE(made.secret_key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(made.public_key_file.stat().st_mode) == 0o644
    public, secret = zmq.auth.load_certificate(made.secret_key_file)  # the library reads what we wrote
    assert public.decode() == made.public_key and secret is not None
    assert zmq.auth.load_certificate(made.public_key_file) == (public, None)
    assert zmq.curve_public(secret) == public  # the secret key is the public key's pair
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == ["jetson1.key", "jetson1.key_secret"]


def test_the_secret_key_is_private_whatever_the_umask(tmp_path):
    import os

    previous = os.umask(0)  # a umask that would leave new files world-readable
    try:
        made = create_keypair(tmp_path, "dev")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(made.secret_key_file.stat().st_mode) == 0o600


def test_an_existing_pair_is_replaced_only_with_force(tmp_path):
    first = create_keypair(tmp_path, "server")
    with pytest.raises(KeysError, match="--force"):
        create_keypair(tmp_path, "server")
    assert load_public_key(first.public_key_file).decode() == first.public_key  # untouched
    second = create_keypair(tmp_path, "server", force=True)
    assert second.public_key != first.public_key
    assert load_secret_key(second.secret_key_file)[0].decode() == second.public_key
    with pytest.raises(KeysError, match="bad key name"):
        create_keypair(tmp_path, "../evil")


def test_unusable_key_files_are_one_line_errors(tmp_path):
    made = create_keypair(tmp_path / "k", "dev")
    garbage = tmp_path / "garbage.key_secret"
    garbage.write_text("not a certificate\n")
    truncated = tmp_path / "short.key"
    truncated.write_text('curve\n    public-key = "abc"\n')
    cases = [
        (lambda: load_secret_key(tmp_path / "missing.key_secret"), "not found; create a key pair"),
        (lambda: load_secret_key(made.public_key_file), "holds only a public key"),
        (lambda: load_secret_key(garbage), "is not a CURVE key file"),
        (lambda: load_public_key(truncated), "malformed key"),
        (lambda: load_authorized_keys(tmp_path / "nowhere"), "is not a folder"),
        (lambda: load_authorized_keys(tmp_path / "empty"), "has no .key file"),
    ]
    (tmp_path / "empty").mkdir()
    for load, message in cases:
        with pytest.raises(KeysError, match=message) as info:
            load()
        assert "\n" not in str(info.value)


def test_the_server_lists_every_public_key_in_its_folder(tmp_path):
    devices = [create_keypair(tmp_path / "k", f"dev{i}") for i in range(3)]
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    for made in devices[:2]:
        (allowed / made.public_key_file.name).write_bytes(made.public_key_file.read_bytes())
    keys = load_authorized_keys(allowed)
    assert keys == {d.public_key.encode() for d in devices[:2]}


@pytest.mark.parametrize(("address", "loopback"), [
    ("tcp://127.0.0.1:5555", True), ("tcp://127.0.0.53:1", True), ("tcp://localhost:5555", True),
    ("tcp://[::1]:5555", True), ("ipc:///tmp/sp", True), ("tcp://0.0.0.0:5555", False),
    ("tcp://10.0.0.7:5555", False), ("tcp://server.lan:5555", False), ("tcp://*:5555", False),
])
def test_only_loopback_addresses_may_carry_plaintext(address, loopback):
    assert is_loopback(address) == loopback
    check_plaintext(address, encrypted=True, insecure=False, role="run")
    check_plaintext(address, encrypted=False, insecure=True, role="serve")
    if loopback:
        check_plaintext(address, encrypted=False, insecure=False, role="run")
    else:
        with pytest.raises(KeysError, match="--insecure"):
            check_plaintext(address, encrypted=False, insecure=False, role="run")


def test_plaintext_to_a_remote_address_is_refused_by_the_library_too(tiny_model):
    with pytest.raises(KeysError, match="--server-key SERVER.key"):
        Device(tiny_model, "tcp://192.0.2.1:5555")
    with pytest.raises(KeysError, match="--authorized-keys DIR"):
        Server(tiny_model, listen="tcp://0.0.0.0:5555", allow_remote=True)
    Device(tiny_model, "tcp://192.0.2.1:5555", insecure=True).close()


@pytest.fixture(scope="module")
def curve_server(tiny_model, tmp_path_factory):
    """A CURVE server on a free loopback port that lists one device key; the keys of three parties."""
    root = tmp_path_factory.mktemp("curve")
    server_keys, device_keys, stranger_keys = (create_keypair(root / "keys", n)
                                                for n in ("server", "jetson1", "stranger"))
    allowed = root / "allowed"
    allowed.mkdir()
    (allowed / "jetson1.key").write_bytes(device_keys.public_key_file.read_bytes())
    server = Server(tiny_model, listen="tcp://127.0.0.1:0", token="s3cret", cache_dir=root / "tails",
                    curve=ServerCurve.from_files(server_keys.secret_key_file, allowed))
    server.load()
    server.bind()
    stop = threading.Event()
    thread = threading.Thread(target=server.serve, args=(stop,), daemon=True)
    thread.start()
    yield server, {"server": server_keys, "device": device_keys, "stranger": stranger_keys}
    stop.set()
    thread.join(10)


def _device(model, server, secret, server_public, timeout_s=10.0):
    curve = DeviceCurve.from_files(secret.secret_key_file, server_public.public_key_file)
    return Device(model, server.bound, token="s3cret", curve=curve,
                  options=DeviceOptions(timeout_s=timeout_s, probe_every=1))


def test_a_listed_device_is_served_over_curve(tiny_model, curve_server):
    server, keys = curve_server
    served_before = server.stats.requests
    with _device(tiny_model, server, keys["device"], keys["server"]) as device:
        assert device.server_up
        x = torch.randn(tuple(tiny_model.example.shape), generator=torch.Generator().manual_seed(3))
        inference = device.infer(x)
        assert device.handshake_failure() is None
    assert not inference.record.local_fallback and inference.record.sent_bytes > 0
    with torch.no_grad():
        assert float((inference.output - tiny_model.module(x)).abs().max()) < 0.05  # uint8 input wire
    assert server.stats.requests == served_before + 1


@pytest.mark.parametrize(("who", "trusts", "reason"), [
    ("stranger", "server", "refused: the server does not list this device's key"),
    ("device", "stranger", "handshake failed"),  # a wrong server key: nobody can answer
])
def test_an_unlisted_device_or_a_wrong_server_key_gets_nothing_and_falls_back(tiny_model, curve_server, who,
                                                                                trusts, reason):
    server, keys = curve_server
    served_before, refused_before = server.stats.requests, server.stats.refused_keys
    errors_before = dict(server.stats.errors)
    with _device(tiny_model, server, keys[who], keys[trusts], timeout_s=0.5) as device:
        assert not device.server_up
        records = [device.infer(tiny_model.example).record for _ in range(2)]
        assert reason in (device.handshake_failure() or "")
    assert all(r.local_fallback and r.sent_bytes == 0 for r in records)  # every request still answered
    assert server.stats.requests == served_before and server.stats.errors == errors_before  # not one reply
    if who == "stranger":
        assert server.stats.refused_keys > refused_before


def test_a_plaintext_device_gets_nothing_from_a_curve_server(tiny_model, curve_server):
    server, _ = curve_server
    served_before = server.stats.requests
    with Device(tiny_model, server.bound, token="s3cret", options=DeviceOptions(timeout_s=0.5)) as device:
        assert not device.server_up
        assert device.infer(tiny_model.example).record.local_fallback
        assert "handshake failed" in (device.handshake_failure() or "")
    assert server.stats.requests == served_before
