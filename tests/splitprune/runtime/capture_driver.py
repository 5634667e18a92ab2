"""Run inside ``unshare -rn``: capture loopback while ``serve``/``run`` talk, with CURVE and in plaintext.

Usage: python capture_driver.py WORKDIR MODEL_SPEC [CLI options both sides share...]. WORKDIR holds
``keys/`` (server, jetson1, stranger pairs), ``allowed/`` (jetson1.key), ``token``, ``inputs/`` (.pt
files). For each mode (``curve``, then ``plain``) it starts a raw AF_PACKET socket on lo (we are root
in this namespace), a ``serve`` and a ``run`` (in ``curve`` mode also a ``run`` with the unlisted
stranger's key), and writes ``MODE.pcapraw`` (every captured frame, concatenated) and ``result.json``
(each command's exit code, stdout, stderr). Not a test by itself (test_curve_capture.py runs it).
"""

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ETH_P_ALL = 0x0003


class Capture:
    """Every frame on lo, into memory, until stopped."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 2**20)
        self.sock.bind(("lo", 0))
        self.sock.settimeout(0.1)
        self.frames: list[bytes] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                self.frames.append(self.sock.recv(1 << 18))
            except TimeoutError:
                continue

    def close(self) -> bytes:
        self.stop.set()
        self.thread.join(10)
        self.sock.close()
        return b"".join(self.frames)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "splitprune", *args]


def _start_server(cmd: list[str], env: dict) -> tuple[subprocess.Popen, str]:
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # ready when it says "serving ... on ..."
        line = server.stderr.readline()
        if not line and server.poll() is not None:
            raise SystemExit(f"serve exited: {server.stderr.read()[-2000:]}")
        if line.startswith("serving "):
            return server, line
    raise SystemExit("serve did not start")


def main() -> None:
    work, spec, shared = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    keys = work / "keys"
    common = ["--token-file", str(work / "token")]
    result: dict = {}
    for port, mode in ((5611, "curve"), (5612, "plain")):
        address = f"tcp://127.0.0.1:{port}"
        serve_keys = ["--curve", str(keys / "server.key_secret"), "--authorized-keys", str(work / "allowed")]
        run_keys = ["--curve", str(keys / "jetson1.key_secret"), "--server-key", str(keys / "server.key")]
        capture = Capture()
        server, ready = _start_server(_cli("serve", spec, *shared, *common, "--listen", address, "--json",
                                    *(serve_keys if mode == "curve" else [])), env)
        runs = {"run": [*(run_keys if mode == "curve" else []), "--requests", "4", "--inputs",
                        str(work / "inputs"), "--timeout-ms", "60000", "--log", str(work / f"{mode}.jsonl")]}
        if mode == "curve":
            runs["stranger"] = ["--curve", str(keys / "stranger.key_secret"), "--server-key",
                                str(keys / "server.key"), "--requests", "3", "--inputs", str(work / "inputs"),
                                "--timeout-ms", "500", "--probe-every", "1"]
        out: dict = {}
        for name, args in runs.items():
            done = subprocess.run(_cli("run", spec, *shared, *common, "--connect", address, "--json", *args),
                                  env=env, capture_output=True, text=True, timeout=600)
            out[name] = {"code": done.returncode, "stdout": done.stdout, "stderr": done.stderr}
        time.sleep(0.3)  # the last replies' frames
        (work / f"{mode}.pcapraw").write_bytes(capture.close())
        server.terminate()
        stdout, stderr = server.communicate(timeout=60)
        out["serve"] = {"code": server.returncode, "stdout": stdout, "stderr": ready + stderr}
        result[mode] = out
    (work / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
