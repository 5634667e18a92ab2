"""Kill the server mid-run, restart it; the CLI as users run it (subprocesses, loopback)."""

import json
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

from splitprune.runtime import Device, DeviceOptions

TINY_ARGS = ["--board", "tx2", "--link", "wifi", "--input-shape", "1,3,32,32"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(spec, address, cache, token_file):
    return subprocess.Popen(
        [sys.executable, "-m", "splitprune", "serve", spec, *TINY_ARGS, "--listen", address, "--cache",
         str(cache), "--token-file", str(token_file), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _until_offloading(device, model, limit_s=90):
    deadline = time.monotonic() + limit_s
    records = []
    while time.monotonic() < deadline:
        x = torch.randn(tuple(model.example.shape))
        inference = device.infer(x)
        records.append((x, inference))
        if not inference.record.local_fallback:
            return records
        time.sleep(0.2)
    pytest.fail("offloading did not resume")


@pytest.fixture()
def served(tiny_model, tmp_path, token):
    spec = tiny_model.spec
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    address = f"tcp://127.0.0.1:{_free_port()}"
    return spec, address, tmp_path / "cache", token_file


def test_kill_the_server_mid_run_restart_it_then_run_the_cli(tiny_model, served, token, tmp_path):
    spec, address, cache, token_file = served
    server = _serve(spec, address, cache, token_file)
    device = Device(tiny_model, address, token=token, options=DeviceOptions(timeout_s=2.0, probe_every=2))
    try:
        device.connect(pings=0)
        first = _until_offloading(device, tiny_model)
        records = [device.infer(tiny_model.example) for _ in range(5)]
        assert not any(r.record.local_fallback for r in records)
        server.kill()
        server.wait(10)
        during = []
        for _ in range(6):
            x = torch.randn(tuple(tiny_model.example.shape))
            during.append((x, device.infer(x)))
        assert all(inf.record.local_fallback for _, inf in during)  # none lost: every one has an output
        with torch.no_grad():
            for x, inf in during:  # computed here on exact tensors: equal to the unsplit model
                assert torch.allclose(inf.output, tiny_model.module(x), atol=1e-6)
        assert {inf.record.fallback_reason for _, inf in during} <= {"timeout", "unreachable", "server down"}
        server = _serve(spec, address, cache, token_file)  # the cache makes the restart a load
        resumed = _until_offloading(device, tiny_model)
        more = [device.infer(tiny_model.example) for _ in range(3)]
        assert not any(r.record.local_fallback for r in more)
        offloaded_after_restart = 1 + len(more)
        ids = [inf.record.request_id for _, inf in first] + [r.record.request_id for r in records]
        ids += [inf.record.request_id for _, inf in during + resumed] + [r.record.request_id for r in more]
        assert ids == list(range(len(ids)))  # one answer per request, in order
    finally:
        device.close()
    try:  # the CLI as users run it, against the restarted server
        log, plot = tmp_path / "run.jsonl", tmp_path / "timeline.png"
        run = subprocess.run(
            [sys.executable, "-m", "splitprune", "run", spec, *TINY_ARGS, "--connect", address, "--requests",
             "30", "--token-file", str(token_file), "--timeout-ms", "60000", "--log", str(log), "--plot",
             str(plot), "--json"],
            capture_output=True, text=True, timeout=180,
        )
    finally:
        server.send_signal(signal.SIGTERM)
        served_out, err = server.communicate(timeout=30)
    assert server.returncode == 0 and "Traceback" not in err
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)  # stdout is exactly one JSON document
    assert doc["schema"] == "splitprune.run/1"
    assert (doc["requests"], doc["completed"], doc["lost"]) == (30, 30, 0)
    assert doc["max_abs_error"] < 0.05  # uint8 input wire
    used = {row["kind"]: row["count"] for row in doc["splits_used"]}
    assert sum(used.values()) == 30 and used.get("full_offload", 0) >= 25  # wifi: offload pays at any rate
    for key in ("local_fallbacks", "switches", "latency_s", "predicted_latency_s", "uplink_estimate_bps"):
        assert key in doc
    assert doc["latency_s"]["median"] <= doc["latency_s"]["p95"]
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["request_id"] for r in rows] == list(range(30))
    offloaded = [r for r in rows if not r["local_fallback"]]
    assert offloaded and all(r["sent_bytes"] > 32 * 32 * 3 for r in offloaded)  # uint8 pixels + header
    assert all(r["total_s"] >= r["server_s"] + r["head_s"] for r in offloaded)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads(served_out)
    assert summary["schema"] == "splitprune.serve/1"
    assert summary["requests"] == offloaded_after_restart + len(offloaded)  # nothing answered twice
    assert all(e < 1e-4 for e in summary["max_abs_error"].values())


def test_run_cli_ctrl_c_stops_cleanly(tiny_model, served):
    spec, address, cache, token_file = served
    run = subprocess.Popen(
        [sys.executable, "-m", "splitprune", "run", spec, *TINY_ARGS, "--connect", address, "--requests",
         "1000000", "--timeout-ms", "200", "--sensor", "none", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # no server: every request runs locally, probing
    time.sleep(8)
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 130 and "Traceback" not in err
    if out:  # interrupted while running requests (not while preparing)
        doc = json.loads(out)
        assert doc["energy_j"] is None  # the null sensor measures time only
        assert doc["interrupted"] and doc["lost"] == 0 and doc["completed"] + sum(doc["errors"].values()) == \
            doc["requests"]


def test_run_log_is_streamed_and_survives_kill_9(tiny_model, tiny_server, token, tmp_path):
    """Every completed request is on disk while the run goes, and after ``kill -9``: one per line."""
    token_file, log = tmp_path / "token", tmp_path / "run.jsonl"
    token_file.write_text(token)
    served_before = tiny_server.stats.requests
    run = subprocess.Popen(
        [sys.executable, "-m", "splitprune", "run", tiny_model.spec, *TINY_ARGS, "--connect",
         tiny_server.bound, "--token-file", str(token_file), "--requests", "1000000", "--log", str(log)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and run.poll() is None:
            if log.is_file() and log.read_text().count("\n") >= 20:  # tail -f would show these now
                break
            time.sleep(0.2)
        assert run.poll() is None, run.stderr.read()[-2000:]
        time.sleep(1.0)
    finally:
        run.kill()  # SIGKILL: no handler, no summary, no close
        run.communicate(timeout=30)
    time.sleep(0.5)  # let the server answer a request that was in flight
    text = log.read_text()
    rows = [json.loads(line) for line in text.splitlines()]
    assert len(rows) >= 20 and text.endswith("\n")  # whole lines only
    assert [r["request_id"] for r in rows] == list(range(len(rows)))
    offloaded = sum(not r["local_fallback"] and r["sent_bytes"] > 0 for r in rows)
    served = tiny_server.stats.requests - served_before
    assert served - offloaded in (0, 1)  # at most the request in flight is missing from the log
