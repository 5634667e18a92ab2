"""Run inside ``unshare -rn``: token buckets on lo (MTU 1500), MobileNetV2 served, devices across them.

Usage: python shaped_driver.py OUT.json WORK_DIR. Writes what each scenario saw (records, switches,
server counts) for tests/.../test_shaped.py, which runs it and checks the results; not a test by itself.

- ``drop``: 50 Mbit/s with an 8 kB burst, then ``tc qdisc change`` to 5.7 Mbit/s.
- ``steady``: a fresh device on 6 Mbit/s with a 96 kB burst (a whole cut tensor fits in it), 60 requests.
- ``server_killed``: the first server, killed with SIGKILL in the middle of a run of requests.
- ``kill9``: ``splitprune run --log`` against a second server on the 96 kB link, killed with SIGKILL once
  it has logged some requests; that server then stops with SIGTERM and says how many it answered.
"""

import json
import os
import signal
import subprocess
import sys
import time

import torch

from splitprune.runtime import Device, DeviceOptions, SplitSettings, prepare
from splitprune.runtime.session import run_requests

SPEC = "torchvision:mobilenet_v2"
ARGS = ["--board", "tx2", "--link", "5g", "--server-profile", "gpu-server"]
FIRST, SECOND = "tcp://127.0.0.1:5599", "tcp://127.0.0.1:5598"
KILL9_AFTER = 15  # logged requests before kill -9 (the 12 s run logs far more; the check is the same)


def sh(*cmd):
    subprocess.run(cmd, check=True, capture_output=True)


def shape(verb, rate, burst):
    sh("tc", "qdisc", verb, "dev", "lo", "root", "tbf", "rate", rate, "burst", burst, "latency", "400ms")


def serve(address, cache, env):
    return subprocess.Popen([sys.executable, "-m", "splitprune", "serve", SPEC, *ARGS, "--listen", address,
                             "--cache", cache, "--json"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def connected(model, address, server, limit_s=240):
    device = Device(model, address, options=DeviceOptions(timeout_s=2.0))
    deadline = time.monotonic() + limit_s
    while not device.connect():
        if server.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the server did not start: {server.stderr.read()[-2000:]}")
        time.sleep(0.5)
    return device


def records(device, model, count):
    return [device.infer(model.example).record.to_dict() for _ in range(count)]


def main():
    out, work = sys.argv[1], sys.argv[2]
    cache, log = os.path.join(work, "cache"), os.path.join(work, "run.jsonl")
    sh("ip", "link", "set", "lo", "up")
    sh("ip", "link", "set", "lo", "mtu", "1500")  # tbf drops every packet larger than its burst
    shape("add", "50mbit", "8kb")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = serve(FIRST, cache, env)
    second = None
    result = {"seconds": {}}
    began = time.monotonic()

    def lap(name):
        result["seconds"][name] = round(time.monotonic() - began, 1)

    try:
        model = prepare(SPEC, SplitSettings(board="tx2", link="5g", server="gpu-server"))
        result["cuts"] = {c.kind: c.cut_id for c in model.cuts}
        device = connected(model, FIRST, first)
        result["train"] = {"burst_bytes": device.estimator.burst_bytes,
                           "rate_bps": device.estimator.estimate_bps}
        lap("server up")
        second = serve(SECOND, cache, env)  # loads the tails the first exported while the scenarios run
        before = records(device, model, 8)
        shape("change", "5.7mbit", "8kb")
        result["drop"] = {"records": before + records(device, model, 16), "change_at": len(before),
                          "burst_bytes": device.estimator.burst_bytes}
        device.close()
        lap("drop")

        shape("change", "6mbit", "96kb")
        time.sleep(0.2)  # the bucket fills
        device = connected(model, FIRST, first)
        result["train96"] = {"burst_bytes": device.estimator.burst_bytes,
                             "rate_bps": device.estimator.estimate_bps}
        result["steady"] = {"records": records(device, model, 60), "switches": device.chooser.switches,
                            "burst_bytes": device.estimator.burst_bytes}
        device.close()
        lap("steady")

        run = subprocess.Popen([sys.executable, "-m", "splitprune", "run", SPEC, *ARGS, "--connect", SECOND,
                                "--requests", "100000", "--no-check", "--log", log], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

        device = connected(model, FIRST, first)  # while the run prepares its model
        generator = torch.Generator().manual_seed(0)
        source = (torch.randn(tuple(model.example.shape), generator=generator) for _ in range(24))

        def kill_after_ten(record):
            if record.request_id == 9:
                first.kill()
                first.wait(30)

        rows, summary = run_requests(device, source, count=24, on_record=kill_after_ten)
        device.close()
        result["server_killed"] = {"records": [r.to_dict() for r in rows], "summary": summary.to_dict()}
        lap("server killed")

        deadline = time.monotonic() + 180
        while run.poll() is None and time.monotonic() < deadline:
            if os.path.exists(log) and open(log).read().count("\n") >= KILL9_AFTER:
                break
            time.sleep(0.1)
        alive = run.poll() is None
        run.send_signal(signal.SIGKILL)
        run.wait(30)
        time.sleep(0.5)  # a request in flight reaches the server and is answered into the void
        second.send_signal(signal.SIGTERM)
        served, _ = second.communicate(timeout=60)
        result["kill9"] = {"alive_until_killed": alive, "log": open(log).read(),
                           "served": json.loads(served)["requests"]}
        lap("kill9")
    finally:
        for server in (first, second):
            if server is not None and server.poll() is None:
                server.kill()
                server.wait(30)
    with open(out, "w") as handle:
        json.dump(result, handle)


if __name__ == "__main__":
    main()
