"""Write the shipped Jetson profiles: datasheet bases, fits to published networks, derived siblings.

    python benchmarks/jetson_profiles.py          # rewrites configs/boards/{tx2,agx_xavier,...}.toml

1. A *base* per board from datasheet figures and NVIDIA's stock nvpmodel tables (sources below), with
   priors for what the datasheet does not give (efficiencies, kernel overhead, static power).
2. Boards with published measurements in data/jetson_published (TX2, AGX Xavier, Nano) are
   fitted with `splitprune calibrate --networks` (provenance then names the rows).
3. Siblings without measurements take the fitted sibling's efficiencies on their own device
   (Xavier NX <- AGX Xavier, same Volta GPU; AGX Orin and Orin Nano <- AGX Xavier's efficiencies on
   the Ampere rates), stated as derived.
Prints JSON with each profile's leave-one-network-out errors.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import tomllib

from splitprune.board import BoardProfile
from splitprune.calibrate.fleet import (
    PRIOR,
    REF_CPU_HZ,
    FleetFit,
    FleetRow,
    eager_per_inference_s,
    fit_fleet,
    fleet_features,
    with_row_clocks,
)
from splitprune.calibrate.netfit import _fit_energy, _prior, predict_energy, row_features
from splitprune.calibrate.published import NetworkRow, read_networks
from splitprune.hardware import RuntimeSpec

ROOT = Path(__file__).resolve().parent.parent
BOARDS = ROOT / "configs" / "boards"
PUBLISHED = ROOT / "data" / "jetson_published" / "networks.csv"
PUBLISHED_FILES = (PUBLISHED, ROOT / "data" / "jetson_published" / "networks_orin.csv")
FLEET_BOARDS = {"jetson-tx2": "tx2", "jetson-nano": "nano", "jetson-agx-xavier": "agx_xavier",
                "jetson-xavier-nx": "xavier_nx", "jetson-agx-orin": "agx_orin", "jetson-orin-nano": "orin_nano",
                "jetson-orin-nx": "orin_nx"}
"""Board names of the published files -> profile keys (the Orin NX rows are a 16GB reComputer J4012)."""
CPU_ARCH = {"tx2": "denver2_a57", "nano": "a57", "agx_xavier": "carmel", "xavier_nx": "carmel",
            "agx_orin": "a78ae", "orin_nano": "a78ae", "orin_nx": "a78ae", "orin_nx_8gb": "a78ae"}
"""CPU core type per board (datasheets): eager dispatch per clock is shared by boards with the same cores."""
GPU_ARCH = {"tx2": "pascal", "nano": "maxwell", "agx_xavier": "volta", "xavier_nx": "volta",
            "agx_orin": "ampere", "orin_nano": "ampere", "orin_nx": "ampere", "orin_nx_8gb": "ampere"}
"""GPU architecture per board (datasheets): tensor-core efficiencies are shared within one."""
FLEET_WRITTEN = ("xavier_nx", "agx_orin", "orin_nano", "orin_nx", "orin_nx_8gb")
"""Profiles written from the shared fit (tx2, agx_xavier and nano keep their own network fits)."""

NVP = {
    "tx2": "NVIDIA nvpmodel_t186.conf (L4T 28.x/32.x; GitHub LineageOS/android_device_nvidia_quill nvpmodel/nvpmodel_t186.conf; JetsonHacks 'NVPModel - NVIDIA Jetson TX2')",
    "nano": "NVIDIA nvpmodel_t210_jetson-nano.conf (L4T 32.x; Jetson Nano L4T Developer Guide 'Supported Modes and Power Efficiency')",
    "agx_xavier": "NVIDIA nvpmodel_t194.conf (GitHub LineageOS/android_device_nvidia_galen nvpmodel/nvpmodel_t194.conf; L4T Developer Guide AGX Xavier power-mode table)",
    "xavier_nx": "NVIDIA nvpmodel_t194_p3668.conf (L4T 35 / JetPack 5; public copy in GitHub dev10110/gatekeeper-exp-xavier nvpmodel.conf)",
    "agx_orin": "NVIDIA nvpmodel_p3701_0000.conf (GitHub LineageOS/android_device_nvidia_concord; matches jetson_clocks --show dumps of AGX Orin 64GB)",
    "orin_nano": "NVIDIA nvpmodel_p3767_0003_super.conf (JetPack 6.2 'Super'; GitHub LineageOS/android_device_nvidia_concord)",
    "orin_nx": "NVIDIA Jetson Linux Developer Guide r35.x/r36.x 'Supported Modes and Power Efficiency', Orin NX 16GB (p3767-0000): MAXN = GPU 918 MHz, 8 CPU cores at 1984 MHz, EMC 3199 MHz; JetPack 6.2 MAXN_SUPER: GPU 1173 MHz. Other modes: read the board's own /etc/nvpmodel.conf",
    "orin_nx_8gb": "NVIDIA Jetson Linux Developer Guide r35.x/r36.x 'Supported Modes and Power Efficiency', Orin NX 8GB (p3767-0001): MAXN = GPU 765 MHz, 6 CPU cores at 1984 MHz, EMC 3199 MHz; JetPack 6.2 MAXN_SUPER: GPU 1173 MHz. Other modes: read the board's own /etc/nvpmodel.conf",
}

# name: (board name, sm, cuda MAC/clk/SM, tensor MAC/clk/SM, gpu max Hz, bandwidth B/s, idle W,
#        base mode, modes {name: (id, aliases, gpu Hz, emc Hz, cpu Hz, cores, sms or None, budget W)},
#        device source, fitted-from filter or None)
SPECS = {
    "tx2": ("NVIDIA Jetson TX2", 2, {"fp32": 128, "fp16": 256}, {}, 1.3005e9, 59.7e9, 2.0, "MAXN", {
        "MAXN": (0, ["MAX-N"], 1.3005e9, 1.866e9, 2.0352e9, 6, None, None),
        "MAXQ": (1, ["MAX-Q"], 0.85e9, 1.3312e9, 1.2e9, 4, None, 7.5),
        "MAXP_CORE_ALL": (2, ["MAXP", "MAX-P"], 1.12e9, 1.6e9, 1.4e9, 6, None, 15.0),
        "MAXP_CORE_ARM": (3, [], 1.12e9, 1.6e9, 2.0e9, 4, None, 15.0),
        "MAXP_CORE_DENVER": (4, [], 1.12e9, 1.6e9, 2.0352e9, 2, None, 15.0),
    }, "Jetson TX2 datasheet DA-08636 (256-core Pascal GPU, 8 GB 128-bit LPDDR4), deviceQuery (2 SMs x 128 cores, CC 6.2); Pascal GP10B runs fp16 at twice the fp32 rate and has no fast int8 (no DP4A in cuDNN/TensorRT on sm_62)", "jetson-tx2"),
    "nano": ("NVIDIA Jetson Nano", 1, {"fp32": 128, "fp16": 256}, {}, 0.9216e9, 25.6e9, 1.5, "MAXN", {
        "MAXN": (0, ["10W", "MAX-N"], 0.9216e9, 1.6e9, 1.479e9, 4, None, 10.0),
        "5W": (1, ["MAXQ"], 0.64e9, 1.6e9, 0.918e9, 2, None, 5.0),
    }, "Jetson Nano datasheet DA-09366 (128-core Maxwell GPU at 921 MHz, 4 GB 64-bit LPDDR4 25.6 GB/s); fp16 at twice the fp32 rate (T210)", "jetson-nano"),
    "agx_xavier": ("NVIDIA Jetson AGX Xavier", 8, {"fp32": 64, "fp16": 128}, {"fp16": 512, "int8": 1024}, 1.377e9, 136.5e9, 5.0, "MAXN", {
        "MAXN": (0, ["MAX-N"], 1.377e9, 2.133e9, 2.2656e9, 8, None, None),
        "MODE_10W": (1, ["10W", "MAXQ"], 0.52e9, 1.0656e9, 1.2e9, 2, 4, 10.0),
        "MODE_15W": (2, ["15W"], 0.67e9, 1.3312e9, 1.2e9, 4, None, 15.0),
        "MODE_30W_ALL": (3, ["30W", "MAXP"], 0.9e9, 1.6e9, 1.2e9, 8, None, 30.0),
        "MODE_30W_6CORE": (4, [], 0.9e9, 1.6e9, 1.45e9, 6, None, 30.0),
        "MODE_30W_4CORE": (5, [], 0.9e9, 1.6e9, 1.78e9, 4, None, 30.0),
        "MODE_30W_2CORE": (6, [], 0.9e9, 1.6e9, 2.1e9, 2, None, 30.0),
    }, "deviceQuery (8 SMs x 64 cores, CC 7.2), 8 Volta tensor cores per SM at 64 fp16 FMA per clock (int8 twice that), 256-bit LPDDR4x at 2133 MHz (136.5 GB/s)", "jetson-agx-xavier"),
    "xavier_nx": ("NVIDIA Jetson Xavier NX", 6, {"fp32": 64, "fp16": 128}, {"fp16": 512, "int8": 1024}, 1.10925e9, 59.7e9, 4.0, "MODE_20W_6CORE", {
        "MODE_15W_2CORE": (0, [], 1.10925e9, 1.6e9, 1.9072e9, 2, None, 15.0),
        "MODE_15W_4CORE": (1, [], 1.10925e9, 1.6e9, 1.4208e9, 4, None, 15.0),
        "MODE_15W_6CORE": (2, ["15W"], 1.10925e9, 1.6e9, 1.4208e9, 6, None, 15.0),
        "MODE_10W_2CORE": (3, [], 0.80325e9, 1.6e9, 1.4976e9, 2, None, 10.0),
        "MODE_10W_4CORE": (4, ["10W", "MAXQ"], 0.80325e9, 1.6e9, 1.1904e9, 4, None, 10.0),
        "MODE_10W_DESKTOP": (5, [], 0.51e9, 1.6e9, 1.9072e9, 4, None, 10.0),
        "MODE_20W_2CORE": (6, [], 1.10925e9, 1.866e9, 1.9072e9, 2, None, 20.0),
        "MODE_20W_4CORE": (7, [], 1.10925e9, 1.866e9, 1.4208e9, 4, None, 20.0),
        "MODE_20W_6CORE": (8, ["20W", "MAXN"], 1.10925e9, 1.866e9, 1.4208e9, 6, None, 20.0),
    }, "Xavier NX datasheet (384-core Volta GPU with 48 tensor cores = 6 SMs, 1100 MHz; 128-bit LPDDR4x, 1866 MHz EMC in the 20 W modes = 59.7 GB/s); per-SM rates as AGX Xavier (same GV10B SM)", None),
    "agx_orin": ("NVIDIA Jetson AGX Orin 64GB", 16, {"fp32": 128, "fp16": 256}, {"fp32": 512, "fp16": 1024, "int8": 2048}, 1.3005e9, 204.8e9, 8.0, "MAXN", {
        "MAXN": (0, ["MAX-N"], 1.3005e9, 3.199e9, 2.2016e9, 12, None, None),
        "MODE_15W": (1, ["15W", "MAXQ"], 0.408e9, 2.133e9, 1.1136e9, 4, 6, 15.0),
        "MODE_30W": (2, ["30W"], 0.612e9, 3.199e9, 1.728e9, 8, 8, 30.0),
        "MODE_50W": (3, ["50W", "MAXP"], 0.816e9, 3.199e9, 1.4976e9, 12, None, 50.0),
    }, "Jetson AGX Orin datasheet DS-10662 (2048 CUDA cores = 16 Ampere SMs, 64 tensor cores; 5.32 TFLOPS fp32, 170 sparse int8 TOPS = 85 dense -> 512 int8 MAC/clk per tensor core, 256 fp16; 256-bit LPDDR5 204.8 GB/s)", None),
    "orin_nano": ("NVIDIA Jetson Orin Nano 8GB", 8, {"fp32": 128, "fp16": 256}, {"fp32": 512, "fp16": 1024, "int8": 2048}, 1.02e9, 102.4e9, 3.0, "MAXN_SUPER", {
        "15W": (0, [], 0.612e9, 2.133e9, 1.4976e9, 6, None, 15.0),
        "25W": (1, ["MAXP"], 0.918e9, 3.199e9, 1.344e9, 6, None, 25.0),
        "MAXN_SUPER": (2, ["MAXN", "MAX-N"], 1.02e9, 3.199e9, 1.728e9, 6, None, None),
        "7W": (3, ["MAXQ"], 0.408e9, 2.133e9, 0.96e9, 4, None, 7.0),
    }, "Jetson Orin Nano datasheet v1.1 (1024 CUDA cores = 8 Ampere SMs, 32 tensor cores, 20 dense int8 TOPS at 625 MHz; 128-bit LPDDR5); JetPack 6.2 Super clocks (GPU 1020 MHz, 102 GB/s)", None),
    "orin_nx": ("NVIDIA Jetson Orin NX 16GB", 8, {"fp32": 128, "fp16": 256}, {"fp32": 512, "fp16": 1024, "int8": 2048}, 1.173e9, 102.4e9, 4.0, "MAXN", {
        "MAXN": (0, ["MAX-N"], 0.918e9, 3.199e9, 1.9840e9, 8, None, None),
        "MAXN_SUPER": (None, ["SUPER"], 1.173e9, 3.199e9, 1.9840e9, 8, None, None),
    }, "Jetson Orin NX Series datasheet DS-10712 (16GB: 1024 CUDA cores = 8 Ampere SMs, 32 tensor cores, GPU 918 MHz, 8-core Arm A78AE, 128-bit LPDDR5 102.4 GB/s); per-SM tensor rates as the AGX Orin (same GA10B SM)", "jetson-orin-nx"),
    "orin_nx_8gb": ("NVIDIA Jetson Orin NX 8GB", 8, {"fp32": 128, "fp16": 256}, {"fp32": 512, "fp16": 1024, "int8": 2048}, 1.173e9, 102.4e9, 4.0, "MAXN", {
        "MAXN": (0, ["MAX-N"], 0.765e9, 3.199e9, 1.9840e9, 6, None, None),
        "MAXN_SUPER": (None, ["SUPER"], 1.173e9, 3.199e9, 1.9840e9, 6, None, None),
    }, "Jetson Orin NX Series datasheet DS-10712 (8GB: 1024 CUDA cores = 8 Ampere SMs, 32 tensor cores, GPU 765 MHz, 6-core Arm A78AE, 128-bit LPDDR5 102.4 GB/s); per-SM tensor rates as the AGX Orin (same GA10B SM)", None),
}

PRIOR_EFFICIENCY = 0.6
PRIOR_MEMORY_EFFICIENCY = 0.6
VOLTAGE_FLOOR = 0.67


def _q(text: str) -> str:
    return json.dumps(text)


def base_toml(key: str, *, compute_eff: float = PRIOR_EFFICIENCY, fp16_eff: float = 1.0,
              overhead_s: float = 5e-6, enqueue_s: float = 5e-5, static_w: float | None = None,
              e_mac: float | None = None, e_byte: float | None = None, floor_s: float | None = None,
              derived_from: str = "", mem_eff: float = PRIOR_MEMORY_EFFICIENCY, int8_eff: float | None = None,
              graph: tuple[float, float, str] | None = None, notes: dict[str, str] | None = None,
              kind: str = "derived", header: str = "", extra_sources: list[str] | None = None,
              trt_overhead_s: float | None = None, eager_per_inference_s: float = 0.0) -> str:
    name, sms, cuda, tensor, fmax, bw, idle, mode, modes, device_src, _ = SPECS[key]
    base = modes[mode]
    peak = sms * max(cuda["fp32"], tensor.get("fp32", 0)) * base[2]
    conv = 1.0 / (peak * compute_eff)
    mem = 1.0 / (bw * base[3] / max(m[3] for m in modes.values()) * mem_eff)
    static_w = static_w if static_w is not None else idle + 2.0 * sms ** 0.5
    e_mac = e_mac if e_mac is not None else (static_w - idle) * conv
    e_byte = e_byte if e_byte is not None else (static_w - idle) * mem
    floor_s = floor_s if floor_s is not None else 1.05e-4 * 2.2656e9 / max(m[4] for m in modes.values())
    lines = [
        *(header.splitlines() or [
            f"# {name}: DERIVED base profile (datasheet + nvpmodel tables + stated priors), written by",
            "# benchmarks/jetson_profiles.py; boards with published measurements are then fitted to them."]),
        "schema_version = 3", "", "[board]", f"name = {_q(name)}", f"power_mode = {_q(mode)}",
        'precision = "fp32"', 'framework = "pytorch, tensorrt"', 'device = "cuda"', "",
        "[energy_j]", f"static_power_w = {static_w!r}", f"conv_per_mac = {e_mac!r}",
        "conv_kernel_granularity = 64", f"linear_per_mac = {e_mac!r}", f"memory_per_byte = {e_byte!r}",
        "static_per_layer = 0.0", "", "[latency_s]", f"conv_per_mac = {conv!r}",
        "conv_kernel_granularity = 64", "tile_rows = 64", f"concurrent_tiles = {2 * sms}",
        f"linear_per_mac = {conv!r}", f"memory_per_byte = {mem!r}", f"static_per_layer = {overhead_s!r}",
        "network_per_op = 0.0", *([f"per_inference = {eager_per_inference_s!r}"] if eager_per_inference_s else []),
        "", "[latency_s.launch_floor]", f"default = {floor_s!r}", "",
        "[device]", f"sm_count = {sms}",
        "macs_per_clock_per_sm = { " + ", ".join(f"{k} = {v}" for k, v in cuda.items()) + " }",
        "tensor_core_macs_per_clock_per_sm = { " + ", ".join(f"{k} = {v}" for k, v in tensor.items()) + " }",
        f"gpu_max_clock_hz = {fmax!r}", f"gpu_voltage_floor = {VOLTAGE_FLOOR}", f"idle_power_w = {idle!r}",
        f"memory_bandwidth_bps = {bw!r}", "",
    ]
    for mname, (mid, aliases, gpu, emc, cpu, cores, msms, budget) in modes.items():
        lines += [f"[power_modes.{mname}]"] + ([f"nvpmodel_id = {mid}"] if mid is not None else []) + [
                  f"aliases = {json.dumps(aliases)}",
                  f"gpu_clock_hz = {gpu!r}", f"emc_clock_hz = {emc!r}", f"cpu_clock_hz = {cpu!r}",
                  f"cpu_cores = {cores}"]
        lines += [f"sm_count = {msms}"] if msms else []
        lines += [f"power_budget_w = {budget!r}"] if budget else []
        lines.append("")
    lines += ["[precisions.fp16]", f"efficiency = {fp16_eff!r}", ""]
    if "int8" in tensor:
        lines += ["[precisions.int8]", f"efficiency = {int8_eff if int8_eff is not None else fp16_eff!r}", ""]
    lines += ["[runtimes.tensorrt]", f"per_inference_s = {enqueue_s!r}"]
    lines += [f"kernel_overhead_s = {trt_overhead_s!r}", ""] if trt_overhead_s is not None else [""]
    if graph is not None and "launch" in RuntimeSpec.model_fields:
        lines += ['[runtimes.tensorrt.launch.cuda-graph]', f"per_inference_s = {graph[0]!r}",
                  f"kernel_overhead_s = {graph[1]!r}", f"source = {_q(graph[2])}", ""]
    prior = derived_from or "prior (assumption, not measured)"
    values = {
        "latency_s.conv_per_mac": f"{prior}: 1 / (fp32 peak {peak:.4g} MAC/s x efficiency {compute_eff:.3g})",
        "latency_s.linear_per_mac": "same slope as latency_s.conv_per_mac (the same cores; a batch-1 FC layer is bound by its weight bytes through the roofline)",
        "latency_s.memory_per_byte": f"{prior}: 1 / (bandwidth {bw:.4g} B/s x {PRIOR_MEMORY_EFFICIENCY} efficiency)",
        "latency_s.static_per_layer": f"{prior}: GPU time of a kernel apart from its work, {overhead_s:.3g} s",
        "latency_s.conv_kernel_granularity": "assumption: thread-block tiles of 64 output channels (cuDNN/TensorRT implicit-GEMM tiles are 32-256 wide)",
        "latency_s.tile_rows": "assumption: thread-block tiles of 64 output pixels",
        "latency_s.concurrent_tiles": f"assumption: two 64x64 tiles resident per SM x {sms} SMs",
        "latency_s.launch_floor": "derived: eager PyTorch dispatch per op scaled by CPU clock from the AGX Xavier's 105 us (torch2trt PyTorch fp16 table), assumption: dispatch time scales with CPU clock",
        "latency_s.network_per_op": "0: the launch floor comes from whole networks",
        "energy_j.static_power_w": f"{prior}: module power while a network runs, apart from the work",
        "energy_j.conv_per_mac": f"{prior}: dynamic energy per MAC = (static power - idle) x time per MAC",
        "energy_j.linear_per_mac": "same as energy_j.conv_per_mac",
        "energy_j.memory_per_byte": f"{prior}: (static power - idle) x time per byte",
        "energy_j.static_per_layer": "0",
        "energy_j.conv_kernel_granularity": "same tile assumption as latency_s.conv_kernel_granularity",
        "device": f"{device_src}.{' tensor fp32 = TF32 at half the fp16 tensor rate (Ampere whitepaper; TensorRT and cuDNN run fp32 convolutions as TF32 by default).' if 'fp32' in tensor else ''} gpu_voltage_floor {VOLTAGE_FLOOR}: derived from NVIDIA's tegra210-dvfs.c GPU CVB table (Nano: ~772 mV intercept / 1150 mV at the top clock), assumed for the other Tegra GPUs. idle_power_w {idle}: assumption (no datasheet gives idle power)",
        "precisions.fp16": f"{prior}: fp16 reaches {fp16_eff:.3g} x the fp32 share of its peak",
        "runtimes.tensorrt": f"{prior}: enqueue {enqueue_s:.3g} s per inference",
    }
    values.update({f"power_modes.{m}": f"clock caps, cores and gated TPCs from {NVP[key]}" for m in modes})
    if "int8" in tensor:
        values["precisions.int8"] = "assumption: int8 reaches the fp16 share of its (tensor-core) peak"
    values.update(notes or {})
    lines += ["[provenance]", f"kind = {_q(kind)}",
              f"summary = {_q(f'{name}: GPU priced from its datasheet and nvpmodel tables. ' + (derived_from or 'Priors where the datasheet is silent.'))}",
              'replace_with = "python -m measure networks on the board, then splitprune calibrate --networks FILE --board THIS"',
              f"sources = {json.dumps([device_src, NVP[key], 'Lahmer et al., WiOpt 2022 (model structure)', *(extra_sources or [])])}",
              "", "[provenance.values]"]
    lines += [f"{_q(k)} = {_q(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def fit(key: str) -> dict:
    filt = SPECS[key][-1]
    base = BOARDS / "base" / f"{key}.toml"
    out = BOARDS / f"{key}.toml"
    done = subprocess.run(
        [sys.executable, "-m", "splitprune", "calibrate", "--networks", str(PUBLISHED), "--board", str(base),
         "--board-filter", filt, "--out", str(out), "--json"], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def fleet_rows() -> list[tuple[str, BoardProfile, NetworkRow]]:
    """Every GPU row of the shipped published files whose board has a profile, with its base profile."""
    bases = {k: BoardProfile.model_validate(tomllib.loads(base_toml(k))) for k in set(FLEET_BOARDS.values())}
    rows = []
    for path in PUBLISHED_FILES:
        for row in read_networks(path):
            if row.board in FLEET_BOARDS and row.precision in ("fp32", "fp16", "int8"):
                rows.append((FLEET_BOARDS[row.board], bases[FLEET_BOARDS[row.board]], row))
    return rows


def run_fleet() -> tuple[FleetFit, dict[str, list[FleetRow]]]:
    """The shared fit over every published row, and the rows by board."""
    features, skipped = fleet_features(fleet_rows(), cpu_of=CPU_ARCH, gpu_of=GPU_ARCH)
    fit = fit_fleet(features, skipped=skipped)
    by_board: dict[str, list[FleetRow]] = {}
    for r in features:
        by_board.setdefault(r.board, []).append(r)
    return fit, by_board


def _digest(path: Path) -> str:
    return f"{path.relative_to(ROOT)} (sha256 {hashlib.sha256(path.read_bytes()).hexdigest()[:12]})"


def fleet_energy(key: str, profile: BoardProfile, rows: list[FleetRow]) -> dict | None:
    """Static power and joules per MAC/byte fitted to the board's rows with power (None under two)."""
    power = [r for r in rows if r.row.energy_j is not None]
    if len(power) < 2:
        return None
    features = [row_features(*_priced(profile, r.row)) for r in power]
    energy = _fit_energy(features, _prior(profile))
    if energy is None:
        return None
    errors = {f"{f.row.label} (line {f.row.line})": predict_energy(f, energy, f.row.latency_s) / f.row.energy_j - 1.0 for f in features}
    return {"coefficients": energy, "rows": [f"{f.row.label} (line {f.row.line})" for f in features],
            "in_sample_error": errors,
            "scopes": sorted({r.row.source.split(" ")[0] for r in power})}


