"""``splitprune split``: JSON contract (re-derivable optimum), policy, export, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_runner import run_cli

from splitprune.cli.split import parse_rate_range
from splitprune.errors import SplitpruneError

MODEL = "torchvision:resnet18"


@pytest.fixture(scope="module")
def energy_doc() -> dict:
    done = run_cli("split", MODEL, "--link", "5g", "--wire", "int8", "--server", "gpu-server",
                "--input-shape", "1,3,64,64", "--sweep-bandwidth", "1e5:1e10", "--json")
    assert done.code == 0, done.err
    return json.loads(done.out)


def test_json_lets_a_third_party_rederive_the_optimum(energy_doc):
    doc = energy_doc
    nodes = {row["name"]: row for row in doc["nodes"]}
    device = {n for n, row in nodes.items() if row["placement"] == "device"}
    sent = [n for n in device
            if any(n in nodes[v]["inputs"] for v in nodes if v not in device)]
    sent_bytes = sum(nodes[n]["wire_bytes"] for n in sent)
    messages = sum(1 for n in sent if nodes[n]["is_tensor"])
    link = doc["link"]
    objective = (sum(nodes[n]["energy_j"] for n in device) + link["energy_per_byte_j"] * sent_bytes
                 + link["energy_per_message_j"] * messages)
    assert doc["schema"] == "splitprune.split/2" and doc["objective"] == "energy"
    assert doc["sent_bytes"] == sent_bytes
    assert doc["objective_value"] == pytest.approx(objective, rel=1e-12)
    assert sorted(c["name"] for c in doc["cut"]) == sorted(sent)
    for key in ("rate_bps", "rtt_s", "power_w", "measured_rate_bps", "in_measured_range", "name"):
        assert key in link
    for key in ("solver", "status", "solve_time_s"):
        assert key in doc
    assert doc["status"] == "optimal" and doc["cross_check_objective_value"] == pytest.approx(objective)
    # the optimum is no worse than either baseline
    assert objective <= doc["all_local"]["total_energy_j"] + 1e-12
    assert objective <= doc["full_offload"]["total_energy_j"] + 1e-12


def test_policy_in_json_covers_the_range_and_holds_the_chosen_split(energy_doc):
    policy = energy_doc["policy"]
    pieces = policy["pieces"]
    assert policy["exact"] is True
    assert pieces[0]["low_bps"] == pytest.approx(1e5) and pieces[-1]["high_bps"] == pytest.approx(1e10)
    for left, right in zip(pieces, pieces[1:], strict=False):
        assert left["high_bps"] == pytest.approx(right["low_bps"])
        assert right["sent_bytes"] >= left["sent_bytes"]  # faster link, more bytes
    rate = energy_doc["link"]["rate_bps"]
    here = next(p for p in pieces if p["low_bps"] <= rate <= p["high_bps"])
    assert here["intercept"] + here["slope"] / rate == pytest.approx(energy_doc["objective_value"], rel=1e-9)
    # the sweep runs past the measured range: those pieces are marked, the others are not
    low, high = policy["measured_rate_bps"]
    for piece in pieces:
        mid = (piece["low_bps"] * piece["high_bps"]) ** 0.5
        assert piece["in_measured_range"] == (low <= mid <= high)
    assert any(not p["in_measured_range"] for p in pieces) and any(p["in_measured_range"] for p in pieces)


def test_export_and_plot(tmp_path: Path):
    done = run_cli("split", MODEL, "--link", "5g", "--objective", "latency", "--server", "gpu-server",
                "--input-shape", "1,3,64,64", "--rate-bps", "3e6", "--export", str(tmp_path / "exp"),
                "--plot", str(tmp_path / "split.png"), "--json")
    assert done.code == 0, done.err
    doc = json.loads(done.out)
    assert doc["link"]["rate_bps"] == pytest.approx(3e6)
    assert doc["link"]["in_measured_range"] is True
    manifest = json.loads((tmp_path / "exp" / "manifest.json").read_text())
    cut = [c["name"] for c in doc["cut"]] or ["output"]
    assert sorted(t["name"] for t in manifest["crossing"]) == sorted(cut)
    assert (tmp_path / "split.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    head = torch.export.load(tmp_path / "exp" / "head.pt2").module()
    outputs = head(torch.randn(1, 3, 64, 64))
    assert len(outputs) == len(manifest["crossing"])


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--link", "carrier-pigeon"), "unknown link"),
        (("--deadline-ms", "0.001"), "deadline"),
        (("--wire", "fp8"), "wire format"),
        (("--input-wire", "png"), "input-wire"),
        (("--input-wire", "jpeg:0"), "input-wire"),
        (("--sweep-bandwidth", "10:1"), "sweep-bandwidth"),
        (("--objective", "speed"), "objective"),
        (("--link", "ble", "--downlink"), "no [downlink]"),
    ],
)
def test_user_errors_are_one_line_with_exit_2(args, needle):
    done = run_cli("split", MODEL, "--input-shape", "1,3,32,32", *args)
    assert done.code == 2
    assert done.err.startswith("error: ") and needle in done.err
    assert len(done.err.strip().splitlines()) == 1
    assert "Traceback" not in done.err


def test_rate_range_parsing():
    assert parse_rate_range("1k:10G") == (1e3, 1e10, 64)
    assert parse_rate_range("1e5:2.5M:9") == (1e5, 2.5e6, 9)
    with pytest.raises(SplitpruneError):
        parse_rate_range("fast:slow")


def test_input_wire_prices_only_the_input_and_jpeg_is_smaller_than_raw_pixels():
    docs = {}
    for wire in ("fp32", "uint8", "jpeg:90", "1000"):
        done = run_cli("split", MODEL, "--link", "lte", "--input-shape", "1,3,64,64", "--input-wire", wire,
                       "--json")
        assert done.code == 0, done.err
        docs[wire] = json.loads(done.out)
    sizes = {w: next(r for r in d["nodes"] if r["name"] == "x")["wire_bytes"] for w, d in docs.items()}
    assert sizes["fp32"] == 3 * 64 * 64 * 4 and sizes["uint8"] == 3 * 64 * 64 and sizes["1000"] == 1000
    assert sizes["jpeg:90"] < sizes["uint8"]
    assert {d["input_wire"] for d in docs.values()} == {"fp32", "uint8", "jpeg:90", "1000 bytes"}
    rest = {w: [r["wire_bytes"] for r in d["nodes"] if r["name"] != "x"] for w, d in docs.items()}
    assert rest["fp32"] == rest["uint8"] == rest["jpeg:90"] == rest["1000"]  # intermediate tensors: --wire
    full = {w: d["full_offload"]["sent_bytes"] for w, d in docs.items()}
    assert full == sizes


def test_rate_outside_the_measured_range_warns_once_and_is_marked():
    done = run_cli("split", MODEL, "--link", "lte", "--input-shape", "1,3,32,32", "--rate-bps", "1e8",
                   "--sweep-bandwidth", "1e5:1e9:8")
    assert done.code == 0, done.err
    warnings = [line for line in done.err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "outside" in warnings[0] and "measured" in warnings[0]
    assert "outside the measured range" in done.out and "*" in done.out
    inside = run_cli("split", MODEL, "--link", "lte", "--input-shape", "1,3,32,32")
    assert inside.code == 0 and "warning" not in inside.err
