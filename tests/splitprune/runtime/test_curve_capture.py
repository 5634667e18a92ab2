"""CURVE end to end, as users run it: ``splitprune keys``, ``serve --curve``, ``run --curve``, and a wiretap.

Inside ``unshare -rn`` (a private network namespace, where we are root) a raw AF_PACKET socket records
every frame on lo while the CLI serves a tiny model. With CURVE the listed device is served and the
capture holds none of its input tensors' bytes, nor the token, nor a protocol header; a device whose
key is not listed gets no reply and finishes every request locally. As a control, the same capture of
a plaintext run does hold them all (so this test can fail).
"""

import json
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import zmq

DRIVER = Path(__file__).parent / "capture_driver.py"
TINY = f"{Path(__file__).parent / 'tiny_net.py'}:build"
SHARED = ["--board", "tx2", "--link", "wifi", "--input-shape", "1,3,32,32", "--input-wire", "fp32"]


def _capture_unavailable():
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare or ip not found (apt-get install util-linux iproute2)"
    probe = "import socket; s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 768); s.bind(('lo', 0))"
    trial = subprocess.run(["unshare", "-rn", sys.executable, "-c", probe], capture_output=True, text=True)
    if trial.returncode != 0:
        return f"cannot open a raw socket in a private namespace: {trial.stderr.strip()[-200:]}"
    return None


def _windows(blob: bytes, size: int = 32, count: int = 24) -> list[bytes]:
    """``count`` slices of ``blob`` spread over it (a frame boundary can split one, not all)."""
    step = max((len(blob) - size) // count, 1)
    return [blob[i : i + size] for i in range(0, len(blob) - size, step)][:count]


@pytest.mark.slow
@pytest.mark.skipif(not zmq.has("curve"), reason="this libzmq has no CURVE")
def test_curve_serves_listed_devices_only_and_nothing_crosses_in_clear(tmp_path):
    reason = _capture_unavailable()
    if reason:
        pytest.skip(reason)
    for name in ("server", "jetson1", "stranger"):  # the console users run
        made = subprocess.run([sys.executable, "-m", "splitprune", "keys", name, "--out",
                               str(tmp_path / "keys"), "--json"], capture_output=True, text=True, timeout=120)
        assert made.returncode == 0, made.stderr
        assert json.loads(made.stdout)["public_key_file"] == str(tmp_path / "keys" / f"{name}.key")
    (tmp_path / "allowed").mkdir()
    shutil.copy(tmp_path / "keys" / "jetson1.key", tmp_path / "allowed")
    token = f"tok-{secrets.token_hex(16)}"
    (tmp_path / "token").write_text(token + "\n")
    (tmp_path / "inputs").mkdir()
    generator = torch.Generator().manual_seed(24)
    xs = [torch.randn(1, 3, 32, 32, generator=generator) for _ in range(4)]
    for i, x in enumerate(xs):
        torch.save(x, tmp_path / "inputs" / f"{i}.pt")

    done = subprocess.run(["unshare", "-rn", sys.executable, str(DRIVER), str(tmp_path), TINY, *SHARED],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())

    for mode in ("curve", "plain"):  # the listed device is served in both
        run = result[mode]["run"]
        assert run["code"] == 0, run["stderr"][-2000:]
        doc = json.loads(run["stdout"])
        assert (doc["completed"], doc["local_fallbacks"]) == (4, 0)
        rows = [json.loads(line) for line in (tmp_path / f"{mode}.jsonl").read_text().splitlines()]
        assert {r["cut_kind"] for r in rows} == {"full_offload"}  # so the input itself crossed
        served = json.loads(result[mode]["serve"]["stdout"])
        assert served["requests"] == 4
        assert served["encryption"] == doc["encryption"] == {"curve": "curve", "plain": "plaintext"}[mode]
    assert "CURVE, 1 device key" in result["curve"]["serve"]["stderr"]

    stranger = result["curve"]["stranger"]  # an unlisted key: no reply at all, every request local
    assert stranger["code"] == 0, stranger["stderr"][-2000:]
    doc = json.loads(stranger["stdout"])
    assert (doc["completed"], doc["lost"], doc["local_fallbacks"]) == (3, 0, 3)
    assert "refused: the server does not list this device's key" in stranger["stderr"]
    assert json.loads(result["curve"]["serve"]["stdout"])["refused_keys"] >= 1

    secrets_in_clear = {"token": [token.encode()], "header": [b'"kind":"infer"', b'"kind":"result"']}
    secrets_in_clear["tensors"] = [w for x in xs for w in _windows(x.numpy().astype("<f4").tobytes())]
    curve, plain = ((tmp_path / f"{m}.pcapraw").read_bytes() for m in ("curve", "plain"))
    sent = sum(x.numel() * 4 for x in xs)
    assert len(curve) > sent and len(plain) > sent  # the capture saw the traffic
    for what, needles in secrets_in_clear.items():
        assert not [n for n in needles if n in curve], f"{what} crossed lo in clear with CURVE"
        found = sum(n in plain for n in needles)
        assert found >= 0.9 * len(needles), f"control: only {found}/{len(needles)} {what} seen in plaintext"