def _priced(profile: BoardProfile, row: NetworkRow) -> tuple[BoardProfile, NetworkRow]:
    priced, mode = with_row_clocks(profile, row)
    return priced, replace(row, power_mode=mode)


def write_fleet_profile(key: str, fit: FleetFit, energy: dict | None, derived_energy: tuple[str, dict] | None,
                        rows: list[FleetRow]) -> BoardProfile:
    """Write ``configs/boards/KEY.toml`` from the shared coefficients and the board's datasheet."""
    c = fit.coefficients
    name, sms, _, tensor, _, _, idle, mode, modes, _, _ = SPECS[key]
    arch = GPU_ARCH[key]
    c = {**c, **{k.removesuffix(f".{arch}"): v for k, v in c.items() if k.endswith(f".tensor.{arch}")}}
    fp32_unit = c.get("efficiency.fp32.tensor", 1.0) if "fp32" in tensor else 1.0
    compute_eff = c["compute_efficiency"] * fp32_unit
    floor_scale = c.get(f"launch_floor.{CPU_ARCH[key]}", 1.0)
    gpu_hz = modes[mode][2]
    overhead_s = c.get("kernel_cycles.eager", c["kernel_cycles.enqueue"]) / gpu_hz
    trt_overhead_s = c["kernel_cycles.enqueue"] / gpu_hz
    graph_s = c["kernel_cycles.cuda-graph"] / gpu_hz
    data_note = " and ".join(_digest(p) for p in PUBLISHED_FILES)
    own = sorted({r.row.label for r in rows})
    shared = (f"fitted jointly to {len(fit.rows)} published rows of {len({r.board for r in fit.rows})} Jetson boards "
              f"({data_note}; calibrate/fleet.py, least squares on log latency; {len(own)} rows of this board: "
              f"{', '.join(own[:8])}{' ...' if len(own) > 8 else ''})")
    base_floor = 1.05e-4 * 2.2656e9 / max(m[4] for m in modes.values())
    kwargs: dict = {}
    if "per_inference_s.eager" in c:
        kwargs["eager_per_inference_s"] = eager_per_inference_s(c, CPU_ARCH[key], modes[mode][4])
        notes_host = (f"{shared}: eager PyTorch's host time once per inference apart from its ops (module-tree walk, "
                      f"framework entry/exit): shared {c['per_inference_s.eager'] * 1e3:.3f} ms at {REF_CPU_HZ / 1e6:.1f} MHz "
                      f"x {CPU_ARCH[key]} factor {floor_scale:.4f} x {REF_CPU_HZ / 1e6:.1f} / {modes[mode][4] / 1e6:.1f} MHz "
                      "(this mode's CPU clock); graph and TensorRT deployments do not pay it")
    notes = {
        "latency_s.conv_per_mac": f"{shared}: 1 / (this board's fp32 peak{' on TF32 tensor cores (TensorRT and cuDNN default on Ampere)' if 'fp32' in tensor else ''} x shared efficiency {compute_eff:.4f})",
        "latency_s.memory_per_byte": f"{shared}: 1 / (this board's DRAM bandwidth x shared memory efficiency {c['memory_efficiency']:.4f})",
        "latency_s.static_per_layer": f"{shared}: {c.get('kernel_cycles.eager', c['kernel_cycles.enqueue']):.0f} GPU cycles per eager PyTorch kernel at this board's {gpu_hz / 1e6:.2f} MHz",
        "latency_s.launch_floor": f"{shared}: the eager dispatch floor scaled by CPU clock from the AGX Xavier's 105 us (torch2trt PyTorch fp16 table) x factor {floor_scale:.4f} shared by boards with {CPU_ARCH[key]} cores",
        "precisions.fp16": f"{shared}: fp16 reaches {c.get('efficiency.fp16.tensor', 1.0) / fp32_unit:.4f} x the fp32 share of its tensor-core peak",
        "runtimes.tensorrt": f"{shared}: kernel_overhead_s = {c['kernel_cycles.enqueue']:.0f} GPU cycles per kernel of an engine enqueued per inference (trtexec, torch2trt, Ultralytics rows; the default launch); per_inference_s: assumption, {PRIOR['per_inference_s.enqueue'] * 1e6:.0f} us per enqueueV3 (not fitted: one network cannot tell it from the per-kernel cycles)",
    }
    if "eager_per_inference_s" in kwargs:
        notes["latency_s.per_inference"] = notes_host
    if "int8" in tensor:
        kwargs["int8_eff"] = c.get("efficiency.int8.tensor", 1.0) / fp32_unit
        notes["precisions.int8"] = f"{shared}: int8 reaches {kwargs['int8_eff']:.4f} x the fp32 share of its tensor-core peak"
    graph_source = (f"{shared}: {c['kernel_cycles.cuda-graph']:.0f} GPU cycles per kernel of a replayed CUDA graph (MLPerf LWIS rows); "
                    f"per_inference_s assumption {PRIOR['per_inference_s.cuda-graph'] * 1e6:.0f} us per cudaGraphLaunch")
    if energy is not None:
        e = energy["coefficients"]
        kwargs.update(static_w=e["static_power_w"], e_mac=e["per_mac"], e_byte=e["per_byte"])
        enote = (f"fitted (NNLS on relative energy, gross) to {len(energy['rows'])} rows with published power of this board: "
                 f"{', '.join(energy['rows'])}; MLPerf MaxQ power is the whole kit's AC wall power (adapter loss included)")
        free = ("static_power_w", "per_mac", "per_byte")[: min(3, max(1, len(energy["rows"]) // 2))]
        for coef, fields in (("static_power_w", ("static_power_w",)), ("per_mac", ("conv_per_mac", "linear_per_mac")),
                             ("per_byte", ("memory_per_byte",))):
            how = enote if coef in free else "prior kept (fewer than two rows per coefficient): (static power - idle) x time per unit at the prior efficiency"
            notes.update({f"energy_j.{f}": how for f in fields})
    elif derived_energy is not None:
        source_key, e = derived_energy
        src_sms, src_idle, src_mode = SPECS[source_key][1], SPECS[source_key][6], SPECS[source_key][8][SPECS[source_key][7]]
        scale = sms / src_sms * gpu_hz / src_mode[2]
        kwargs.update(static_w=idle + (e["static_power_w"] - src_idle) * scale, e_mac=e["per_mac"], e_byte=e["per_byte"])
        enote = (f"derived from the {source_key} energy fit (no published power for this board): joules per MAC and per byte as "
                 f"{source_key} (same Ampere SM and LPDDR5); static power = idle + {source_key}'s fitted part above idle x "
                 f"SMs x GPU clock ratio {scale:.3f}")
        notes.update({f"energy_j.{f}": enote for f in ("static_power_w", "conv_per_mac", "linear_per_mac", "memory_per_byte")})
    header = (f"# {name}: latency fitted with the other Jetson boards to published rows (benchmarks/jetson_profiles.py,\n"
              f"# splitprune/calibrate/fleet.py); device, clocks and modes from the datasheet and nvpmodel tables.")
    text = base_toml(key, compute_eff=compute_eff, mem_eff=c["memory_efficiency"],
                     fp16_eff=c.get("efficiency.fp16.tensor", 1.0) / fp32_unit, overhead_s=overhead_s,
                     enqueue_s=PRIOR["per_inference_s.enqueue"], floor_s=base_floor * floor_scale,
                     graph=(PRIOR["per_inference_s.cuda-graph"], graph_s, graph_source), notes=notes,
                     trt_overhead_s=trt_overhead_s,
                     derived_from=f"Shared physics {shared}. The replayed-CUDA-graph launch costs {c['kernel_cycles.cuda-graph']:.0f} cycles per kernel ({graph_s * 1e6:.2f} us here) against enqueue's {c['kernel_cycles.enqueue']:.0f}.",
                     header=header, extra_sources=[_digest(p) for p in PUBLISHED_FILES], **kwargs)
    text += "\n[fit_quality]\n" + "\n".join(
        [f"fleet_rows = {float(len(fit.rows))!r}", f"board_rows = {float(len(rows))!r}",
         "fleet_coefficients = { " + ", ".join(f"{_q(k)} = {v!r}" for k, v in c.items()) + " }"]) + "\n"
    (BOARDS / f"{key}.toml").write_text(text)
    return BoardProfile.model_validate(tomllib.loads(text))


def main() -> None:
    (BOARDS / "base").mkdir(exist_ok=True)
    report: dict = {}
    for key in ("tx2", "agx_xavier", "nano"):
        (BOARDS / "base" / f"{key}.toml").write_text(base_toml(key))
        fitted = fit(key)
        report[key] = {k: fitted[k] for k in ("rows", "free_latency_coefficients", "latency", "energy",
                                               "loo_latency_mape", "loo_energy_mape")}
    fleet, by_board = run_fleet()
    report["fleet"] = {"coefficients": fleet.coefficients, "groups": fleet.groups(), "skipped": fleet.skipped}
    energies: dict = {}
    for key in FLEET_WRITTEN:
        if key in ("orin_nx", "orin_nx_8gb", "orin_nano"):
            continue
        profile = write_fleet_profile(key, fleet, None, None, by_board.get(key, []))
        energies[key] = fleet_energy(key, profile, by_board.get(key, []))
        profile = write_fleet_profile(key, fleet, energies[key], None, by_board.get(key, []))
    for key in ("orin_nx", "orin_nx_8gb", "orin_nano"):
        write_fleet_profile(key, fleet, None, ("agx_orin", energies["agx_orin"]["coefficients"]), by_board.get(key, []))
    report["fleet_energy"] = energies
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
