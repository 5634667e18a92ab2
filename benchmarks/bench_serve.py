"""Runtime benchmark: per-request overhead, requests per second, switch latency after a rate change.

    python benchmarks/bench_serve.py [--requests 40] [--no-shaped] [--curve-repeats 6] [--only-curve]

- ``overhead``: ResNet-18 on the TX2 profile cut after ``layer2`` (one 128x28x28 fp32 tensor, 401 KB),
  server in another process on loopback: the median request time less the median of running the same
  head and tail in one process (what the runtime adds: encoding, ZeroMQ, decoding, the loopback copy).
- ``requests_per_s``: the same cut with 1 and 4 devices (threads of one process, one socket each)
  against one server, unshaped and on a 50 Mbit/s token bucket.
- ``switch``: MobileNetV2 over 5g on the shaped link changed from 50 to 6 Mbit/s: requests from the
  change until the device runs the policy's intermediate cut.
- ``curve``: what ZeroMQ CURVE encryption adds per request. One server process runs a plaintext and a
  CURVE server of ResNet-18 (cuts after ``layer2``, 401 KB, and ``layer4``, 100 KB); one device
  alternates between them, ``--curve-repeats`` times (the first mode alternating too, since the
  shared machine's load drifts), ``--requests`` requests each. The figure is each run's median of
  request time less head and tail (encryption happens in ZeroMQ's I/O threads, inside the round trip),
  compared pairwise: CURVE run minus the plaintext run next to it. ``raw_zmq_round_trip`` times the same
  payload sizes echoed over bare ZeroMQ sockets (no torch), with and without CURVE.

The shaped parts re-run this script inside ``unshare -rn`` (a private network namespace whose loopback
gets ``tc qdisc ... tbf``); they are left out where that is not possible. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import statistics
import subprocess
import sys
import threading
import time

import torch

from splitprune.runtime import Device, DeviceOptions, Server, SplitSettings
from splitprune.runtime import prepare as _prepare
from splitprune.runtime.keys import DeviceCurve, ServerCurve, create_keypair

RESNET = "torchvision:resnet18"
MOBILENET = "torchvision:mobilenet_v2"
SETTINGS = SplitSettings(board="tx2", link="5g", server="gpu-server")


def prepare(*args, **kwargs):
    """The runtime's prepare, with what HiGHS prints on fd 1 sent to stderr (stdout is the JSON)."""
    import os

    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        return _prepare(*args, **kwargs)
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _cut_nodes(model_spec: str, last: str) -> tuple[str, ...]:
    import networkx as nx

    model = prepare(model_spec, SETTINGS)
    return tuple(sorted(nx.ancestors(model.graph.nx, last) | {last}))


def _serve(spec: str, extra: tuple, port: int, ready) -> None:  # a spawned process
    torch.set_num_threads(1)
    model = prepare(spec, SETTINGS, extra_placements=extra)
    server = Server(model, listen=f"tcp://127.0.0.1:{port}", max_batch=4)
    server.load()
    server.bind()
    ready.set()
    try:
        server.serve()
    except KeyboardInterrupt:
        pass


def _start_server(spec: str, extra: tuple, port: int):
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    process = ctx.Process(target=_serve, args=(spec, extra, port, ready), daemon=True)
    process.start()
    if not ready.wait(600):
        raise RuntimeError("server did not start")
    return process


