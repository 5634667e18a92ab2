"""The shipped evidence (data/), the rows' launch and clocks, and the fit shared across Jetson boards."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

import splitprune as sp
from splitprune.calibrate.fleet import (
    REF_CPU_HZ,
    FleetRow,
    eager_per_inference_s,
    fit_fleet,
    fleet_features,
    predict,
    with_row_clocks,
)
from splitprune.calibrate.published import read_networks
from splitprune.deploy import configure
from splitprune.models import load_model

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data" / "jetson_published"
BASES = {"jetson-tx2": "tx2", "jetson-agx-xavier": "agx_xavier"}
FLEET_PROFILES = ("xavier-nx", "agx-orin", "orin-nano", "orin-nx", "orin-nx-8gb")


def test_the_shipped_data_parse_and_match_their_readme_digests():
    readme = (REPO / "data" / "README.md").read_text()
    for path in sorted(REPO.glob("data/*/*.csv")):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        assert digest in readme, path.name
    old, orin = read_networks(DATA / "networks.csv"), read_networks(DATA / "networks_orin.csv")
    assert len(old) >= 100 and len(orin) == 63
    assert {r.board for r in orin} == {"jetson-agx-orin", "jetson-xavier-nx", "jetson-agx-xavier",
                                       "jetson-orin-nano", "jetson-orin-nx"}  # fmt: skip
    assert all(r.latency_s > 0 for r in old + orin)


def test_rows_carry_their_launch_and_stated_clocks():
    rows = read_networks(DATA / "networks_orin.csv")
    mlperf = [r for r in rows if "mlcommons" in r.source]
    lwis = [r for r in mlperf if "Triton" not in r.source]
    assert lwis and all(r.launch == "cuda-graph" for r in lwis)
    assert all(r.launch is None for r in mlperf if "Triton" in r.source)
    yolo = [r for r in rows if r.model.startswith("ultralytics:")]
    assert len(yolo) == 40 and {r.launch for r in yolo if r.mode == "tensorrt"} == {"enqueue"}
    assert {r.mode for r in yolo} == {"tensorrt", "eager"}
    assert {r.precision for r in yolo} == {"fp32", "fp16", "int8"}
    maxq = next(r for r in rows if r.board == "jetson-agx-orin" and r.clocks and r.clocks.cpu_cores == 2)
    assert maxq.clocks.gpu_clock_hz == pytest.approx(930.75e6)
    assert maxq.clocks.emc_clock_hz == pytest.approx(3199e6)
    assert maxq.clocks.cpu_clock_hz == pytest.approx(1036.8e6)
    xavier = next(r for r in rows if r.board == "jetson-agx-xavier" and r.clocks)
    assert xavier.clocks.gpu_clock_hz == pytest.approx(675.75e6) and xavier.clocks.cpu_cores == 2
    assert {r.power_mode for r in mlperf if r.clocks is None} == {None, "MAXN"}  # MaxP runs: the board's top


def test_a_row_is_priced_at_its_own_clocks():
    rows = read_networks(DATA / "networks_orin.csv")
    row = next(r for r in rows if r.clocks and r.board == "jetson-agx-orin")
    profile, mode = with_row_clocks(sp.load_board("agx-orin"), row)
    assert profile.power_modes[mode].gpu_clock_hz == row.clocks.gpu_clock_hz
    fast = configure(profile, mode="tensorrt", precision="int8").latency_s.static_per_layer
    slow = configure(profile, mode="tensorrt", precision="int8", power_mode=mode).latency_s
    assert slow.static_per_layer / fast == pytest.approx(
        profile.power_modes["MAXN"].gpu_clock_hz / row.clocks.gpu_clock_hz
    )


@pytest.fixture(scope="module")
def small_fleet() -> list[FleetRow]:
    """MLPerf ResNet-50 int8 rows of three boards and the TX2 rows: cheap torchvision networks only."""
    import sys

    sys.path.insert(0, str(REPO / "benchmarks"))
    import jetson_profiles as jp

    wanted = ("tx2", "xavier_nx", "agx_orin")
    rows = [(key, base, row) for key, base, row in jp.fleet_rows()
            if key in wanted and not row.model.startswith("ultralytics:")]  # fmt: skip
    features, skipped = fleet_features(rows, cpu_of=jp.CPU_ARCH, gpu_of=jp.GPU_ARCH)
    assert not skipped or all("launched" in why for why in skipped.values())
    return features


def test_the_shared_fit_is_reproducible_and_holds_networks_out(small_fleet: list[FleetRow]):
    first, again = fit_fleet(small_fleet), fit_fleet(list(reversed(small_fleet)))
    assert {"compute_efficiency", "memory_efficiency", "kernel_cycles.cuda-graph"} <= set(first.coefficients)
    for name, value in first.coefficients.items():
        assert again.coefficients[name] == pytest.approx(value, rel=1e-6), name
    assert len(first.loo_error) == len(small_fleet)
    train = [abs(e) for e in first.train_error]
    assert sum(train) / len(train) < 0.25  # in-sample MAPE bound of the shared physics on these rows
    groups = first.groups()
    assert "agx_orin tensorrt int8 cuda-graph" in groups and all(g["rows"] >= 1 for g in groups.values())


def test_clock_drops_slow_the_predicted_row(small_fleet: list[FleetRow]):
    fit = fit_fleet(small_fleet)
    orin = [r for r in small_fleet if r.board == "agx_orin" and r.row.batch == 1]
    maxn = [r for r in orin if r.row.clocks is None]
    maxq = [r for r in orin if r.row.clocks is not None]
    assert maxn and maxq
    assert min(predict(r, fit.coefficients) for r in maxq) > max(predict(r, fit.coefficients) for r in maxn)


def test_eager_rows_pay_the_host_time_per_inference_at_their_cpu_clock(small_fleet: list[FleetRow]):
    from dataclasses import replace

    fleet = small_fleet[0]
    eager = replace(fleet.features, row=replace(fleet.row, mode="eager", launch=None))
    slow_cpu = replace(fleet, features=eager, cpu="a78ae", cpu_clock_hz=1.0e9)
    fast_cpu = replace(slow_cpu, cpu_clock_hz=2.0e9)
    coef = {"launch_floor.a78ae": 0.5, "per_inference_s.eager": 1e-3}
    more = {**coef, "per_inference_s.eager": 3e-3}
    host = predict(slow_cpu, more) - predict(slow_cpu, coef)
    assert host == pytest.approx(2e-3 * 0.5 * REF_CPU_HZ / 1.0e9, rel=1e-6)
    assert predict(fast_cpu, more) - predict(fast_cpu, coef) == pytest.approx(host / 2, rel=1e-6)
    assert predict(fleet, more) == pytest.approx(predict(fleet, coef), rel=1e-12)  # TensorRT rows: untouched


@pytest.mark.parametrize("name", FLEET_PROFILES)
def test_fleet_profiles_load_and_follow_their_stated_coefficients(name: str):
    profile = sp.load_board(name)
    arch = "volta" if name == "xavier-nx" else "ampere"
    coef = {k.removesuffix(f".{arch}"): v for k, v in profile.fit_quality["fleet_coefficients"].items()}
    device, mode = profile.device, profile.power_modes[profile.board.power_mode]
    peak = device.sm_count * device.peak_macs_per_clock_per_sm("fp32") * mode.gpu_clock_hz
    on_tensor = "fp32" in device.tensor_core_macs_per_clock_per_sm
    tf32 = coef.get("efficiency.fp32.tensor", 1.0) if on_tensor else 1.0
    efficiency = coef["compute_efficiency"] * tf32
    assert profile.latency_s.conv_per_mac == pytest.approx(1 / (peak * efficiency), rel=1e-9)
    eager_s = coef["kernel_cycles.eager"] / mode.gpu_clock_hz
    assert profile.latency_s.static_per_layer == pytest.approx(eager_s, rel=1e-9)
    trt = profile.runtimes["tensorrt"]
    assert trt.kernel_overhead_s == pytest.approx(coef["kernel_cycles.enqueue"] / mode.gpu_clock_hz, rel=1e-9)
    assert trt.launch["cuda-graph"].kernel_overhead_s == pytest.approx(
        coef["kernel_cycles.cuda-graph"] / mode.gpu_clock_hz, rel=1e-9
    )
    floor_note = profile.provenance.values["latency_s.launch_floor"]
    cpus = [k.removeprefix("launch_floor.") for k in coef if k.startswith("launch_floor.")]
    cpu = next(c for c in cpus if f"with {c} cores" in floor_note)
    host_s = eager_per_inference_s(coef, cpu, mode.cpu_clock_hz)
    assert profile.latency_s.per_inference == pytest.approx(host_s, rel=1e-9) and host_s > 0
    assert configure(profile, mode="graph").latency_s.per_inference == 0.0
    trt_launch = configure(profile, mode="tensorrt", precision="fp16").latency_s.per_inference
    assert trt_launch == pytest.approx(trt.per_inference_s, rel=1e-9)
    int8 = coef["efficiency.int8.tensor"] / tf32
    assert profile.precisions["int8"].efficiency == pytest.approx(int8, rel=1e-9)
    sources = " ".join(profile.provenance.sources)
    for path in sorted(DATA.glob("*.csv")):
        assert hashlib.sha256(path.read_bytes()).hexdigest()[:12] in sources
    assert all(re.search(r"fitted jointly|derived|datasheet|assumption|prior|tile|same|0", v)
               for v in profile.provenance.values.values())  # fmt: skip


def test_orin_nx_variants_differ_by_their_datasheets():
    nx16, nx8 = sp.load_board("orin-nx"), sp.load_board("orin-nx-8gb")
    assert nx16.device.sm_count == nx8.device.sm_count == 8
    assert nx16.power_modes["MAXN"].gpu_clock_hz > nx8.power_modes["MAXN"].gpu_clock_hz
    assert nx16.power_modes["MAXN"].cpu_cores == 8 and nx8.power_modes["MAXN"].cpu_cores == 6
    import torch

    graph = sp.trace(load_model("torchvision:resnet18", device="meta").module,
                     torch.empty((1, 3, 224, 224), device="meta"))  # fmt: skip
    fast = sp.annotate(graph, configure(nx16, mode="tensorrt", precision="fp16")).total_latency_s
    slow = sp.annotate(graph, configure(nx8, mode="tensorrt", precision="fp16")).total_latency_s
    assert slow > fast
