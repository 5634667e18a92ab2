"""Deployments: TensorRT fusion, precisions, power modes, tiles and waves, schema-3 profiles."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest
import torch

import splitprune as sp
from splitprune.board import gemm_shape
from splitprune.config import shipped_names
from splitprune.deploy import configure, resolve_power_mode
from splitprune.errors import ConfigError
from splitprune.fusion import fuse
from splitprune.models import load_model

SHARED = Path(__file__).resolve().parents[2] / "data" / "jetson_published" / "networks.csv"
JETSONS = ("tx2", "nano", "agx-xavier", "xavier-nx", "agx-orin", "orin-nano", "orin-nx", "orin-nx-8gb")


@lru_cache(maxsize=8)
def _graph(name: str, batch: int = 1) -> sp.LayerGraph:
    module = load_model(f"torchvision:{name}", device="meta").module
    return sp.trace(module, torch.empty((batch, 3, 224, 224), device="meta"))


def _total(name: str, board: str, batch: int = 1, **deployment: str) -> tuple[float, float]:
    graph = sp.annotate(_graph(name, batch), configure(sp.load_board(board), **deployment))
    return graph.total_latency_s, graph.total_energy_j


def test_every_shipped_jetson_prices_every_deployment_it_supports() -> None:
    assert set(JETSONS) <= set(shipped_names("boards"))
    for board in JETSONS:
        profile = sp.load_board(board)
        precisions = [p for p in ("fp32", "fp16", "int8") if profile.device.peak_macs_per_clock_per_sm(p)]
        for mode in ("eager", "graph", "tensorrt"):
            for precision in precisions:
                if precision == "int8" and mode != "tensorrt":
                    continue
                for power_mode in profile.power_modes:
                    latency_s, energy_j = _total(
                        "resnet18", board, mode=mode, precision=precision, power_mode=power_mode
                    )
                    assert math.isfinite(latency_s) and 0 < latency_s < 1.0, (board, mode, precision)
                    assert math.isfinite(energy_j) and 0 < energy_j < 10.0, (board, mode, precision)


def test_tensorrt_fuses_batch_norm_activation_and_residual_add_into_the_conv() -> None:
    graph = sp.annotate(_graph("resnet18"), configure(sp.load_board("tx2"), mode="tensorrt"))
    kernels = fuse(graph)
    nodes, preds = graph.nodes, graph.preds
    for name in graph.order:
        kind = nodes[name]["kind"]
        if kind == "bn":
            assert nodes[name]["kernel"] == preds[name][0] and nodes[preds[name][0]]["kind"] == "conv"
            assert nodes[name]["energy_j"] == 0.0 and nodes[name]["latency_s"] == 0.0
        if kind == "add":
            assert nodes[nodes[name]["kernel"]]["kind"] == "conv"  # residual add in the conv's epilogue
    convs = sum(1 for a in nodes.values() if a["kind"] in ("conv", "linear"))
    pools = sum(1 for a in nodes.values() if a["kind"] == "pool")
    assert len(kernels) == convs + pools  # every other op rides in a conv kernel or is free
    assert graph.total_latency_s == pytest.approx(
        sum(nodes[k]["latency_s"] for k in kernels) + nodes[graph.inputs[0]]["latency_s"]
    )


def test_fused_kernel_moves_fewer_bytes_than_its_nodes() -> None:
    graph = _graph("resnet18")
    for anchor, kernel in fuse(graph).items():
        unfused = sum(graph.nodes[m]["mem_bytes"] for m in kernel.members)
        assert kernel.mem_bytes <= unfused
        if len(kernel.members) > 1:
            assert kernel.mem_bytes < unfused, anchor


def test_a_cut_between_fused_nodes_breaks_the_fusion_on_both_sides() -> None:
    graph = _graph("resnet18")
    conv = next(n for n in graph.order if graph.nodes[n]["kind"] == "conv")
    device = set(graph.order[: graph.order.index(conv) + 1])  # the cut falls right after the first conv
    whole, cut = fuse(graph), fuse(graph, boundary=device)
    assert len(whole[conv].members) > 1 and cut[conv].members == [conv]
    assert len(cut) == len(whole) + 1
    profile = configure(sp.load_board("tx2"), mode="tensorrt")
    fused_j = sp.annotate(graph, profile).total_energy_j
    assert sp.annotate(graph, profile, boundary=device).total_energy_j > fused_j


def test_tensorrt_is_cheaper_than_a_cuda_graph_which_is_cheaper_than_eager() -> None:
    eager, graph_mode, tensorrt = (
        _total("resnet50", "tx2", mode=m)[0] for m in ("eager", "graph", "tensorrt")
    )
    assert tensorrt < graph_mode < eager


def test_fp16_speed_follows_the_peak_rate_ratio_and_efficiency() -> None:
    base = sp.load_board("tx2")
    fp16 = configure(base, mode="tensorrt", precision="fp16")
    ratio = base.latency_s.conv_per_mac / fp16.latency_s.conv_per_mac
    assert ratio == pytest.approx(2.0 * base.precisions["fp16"].efficiency)
    assert fp16.latency_s.memory_per_byte == pytest.approx(base.latency_s.memory_per_byte / 2)
    assert (
        _total("resnet18", "tx2", mode="tensorrt", precision="fp16")[0]
        < _total("resnet18", "tx2", mode="tensorrt")[0]
    )


def test_tensor_cores_make_fp16_faster_on_volta_than_on_pascal() -> None:
    def speedup(board: str) -> float:
        fp32 = _total("resnet50", board, mode="tensorrt")[0]
        return fp32 / _total("resnet50", board, mode="tensorrt", precision="fp16")[0]

    assert speedup("agx-xavier") > speedup("tx2") > 1.0


def test_precision_the_board_cannot_run_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match="no int8 MAC rate; use --precision fp32"):
        configure(sp.load_board("tx2"), mode="tensorrt", precision="int8")
    with pytest.raises(ConfigError, match="int8 needs a quantising runtime"):
        configure(sp.load_board("agx-xavier"), mode="eager", precision="int8")
    with pytest.raises(ConfigError, match="no fp16 MAC rate"):
        configure(sp.load_board("h100-nvml"), precision="fp16")


def test_power_modes_resolve_by_name_alias_and_number() -> None:
    tx2 = sp.load_board("tx2")
    assert resolve_power_mode(tx2, "maxq") == "MAXQ"
    assert resolve_power_mode(tx2, "MAXP") == "MAXP_CORE_ALL"
    assert resolve_power_mode(tx2, "3") == "MAXP_CORE_ARM"
    with pytest.raises(ConfigError, match="has no power mode 'TURBO'; use one of: MAXN, MAXQ"):
        resolve_power_mode(tx2, "TURBO")


def test_a_slower_power_mode_takes_longer_and_spends_less_dynamic_energy() -> None:
    base = sp.load_board("tx2")
    maxn, maxq = (configure(base, mode="tensorrt", power_mode=m) for m in ("MAXN", "MAXQ"))
    clock = base.power_modes["MAXN"].gpu_clock_hz / base.power_modes["MAXQ"].gpu_clock_hz
    assert maxq.latency_s.conv_per_mac == pytest.approx(maxn.latency_s.conv_per_mac * clock)
    assert maxq.energy_j.conv_per_mac < maxn.energy_j.conv_per_mac  # lower voltage
    assert maxq.energy_j.static_power_w < maxn.energy_j.static_power_w
    latency_n, energy_n = _total("resnet50", "tx2", mode="tensorrt", power_mode="MAXN")
    latency_q, energy_q = _total("resnet50", "tx2", mode="tensorrt", power_mode="MAXQ")
    assert latency_q > 1.2 * latency_n and energy_q < energy_n


def test_gated_sms_slow_a_mode_down_beyond_its_clock() -> None:
    xavier = sp.load_board("agx-xavier")
    ten = configure(xavier, mode="tensorrt", power_mode="MODE_10W")
    clock = xavier.power_modes["MAXN"].gpu_clock_hz / xavier.power_modes["MODE_10W"].gpu_clock_hz
    assert ten.latency_s.conv_per_mac == pytest.approx(xavier.latency_s.conv_per_mac * clock * 2)
    assert ten.latency_s.concurrent_tiles == xavier.latency_s.concurrent_tiles // 2


def test_large_batches_run_faster_per_image_than_batch_one() -> None:
    per_image_1 = _total("resnet50", "agx-xavier", 1, mode="tensorrt", precision="fp16")[0]
    per_image_32 = _total("resnet50", "agx-xavier", 32, mode="tensorrt", precision="fp16")[0] / 32
    assert per_image_32 < 0.8 * per_image_1


def test_tiles_and_waves_charge_a_layer_that_leaves_sms_idle() -> None:
    model = configure(sp.load_board("agx-orin"), mode="tensorrt").latency_s
    small = model.tiled_factor("conv", macs=49 * 64 * 576, kernels=64, shape=(1, 49, 64))
    big = model.tiled_factor("conv", macs=6272 * 512 * 4608, kernels=512, shape=(1, 6272, 512))
    assert small > 1.2 and big == pytest.approx(1.0, abs=0.05)
    assert gemm_shape("conv", [(8, 64, 7, 7)]) == (1, 392, 64)
    assert gemm_shape("matmul", [(2, 12, 197, 64)]) == (24, 197, 64)


def test_schema_two_profiles_still_price_as_before() -> None:
    old = sp.load_board(Path(__file__).resolve().parent / "tx2_schema2.toml")  # the 0.1 TX2 profile
    assert old.schema_version == 2 and old.latency_s.concurrent_tiles == 0
    graph = sp.annotate(_graph("resnet18"), configure(old, mode="graph"))
    for attrs in graph.nodes.values():
        if attrs["kind"] == "conv":
            expected = configure(old, mode="graph").latency_s.work_cost(
                "conv", macs=attrs["macs"], mem_bytes=attrs["mem_bytes"], kernels=attrs["kernels"]
            )
            assert attrs["latency_s"] == pytest.approx(expected)


def test_hardware_tables_need_schema_three(tmp_path: Path) -> None:
    text = (Path(sp.__file__).parent.parent / "configs" / "boards" / "tx2.toml").read_text()
    bad = tmp_path / "old.toml"
    bad.write_text(text.replace("schema_version = 3", "schema_version = 2"))
    with pytest.raises(ConfigError, match="need schema_version 3"):
        sp.load_board(bad)


def test_network_fit_on_published_tx2_rows_predicts_held_out_networks() -> None:
    from splitprune.calibrate.netfit import fit_networks, free_coefficients
    from splitprune.calibrate.published import read_networks

    rows = [r for r in read_networks(SHARED) if r.board == "jetson-tx2"]
    assert len(rows) == 6 and free_coefficients(rows) == ["compute", "fp16_efficiency", "kernel_overhead"]
    fit = fit_networks(sp.load_board("configs/boards/base/tx2.toml"), rows)
    summary = fit.summary()
    assert summary["loo_latency_mape"] < 0.30 and summary["loo_energy_mape"] < 0.35
    assert set(summary["loo_latency_error"]) == {r.label for r in rows}


def test_network_fit_refuses_rows_that_cannot_hold_one_out() -> None:
    from splitprune.calibrate.netfit import fit_networks
    from splitprune.calibrate.published import NetworkRow
    from splitprune.errors import DataError

    row = NetworkRow(2, "b", None, "tensorrt", "fp32", 1, "torchvision:resnet18", 224, 0.01, None, "")
    with pytest.raises(DataError, match="cannot support a fit with a held-out check"):
        fit_networks(sp.load_board("tx2"), [row, row])


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "splitprune", *args], capture_output=True, text=True, timeout=300, check=False
    )


def test_estimate_tensorrt_json_names_each_nodes_kernel() -> None:
    done = _cli(
        "estimate",
        "torchvision:resnet18",
        "--board",
        "xavier-nx",
        "--mode",
        "tensorrt",
        "--precision",
        "int8",
        "--batch",
        "4",
        "--power-mode",
        "MODE_10W_4CORE",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert (doc["mode"], doc["precision"], doc["power_mode"]) == ("tensorrt", "int8", "MODE_10W_4CORE")
    kernels = {row["kernel"] for row in doc["layers"] if row["kernel"]}
    assert doc["gpu_kernels"] == len(kernels) < len(doc["layers"]) / 2
    assert doc["input_shape"] == [4, 3, 224, 224]


def test_estimate_every_power_mode_names_the_cheapest_and_the_deadline_pick() -> None:
    done = _cli(
        "estimate",
        "torchvision:resnet18",
        "--board",
        "tx2",
        "--mode",
        "tensorrt",
        "--power-mode",
        "all",
        "--deadline-ms",
        "8",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    rows = {r["power_mode"]: r for r in doc["power_modes"]}
    assert set(rows) == set(sp.load_board("tx2").power_modes)
    assert doc["least_energy"] == min(rows, key=lambda m: rows[m]["energy_j"])
    meeting = [m for m, r in rows.items() if r["latency_s"] <= 0.008]
    assert doc["least_energy_meeting_deadline"] == (
        min(meeting, key=lambda m: rows[m]["energy_j"]) if meeting else None
    )


def test_unknown_power_mode_is_one_line_exit_2() -> None:
    done = _cli("estimate", "torchvision:resnet18", "--board", "tx2", "--power-mode", "TURBO", "--json")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().count("\n") == 0 and "has no power mode 'TURBO'" in done.stderr


def test_calibrate_and_validate_networks_from_the_console(tmp_path: Path) -> None:
    out = tmp_path / "tx2.toml"
    done = _cli(
        "calibrate",
        "--networks",
        str(SHARED),
        "--board",
        "tx2",
        "--board-filter",
        "jetson-tx2",
        "--out",
        str(out),
        "--json",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rows"] == 6
    profile = sp.load_board(out)
    assert "fitted to 6 whole-network rows" in profile.provenance.values["latency_s.conv_per_mac"]
    done = _cli(
        "validate", "--networks", str(SHARED), "--board", str(out), "--board-filter", "jetson-tx2", "--json"
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert len(doc["rows"]) == 6 and doc["latency_mape"] < 0.25


def test_split_under_tensorrt_prices_the_chosen_cut_with_its_fusion_broken() -> None:
    done = _cli("split", "torchvision:mobilenet_v2", "--board", "tx2", "--link", "5g", "--mode", "tensorrt",
                "--precision", "fp16", "--rate-bps", "2e7", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    device = {n["name"] for n in doc["nodes"] if n["placement"] == "device"}
    profile = configure(sp.load_board("tx2"), mode="tensorrt", precision="fp16")
    graph = sp.annotate(_graph("mobilenet_v2"), profile, boundary=device)
    reported = {n["name"]: n["energy_j"] for n in doc["nodes"]}
    assert all(reported[name] == pytest.approx(graph.nodes[name]["energy_j"]) for name in graph.order)


def test_eager_host_time_per_inference_follows_the_cpu_clock_and_stays_out_of_graphs() -> None:
    profile = sp.load_board("orin-nano")
    host_s = profile.latency_s.per_inference
    assert host_s > 0  # the fleet fit's eager per-inference host time
    fitted = profile.power_modes[profile.board.power_mode].cpu_clock_hz
    slow = configure(profile, mode="eager", power_mode="7W")
    ratio = fitted / profile.power_modes["7W"].cpu_clock_hz
    assert slow.latency_s.per_inference == pytest.approx(host_s * ratio, rel=1e-9)
    assert configure(profile, mode="graph").latency_s.per_inference == 0.0
    trt = configure(profile, mode="tensorrt", precision="fp16").latency_s.per_inference
    assert trt == pytest.approx(profile.runtimes["tensorrt"].per_inference_s, rel=1e-9)
