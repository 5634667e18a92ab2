"""Run inside ``unshare -rn``: shape lo, serve MobileNetV2, run a device across a rate change.

Usage: python shaped_driver.py OUT.json CACHE_DIR [BEFORE AFTER]. Writes the device's records and the
index of the first request after the change. Not a test by itself (tests/.../test_shaped.py runs it).
"""

import json
import os
import subprocess
import sys
import time

from splitprune.runtime import Device, DeviceOptions, SplitSettings, prepare

SPEC = "torchvision:mobilenet_v2"
ARGS = ["--board", "tx2", "--link", "5g", "--server-profile", "gpu-server"]


def sh(*cmd):
    subprocess.run(cmd, check=True, capture_output=True)


def main():
    out, cache = sys.argv[1], sys.argv[2]
    before, after = (int(sys.argv[3]), int(sys.argv[4])) if len(sys.argv) > 4 else (6, 10)
    sh("ip", "link", "set", "lo", "up", "mtu", "1500")  # a small MTU lets the bucket be small
    sh("tc", "qdisc", "add", "dev", "lo", "root", "tbf", "rate", "50mbit", "burst", "16kb", "latency",
       "400ms")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen(
        [sys.executable, "-m", "splitprune", "serve", SPEC, *ARGS, "--listen", "tcp://127.0.0.1:5599",
         "--cache", cache], env=env, stderr=subprocess.PIPE, text=True,
    )
    try:
        model = prepare(SPEC, SplitSettings(board="tx2", link="5g", server="gpu-server"))
        device = Device(model, "tcp://127.0.0.1:5599", options=DeviceOptions(timeout_s=5.0))
        deadline = time.monotonic() + 240
        while not device.connect():
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server did not start: {server.stderr.read()[-2000:]}")
            time.sleep(0.5)
        records = [device.infer(model.example).record for _ in range(before)]
        sh("tc", "qdisc", "change", "dev", "lo", "root", "tbf", "rate", "6mbit", "burst", "16kb", "latency",
           "400ms")
        records += [device.infer(model.example).record for _ in range(after)]
        device.close()
        cuts = {c.kind: c.cut_id for c in model.cuts}
        with open(out, "w") as handle:
            json.dump({"records": [r.to_dict() for r in records], "change_at": before, "cuts": cuts}, handle)
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
