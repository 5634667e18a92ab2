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
            if any(n in nodes[v]["predecessors"] for v in nodes if v not in device)]
    bytes_sent = sum(nodes[n]["out_bytes"] for n in sent)
    messages = sum(1 for n in sent if nodes[n]["is_tensor"])
    objective = (sum(nodes[n]["energy_j"] for n in device) + doc["energy_per_byte_j"] * bytes_sent
                 + doc["energy_per_message_j"] * messages)
    assert doc["bytes_sent"] == bytes_sent
    assert doc["objective"] == pytest.approx(objective, rel=1e-12)
    assert sorted(c["name"] for c in doc["cut"]) == sorted(sent)
    for key in ("rate_bps", "rtt_s", "solver", "status", "solve_time_s"):
        assert key in doc
    assert doc["status"] == "optimal" and doc["cross_check_objective"] == pytest.approx(objective)
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
        assert right["bytes_sent"] >= left["bytes_sent"]  # faster link, more bytes
    rate = energy_doc["rate_bps"]
    here = next(p for p in pieces if p["low_bps"] <= rate <= p["high_bps"])
    assert here["intercept"] + here["slope"] / rate == pytest.approx(energy_doc["objective"], rel=1e-9)


def test_export_and_plot(tmp_path: Path):
    done = run_cli("split", MODEL, "--link", "5g", "--objective", "latency", "--server", "gpu-server",
                "--input-shape", "1,3,64,64", "--rate-bps", "3e6", "--export", str(tmp_path / "exp"),
                "--plot", str(tmp_path / "split.png"), "--json")
    assert done.code == 0, done.err
    doc = json.loads(done.out)
    assert doc["rate_bps"] == pytest.approx(3e6)
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
