"""How well the cost model predicts whole networks it never trained on, and what each term buys.

For every shared H100 sweep (batch 1 and 16) it calibrates a profile on the layer rows (plus the
default training networks for the network term) and predicts the held-out networks of the same CSV,
for the full model and for the ablation rows:

- ``paper form``: roofline slopes + static per op, energy from work alone (the WiOpt 2022 form);
- ``+ launch floor``: per-kind eager launch floors (smooth max with GPU time), energy as static power
  over time plus work;
- ``+ network term``: the per-op network term fitted on the training networks, on kernel ops only;
- ``+ every op`` (the full model): views and other dispatch-only ops pay the per-op term too.

It also predicts the CUDA-graph replays in ``networks_eager_vs_graph.csv`` with ``mode="graph"`` (the
same profile without its dispatch terms). Prints one JSON document.

    python benchmarks/bench_fidelity.py [--shared data/h100]
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

from splitprune.board import DISPATCH_ONLY_KINDS, BoardProfile, CostModel
from splitprune.calibrate import Terms, calibrate, read_sweep
from splitprune.calibrate.network import NetworkOps, fit_network_term, network_ops
from splitprune.calibrate.validate import fitted_networks
from splitprune.deploy import Deployment

REPO = Path(__file__).resolve().parents[1]


def _kernel_ops_only(net: NetworkOps) -> NetworkOps:
    return NetworkOps(
        net.name, net.input_shape, tuple(op for op in net.ops if op[0] not in DISPATCH_ONLY_KINDS)
    )


def _scores(rows: list[tuple[str, float, float]]) -> dict:
    errors = {name: predicted / measured - 1.0 for name, measured, predicted in rows}
    return {
        "mape": float(np.mean([abs(e) for e in errors.values()])),
        "max_abs_error": float(max(abs(e) for e in errors.values())),
        "errors": {k: round(v, 4) for k, v in errors.items()},
    }


def _evaluate(profile: BoardProfile, held_out: list, *, kernel_ops_only: bool = False) -> dict:
    out = {}
    for metric, table in (("latency", profile.latency_s), ("energy", profile.energy_j)):
        rows = []
        for row in held_out:
            net = network_ops(row.network, row.input_shape)
            net = _kernel_ops_only(net) if kernel_ops_only else net
            measured = row.latency_s if metric == "latency" else row.energy_j
            predicted = net.cost(table) if metric == "latency" else net.energy(table, profile.latency_s)
            rows.append((row.network.split(":")[-1], measured, predicted))
        out[metric] = _scores(rows)
    return out


def _with_latency(profile: BoardProfile, latency: CostModel) -> BoardProfile:
    data = profile.model_dump(exclude_unset=True)
    data["latency_s"] = latency.model_dump(exclude_unset=True)
    return BoardProfile.model_validate(data)


def ablation(csv_path: Path) -> dict:
    data = read_sweep(csv_path)
    start = time.perf_counter()
    full = calibrate(data, name=csv_path.stem)
    seconds = time.perf_counter() - start
    trained = fitted_networks(full.profile, data)
    held_out = [r for r in data.network_rows if r.network not in trained]
    paper = calibrate(
        data, name="paper", terms=Terms(launch_floors=False, static_power=False, network_term=False, tiles=False)
    )
    floor = calibrate(data, name="floor", terms=Terms(network_term=False, tiles=False))
    no_waves = calibrate(data, name="no-waves", terms=Terms(tiles=False))
    training = [
        (_kernel_ops_only(network_ops(r.network, r.input_shape)), r.latency_s)
        for r in data.network_rows
        if r.network in trained
    ]
    per_op = fit_network_term(floor.profile.latency_s, training)
    kernel_only = _with_latency(
        floor.profile, floor.profile.latency_s.model_copy(update={"network_per_op": per_op})
    )
    return {
        "csv": csv_path.name,
        "batch": data.header("batch"),
        "calibrate_s": round(seconds, 2),
        "fit_networks": list(trained),
        "held_out": [r.network for r in held_out],
        "granularity": full.profile.latency_s.conv_kernel_granularity,
        "tiling_scores": full.fits["latency_s"].granularity_cv_mape,
        "static_power_w": round(full.profile.energy_j.static_power_w, 2),
        "network_per_op_us": round(full.profile.latency_s.network_per_op * 1e6, 3),
        "launch_floor_us": {k: round(v * 1e6, 2) for k, v in full.profile.latency_s.launch_floor.items()},
        "ablation": {
            "paper form": _evaluate(paper.profile, held_out),
            "+ launch floor, static power": _evaluate(floor.profile, held_out),
            "+ network term (kernel ops)": _evaluate(kernel_only, held_out, kernel_ops_only=True),
            "+ every op": _evaluate(no_waves.profile, held_out),
            "+ tile terms (per-output overhead; waves where chosen): full model": _evaluate(full.profile, held_out),
        },
        "profile": full.profile,
    }


def graph_mode_check(profiles: dict[str, BoardProfile], csv_path: Path) -> dict:
    """Predict the CUDA-graph replays (and the eager re-runs) of networks_eager_vs_graph.csv."""
    out: dict = {}
    with csv_path.open() as handle:
        rows = list(csv.DictReader(handle))
    for batch, profile in profiles.items():
        graph = Deployment.of(profile, mode="graph").profile
        chosen = [r for r in rows if r["batch"] == batch]
        for mode, prof, lat_key, en_key in (
            ("graph", graph, "graph_ms", "graph_mJ"),
            ("eager rerun", profile, "eager_ms", "eager_mJ"),
        ):
            lat, en = [], []
            for r in chosen:
                net = network_ops(f"torchvision:{r['net']}", (int(batch), 3, 224, 224))
                lat.append((r["net"], float(r[lat_key]) / 1e3, net.cost(prof.latency_s)))
                en.append((r["net"], float(r[en_key]) / 1e3, net.energy(prof.energy_j, prof.latency_s)))
            out[f"batch {batch}, {mode}"] = {"latency": _scores(lat), "energy": _scores(en)}
    return out


def leave_one_network_out(csv_path: Path) -> dict:
    """Every network of the sweep predicted by a calibration whose network term never saw it."""
    from splitprune.calibrate.network import default_fit_networks

    data = read_sweep(csv_path)
    rows = [r for r in data.network_rows]
    default = default_fit_networks([network_ops(r.network, r.input_shape) for r in rows])
    full = calibrate(data, name="loo").profile
    errors: dict[str, dict[str, float]] = {}
    for row in rows:
        profile = full
        if row.network in default:
            profile = calibrate(data, name="loo", fit_networks=[n for n in default if n != row.network]).profile
        net = network_ops(row.network, row.input_shape)
        errors[row.network.split(":")[-1]] = {
            "latency": round(net.cost(profile.latency_s) / row.latency_s - 1.0, 4),
            "energy": round(net.energy(profile.energy_j, profile.latency_s) / row.energy_j - 1.0, 4),
        }
    return {
        "csv": csv_path.name,
        "latency_mape": round(float(np.mean([abs(e["latency"]) for e in errors.values()])), 4),
        "energy_mape": round(float(np.mean([abs(e["energy"]) for e in errors.values()])), 4),
        "errors": errors,
    }


def cross_batch(fit_csv: Path, other_csv: Path) -> dict:
    """Fit one batch size's sweep and predict the other's layers and networks."""
    from splitprune.calibrate.fit import LayerData
    from splitprune.calibrate.profile import _usable_rows

    profile = calibrate(read_sweep(fit_csv), name="cross").profile
    other = read_sweep(other_csv)
    rows, _ = _usable_rows(other, True, "gross")
    layers = LayerData.of([r.kind for r in rows], [r.macs for r in rows], [r.mem_bytes for r in rows],
                          [r.kernels for r in rows], [r.latency_s for r in rows],
                          [float(r.energy_j or 0.0) for r in rows], shapes=[r.shape for r in rows])  # fmt: skip
    out = {"fit": fit_csv.name, "predicted": other_csv.name}
    for metric, table, measured in (("latency", profile.latency_s, layers.latency_s),
                                    ("energy", profile.energy_j, layers.energy_j)):  # fmt: skip
        latency = None if metric == "latency" else profile.latency_s
        predicted = layers.predict(table, latency=latency)
        out[f"layer_{metric}_mape"] = round(float(np.mean(np.abs(predicted / measured - 1.0))), 4)
        nets = [(r, network_ops(r.network, r.input_shape)) for r in other.network_rows]
        truth = [r.latency_s if metric == "latency" else r.energy_j for r, _ in nets]
        pred = [n.cost(table) if latency is None else n.energy(table, latency) for _, n in nets]
        out[f"network_{metric}_mape"] = round(float(np.mean([abs(p / t - 1.0) for p, t in zip(pred, truth, strict=True)])), 4)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO / "data" / "h100")
    parser.add_argument("--quick", action="store_true", help="skip leave-one-network-out and cross-batch")
    args = parser.parse_args()
    results, profiles = [], {}
    for name in ("h100_b1.csv", "h100_b16.csv"):
        result = ablation(args.shared / name)
        profiles[str(result["batch"])] = result.pop("profile")
        results.append(result)
    document = {
        "benchmark": "fidelity",
        "sweeps": results,
        "networks_eager_vs_graph": graph_mode_check(profiles, args.shared / "networks_eager_vs_graph.csv"),
    }
    if not args.quick:
        b1, b16 = args.shared / "h100_b1.csv", args.shared / "h100_b16.csv"
        document["leave_one_network_out"] = [leave_one_network_out(b1), leave_one_network_out(b16)]
        document["cross_batch"] = [cross_batch(b1, b16), cross_batch(b16, b1)]
    print(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