def _devices(model, address: str, cut_id: str | None, n_devices: int, requests: int) -> dict:
    records: list = []
    base_rtt: list = []
    lock = threading.Lock()

    def work(count=requests):
        device = Device(model, address, options=DeviceOptions(timeout_s=30.0), pin_cut=cut_id)
        device.connect(pings=10)
        rows = [device.infer(model.example).record for _ in range(count)]
        device.close()
        with lock:
            records.extend(rows)
            base_rtt.append(device.estimator.base_rtt_s)

    work(5)  # warm-up
    records.clear()
    threads = [threading.Thread(target=work) for _ in range(n_devices)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return {"devices": n_devices, "requests": len(records), "wall_s": wall,
            "requests_per_s": len(records) / wall, "fallbacks": sum(r.local_fallback for r in records),
            "median_total_s": statistics.median(r.total_s for r in records), "records": records,
            "base_rtt_s": min(base_rtt)}


def _in_process_s(model, cut, requests: int) -> float:
    parts = model.parts(cut)
    times = []
    with torch.inference_mode():
        for _ in range(requests + 3):
            start = time.perf_counter()
            parts.tail(*parts.head(model.example))
            times.append(time.perf_counter() - start)
    return statistics.median(times[3:])


def _resnet_part(requests: int, port: int, *, overhead: bool) -> dict:
    torch.set_num_threads(1)
    nodes = _cut_nodes(RESNET, "layer2_1_relu_1")
    model = prepare(RESNET, SETTINGS, extra_placements=(nodes,))
    cut = next(c for c in model.cuts if c.device_nodes == nodes)
    server = _start_server(RESNET, (nodes,), port)
    address = f"tcp://127.0.0.1:{port}"
    try:
        out: dict = {"cut": {"after": "layer2_1_relu_1", "sent_bytes": cut.sent_bytes}}
        one = _devices(model, address, cut.cut_id, 1, requests)
        if overhead:
            local_s = _in_process_s(model, cut, requests)
            rows = one["records"]
            out["overhead"] = {
                # what the runtime adds per request beyond head, tail and transfer: encode, ZeroMQ,
                # decode, reply (each request's own head and tail times taken out)
                "overhead_s": statistics.median(r.total_s - r.head_s - r.tail_s - r.transfer_s for r in rows),
                "overhead_with_loopback_transfer_s": statistics.median(r.total_s - r.head_s - r.tail_s
                                                                       for r in rows),
                "request_s": one["median_total_s"],
                "head_s": statistics.median(r.head_s for r in rows),
                "tail_s": statistics.median(r.tail_s for r in rows),
                "server_s": statistics.median(r.server_s for r in rows),
                "transfer_s": statistics.median(r.transfer_s for r in rows),
                "empty_round_trip_s": one["base_rtt_s"],
                # in-process head + tail, for comparison (noisy on a shared machine)
                "in_process_head_tail_s": local_s,
                "request_less_in_process_s": one["median_total_s"] - local_s,
            }
        four = _devices(model, address, cut.cut_id, 4, requests)
        out["requests_per_s"] = {f"{p['devices']}_devices": {k: v for k, v in p.items()
                                                             if k not in ("records", "base_rtt_s")}
                                 for p in (one, four)}
        return out
    finally:
        server.terminate()
        server.join(10)


def _switch_part(port: int) -> dict:
    torch.set_num_threads(1)
    model = prepare(MOBILENET, SETTINGS)
    server = _start_server(MOBILENET, (), port)
    try:
        device = Device(model, f"tcp://127.0.0.1:{port}", options=DeviceOptions(timeout_s=10.0))
        device.connect()
        before = [device.infer(model.example).record for _ in range(6)]
        _tc("change", "6mbit")
        after = [device.infer(model.example).record for _ in range(10)]
        device.close()
    finally:
        server.terminate()
        server.join(10)
    kinds = [r.cut_kind for r in after]
    return {"before": [r.cut_kind for r in before], "after": kinds,
            "requests_to_switch": kinds.index("split") + 1 if "split" in kinds else None,
            "lost": 0, "fallbacks": sum(r.local_fallback for r in before + after)}


def _tc(verb: str, rate: str) -> None:
    subprocess.run(["tc", "qdisc", verb, "dev", "lo", "root", "tbf", "rate", rate, "burst", "16kb", "latency",
                    "400ms"], check=True)


def _shaped_child(requests: int) -> dict:
    subprocess.run(["ip", "link", "set", "lo", "up", "mtu", "1500"], check=True)
    _tc("add", "50mbit")
    out = _resnet_part(requests, 5701, overhead=False)
    _tc("change", "50mbit")
    out["switch"] = _switch_part(5702)
    out["link"] = "tbf 50mbit burst 16kb on lo (mtu 1500), then 6mbit for the switch"
    return out


def _serve_pair(spec: str, extra: tuple, port: int, keys: str, cache: str, ready) -> None:  # spawned
    """A plaintext server on ``port`` and a CURVE one on ``port + 1``, same model, one process."""
    from pathlib import Path

    torch.set_num_threads(1)
    model = prepare(spec, SETTINGS, extra_placements=extra)
    curve = ServerCurve.from_files(Path(keys) / "server.key_secret", Path(keys) / "allowed")
    servers = [Server(model, listen=f"tcp://127.0.0.1:{port}", max_batch=4, cache_dir=Path(cache)),
               Server(model, listen=f"tcp://127.0.0.1:{port + 1}", max_batch=4, cache_dir=Path(cache),
                      curve=curve)]
    stop = threading.Event()
    threads = []
    for server in servers:
        server.load()  # the second loads what the first exported
        server.bind()
        threads.append(threading.Thread(target=server.serve, args=(stop,), daemon=True))
        threads[-1].start()
    ready.set()
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        stop.set()


def _raw_zmq(sizes: dict[str, int], repeats: int, count: int = 300) -> dict:
    """Median round trip of a payload echoed over bare ZeroMQ DEALER/ROUTER, plaintext and CURVE."""
    import os

    import zmq

    context = zmq.Context()
    server_public, server_secret = zmq.curve_keypair()
    client_public, client_secret = zmq.curve_keypair()

    def once(size: int, curve: bool) -> float:
        router, dealer = context.socket(zmq.ROUTER), context.socket(zmq.DEALER)
        if curve:  # no ZAP handler here: any client key is accepted, the traffic is still encrypted
            router.curve_secretkey, router.curve_publickey, router.curve_server = server_secret, server_public, True
            dealer.curve_secretkey, dealer.curve_publickey = client_secret, client_public
            dealer.curve_serverkey = server_public
        port = router.bind_to_random_port("tcp://127.0.0.1")
        dealer.connect(f"tcp://127.0.0.1:{port}")
        stop = threading.Event()

        def echo() -> None:
            while not stop.is_set():
                if router.poll(50):
                    frames = router.recv_multipart(copy=False)
                    router.send_multipart([frames[0], b"ok"])

        thread = threading.Thread(target=echo)
        thread.start()
        payload, times = os.urandom(size), []
        for _ in range(count):
            start = time.perf_counter()
            dealer.send_multipart([b"h", payload], copy=False)
            dealer.recv_multipart()
            times.append(time.perf_counter() - start)
        stop.set()
        thread.join()
        router.close(0)
        dealer.close(0)
        return statistics.median(times[20:])

    out: dict = {}
    for name, size in sizes.items():
        runs: dict[str, list[float]] = {"plain": [], "curve": []}
        for r in range(repeats):
            for mode in (("plain", "curve") if r % 2 == 0 else ("curve", "plain")):
                runs[mode].append(once(size, mode == "curve"))
        out[name] = {"bytes": size, "plain_s": statistics.median(runs["plain"]),
                     "curve_s": statistics.median(runs["curve"]),
                     "curve_minus_plain_s": statistics.median(c - p for c, p in zip(runs["curve"], runs["plain"],
                                                                                   strict=True))}
    context.term()
    sizes_mb = [row["bytes"] / 1e6 for row in out.values()]
    added = [row["curve_minus_plain_s"] for row in out.values()]
    return {"by_size": out, "curve_added_s_per_mb": statistics.linear_regression(sizes_mb, added).slope}


def _curve_part(requests: int, repeats: int, port: int) -> dict:
    import tempfile
    from pathlib import Path

    torch.set_num_threads(1)
    base = prepare(RESNET, SETTINGS)
    import networkx as nx

    lasts = {"layer2": "layer2_1_relu_1", "layer4": "layer4_1_relu_1"}
    placements = {name: tuple(sorted(nx.ancestors(base.graph.nx, last) | {last})) for name, last in lasts.items()}
    model = prepare(RESNET, SETTINGS, extra_placements=tuple(placements.values()))
    cuts = {name: next(c for c in model.cuts if c.device_nodes == nodes) for name, nodes in placements.items()}
    with tempfile.TemporaryDirectory(prefix="bench-curve-") as tmp:
        keys = Path(tmp) / "keys"
        create_keypair(keys, "server")
        device_keys = create_keypair(keys, "device")
        (keys / "allowed").mkdir()
        (keys / "allowed" / "device.key").write_bytes(device_keys.public_key_file.read_bytes())
        curve = DeviceCurve.from_files(device_keys.secret_key_file, keys / "server.key")
        ctx = multiprocessing.get_context("spawn")
        ready = ctx.Event()
        process = ctx.Process(target=_serve_pair, args=(RESNET, tuple(placements.values()), port, str(keys),
                                                        str(Path(tmp) / "cache"), ready), daemon=True)
        process.start()
        try:
            if not ready.wait(900):
                raise RuntimeError("servers did not start")
            runs: dict = {(name, mode): [] for name in cuts for mode in ("plain", "curve")}
            fastest: dict = {key: [] for key in runs}
            fallbacks = 0
            for r in range(repeats):
                for name, cut in cuts.items():
                    for mode in (("plain", "curve") if r % 2 == 0 else ("curve", "plain")):
                        address = f"tcp://127.0.0.1:{port + (mode == 'curve')}"
                        device = Device(model, address, options=DeviceOptions(timeout_s=30.0), pin_cut=cut.cut_id,
                                        curve=curve if mode == "curve" else None)
                        device.connect(pings=10)
                        for _ in range(3):  # warm-up
                            device.infer(model.example)
                        rows = [device.infer(model.example).record for _ in range(requests)]
                        device.close()
                        fallbacks += sum(row.local_fallback for row in rows)
                        added = [row.total_s - row.head_s - row.tail_s for row in rows]
                        runs[(name, mode)].append(statistics.median(added))
                        fastest[(name, mode)].append(min(added))
        finally:
            process.terminate()
            process.join(10)
    out: dict = {"requests_per_run": requests, "repeats": repeats, "fallbacks": fallbacks, "cuts": {}}
    for name, cut in cuts.items():
        plain, curve_s = runs[(name, "plain")], runs[(name, "curve")]
        paired = [c - p for c, p in zip(curve_s, plain, strict=True)]
        out["cuts"][name] = {
            "after": lasts[name], "sent_bytes": cut.sent_bytes,
            "plain_request_less_head_tail_s": {"median": statistics.median(plain), "min": min(plain),
                                               "runs": plain},
            "curve_request_less_head_tail_s": {"median": statistics.median(curve_s), "min": min(curve_s),
                                               "runs": curve_s},
            "curve_minus_plain_s": {"median_paired": statistics.median(paired),
                                    "min_minus_min": min(curve_s) - min(plain), "paired": paired,
                                    # each run's fastest request: the work CURVE adds, without preemption
                                    "fastest_request_median_paired": statistics.median(
                                        c - p for c, p in zip(fastest[(name, "curve")], fastest[(name, "plain")],
                                                              strict=True))},
        }
    out["raw_zmq_round_trip"] = _raw_zmq({name: cut.sent_bytes for name, cut in cuts.items()} | {"4KB": 4096},
                                         repeats)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--no-shaped", action="store_true")
    parser.add_argument("--curve-repeats", type=int, default=6, help="CURVE vs plaintext runs (0: skip)")
    parser.add_argument("--only-curve", action="store_true", help="Only the CURVE vs plaintext comparison")
    parser.add_argument("--shaped-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.shaped_child:
        print(json.dumps(_shaped_child(args.requests)))
        return
    result: dict = {"benchmark": "bench_serve", "torch_threads_per_process": 1}
    if args.curve_repeats > 0:
        result["curve"] = _curve_part(args.requests, args.curve_repeats, 5705)
    if args.only_curve:
        print(json.dumps(result, indent=2))
        return
    result["unshaped"] = _resnet_part(args.requests, 5703, overhead=True)
    if not args.no_shaped and shutil.which("unshare") and shutil.which("tc"):
        child = subprocess.run(["unshare", "-rn", sys.executable, __file__, "--shaped-child", "--requests",
                                str(args.requests)], capture_output=True, text=True)
        result["shaped"] = (json.loads(child.stdout.strip().splitlines()[-1]) if child.returncode == 0
                            else {"skipped": child.stderr.strip()[-500:]})
    else:
        result["shaped"] = {"skipped": "--no-shaped, or unshare/tc missing"}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
