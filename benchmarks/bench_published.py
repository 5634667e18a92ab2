"""Shipped Jetson profiles against every row of the published whole-network measurements (JSON).

    python benchmarks/bench_published.py [--readme README.md]     # ~5 min on one core (YOLO tracing)

``fleet``: the shared fit of benchmarks/jetson_profiles.py over every row of data/jetson_published
(networks.csv and networks_orin.csv), each row predicted by a fit that never saw its network
(leave-one-network-out), as MAPE per board x runtime x precision x launch; energy where power is
published (the held-out latency times the board's fitted power, in-sample power coefficients).

For every GPU row of data/jetson_published/networks.csv: the prediction of
``splitprune estimate --mode M --precision P --batch N`` with the shipped profile, and whether the
profile was fitted on that row (in-sample). Also the leave-one-network-out errors of each fitted
board and an ablation on the TX2 and AGX Xavier rows: the 0.1 model (CUDA graph, fp32, no fusion) ->
TensorRT fusion -> precision -> fitted coefficients, each scored leave-one-network-out where fitted.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

import splitprune as sp
from splitprune.calibrate.netfit import fit_networks, predict_energy, row_features
from splitprune.calibrate.netprofile import validate_networks
from splitprune.calibrate.published import read_networks
from splitprune.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import jetson_profiles as jp  # noqa: E402 - the fleet fit lives beside this script

PUBLISHED = ROOT / "data" / "jetson_published" / "networks.csv"
PROFILES = {"jetson-tx2": "tx2", "jetson-agx-xavier": "agx-xavier", "jetson-nano": "nano", "jetson-agx-orin": "agx-orin"}
FITTED = {"jetson-tx2", "jetson-agx-xavier", "jetson-nano"}
OLD_TX2 = ROOT / "tests" / "splitprune" / "tx2_schema2.toml"


def _mape(errors: list[float | None]) -> float | None:
    values = [abs(e) for e in errors if e is not None]
    return round(float(np.mean(values)), 4) if values else None


def rows_table(rows: list) -> list[dict]:
    out = []
    for board, name in PROFILES.items():
        subset = [r for r in rows if r.board == board]
        if not subset:
            continue
        for scored in validate_networks(sp.load_board(name), subset).rows:
            if "skipped" in scored:
                print(f"skipped {board} {scored['label']}: {scored['skipped']}", file=sys.stderr)
                continue
            out.append({"board": board, "profile": name, "in_sample": board in FITTED, **scored})
    return out


def ablation(rows: list) -> dict:
    result: dict = {}
    for board in ("jetson-tx2", "jetson-agx-xavier"):
        subset = [r for r in rows if r.board == board and r.mode == "tensorrt"]
        base = sp.load_board(f"configs/boards/base/{PROFILES[board].replace('-', '_')}.toml")
        steps: dict = {}
        if board == "jetson-tx2":
            old = sp.load_board(OLD_TX2)
            fp32 = [replace(r, mode="graph", precision="fp32", launch=None) for r in subset]
            scored = validate_networks(old, fp32).rows
            steps["0.1 model: CUDA graph, fp32, no fusion"] = _step(scored)
        unfused = [replace(r, mode="graph", launch=None) for r in subset]
        steps["datasheet base, no fusion (graph)"] = _step(validate_networks(base, unfused).rows)
        steps["datasheet base + TensorRT fusion + precision"] = _step(validate_networks(base, subset).rows)
        fit = fit_networks(base, subset).summary()
        steps["+ fitted to the rows (leave one network out)"] = {
            "latency_mape": round(fit["loo_latency_mape"], 4),
            "energy_mape": None if fit["loo_energy_mape"] is None else round(fit["loo_energy_mape"], 4),
        }
        result[board] = steps
    return result


def _step(scored: list[dict]) -> dict:
    scored = [r for r in scored if "skipped" not in r]
    return {"latency_mape": _mape([r["latency_error"] for r in scored]),
            "energy_mape": _mape([r["energy_error"] for r in scored])}  # fmt: skip


def loo(rows: list) -> dict:
    out = {}
    for board in sorted(FITTED):
        subset = [r for r in rows if r.board == board]
        base = sp.load_board(f"configs/boards/base/{PROFILES[board].replace('-', '_')}.toml")
        summary = fit_networks(base, subset).summary()
        out[board] = {"rows": summary["rows"], "free": summary["free_latency_coefficients"],
                      "loo_latency_mape": round(summary["loo_latency_mape"], 4),
                      "loo_energy_mape": None if summary["loo_energy_mape"] is None
                      else round(summary["loo_energy_mape"], 4)}  # fmt: skip
    return out


def markdown(table: list[dict], loo_errors: dict, steps: dict) -> str:
    lines = ["| board | row | published ms | predicted ms | error | published mJ | predicted mJ | error | fit on it |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in table:
        energy = ("", "", "") if r["energy_error"] is None else (
            f"{r['measured_j'] * 1e3:.1f}", f"{r['predicted_j'] * 1e3:.1f}", f"{r['energy_error']:+.0%}")
        lines.append(f"| {r['profile']} | {r['label']} | {r['measured_s'] * 1e3:.2f} | "
                     f"{r['predicted_s'] * 1e3:.2f} | {r['latency_error']:+.0%} | {' | '.join(energy)} | "
                     f"{'in-sample' if r['in_sample'] else 'no'} |")  # fmt: skip
    lines += ["", "| board | rows | fitted | leave-one-network-out latency MAPE | energy MAPE |", "|---|---|---|---|---|"]
    for board, v in loo_errors.items():
        energy = "-" if v["loo_energy_mape"] is None else f"{v['loo_energy_mape']:.1%}"
        lines.append(f"| {board} | {v['rows']} | {', '.join(v['free'])} | {v['loo_latency_mape']:.1%} | {energy} |")
    lines += ["", "| board | model | latency MAPE | energy MAPE |", "|---|---|---|---|"]
    for board, rows in steps.items():
        for step, v in rows.items():
            energy = "-" if v["energy_mape"] is None else f"{v['energy_mape']:.1%}"
            lines.append(f"| {board} | {step} | {v['latency_mape']:.1%} | {energy} |")
    return "\n".join(lines)


def fleet_report() -> dict:
    """Leave-one-network-out latency (and energy where published) per board x runtime x precision x launch."""
    fit, _ = jp.run_fleet()
    groups: dict[str, dict] = {}
    for r, loo_err in zip(fit.rows, fit.loo_error, strict=True):
        key = f"{r.board} {r.row.mode} {r.row.precision} {r.row.launch or '-'}"
        g = groups.setdefault(key, {"rows": 0, "latency": [], "energy": []})
        g["rows"] += 1
        g["latency"].append(loo_err)
        if r.row.energy_j is not None:
            g["energy"].append(_energy_error(r, loo_err))
    out = {k: {"rows": g["rows"], "networks": None, "loo_latency_mape": _mape(g["latency"]),
               "energy_rows": len([e for e in g["energy"] if e is not None]), "energy_mape": _mape(g["energy"])}
           for k, g in sorted(groups.items())}  # fmt: skip
    for k in out:
        out[k]["networks"] = len({r.row.model for r in fit.rows
                                  if f"{r.board} {r.row.mode} {r.row.precision} {r.row.launch or '-'}" == k})
    rows = [{"board": r.board, "label": r.row.label, "line": r.row.line, "measured_ms": r.row.latency_s * 1e3,
             "train_error": round(tr, 4), "loo_error": round(lo, 4)}
            for r, tr, lo in zip(fit.rows, fit.train_error, fit.loo_error, strict=True)]  # fmt: skip
    return {"coefficients": fit.coefficients, "groups": out, "skipped": fit.skipped, "rows": rows}


def _energy_error(r, loo_err: float) -> float | None:
    """Energy error of a row: the shipped profile's power over the held-out latency."""
    profile = sp.load_board(r.board.replace("_", "-"))
    priced, row = jp._priced(profile, r.row)
    try:
        features = row_features(priced, row)
    except ConfigError:
        return None
    e = profile.energy_j
    coef = {"static_power_w": e.static_power_w, "per_mac": e.conv_per_mac, "per_byte": e.memory_per_byte}
    predicted = predict_energy(features, coef, r.row.latency_s * (1.0 + loo_err))
    return predicted / r.row.energy_j - 1.0


def fleet_markdown(report: dict) -> str:
    lines = ["| board | runtime | precision | launch | rows (networks) | latency MAPE, network held out | energy MAPE (rows) |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for key, g in report["groups"].items():
        board, mode, precision, launch = key.split(" ")
        energy = "-" if g["energy_mape"] is None else f"{g['energy_mape']:.1%} ({g['energy_rows']})"
        lines.append(f"| {board.replace('_', '-')} | {mode} | {precision} | {launch} | {g['rows']} ({g['networks']}) | "
                     f"{g['loo_latency_mape']:.1%} | {energy} |")  # fmt: skip
    coef = ", ".join(f"{k} {v:.4g}" for k, v in report["coefficients"].items())
    return "\n".join([*lines, "", f"Shared coefficients (all rows): {coef}."])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--readme", type=Path, help="rewrite the published-table block of this README")
    args = parser.parse_args()
    rows = read_networks(PUBLISHED)
    fleet = fleet_report()
    table, loo_errors, steps = rows_table(rows), loo(rows), ablation(rows)
    if args.readme:
        text = args.readme.read_text()
        block = f"<!-- published-table:begin -->\n{markdown(table, loo_errors, steps)}\n<!-- published-table:end -->"
        text = re.sub(r"<!-- published-table:begin -->.*<!-- published-table:end -->", block, text, flags=re.S)
        block = f"<!-- fleet-table:begin -->\n{fleet_markdown(fleet)}\n<!-- fleet-table:end -->"
        text = re.sub(r"<!-- fleet-table:begin -->.*<!-- fleet-table:end -->", block, text, flags=re.S)
        args.readme.write_text(text)
    by_board = {}
    for board in PROFILES:
        sub = [r for r in table if r["board"] == board]
        if sub:
            by_board[board] = {"rows": len(sub), "latency_mape": _mape([r["latency_error"] for r in sub]),
                               "energy_mape": _mape([r["energy_error"] for r in sub])}  # fmt: skip
    print(json.dumps({"benchmark": "published", "fleet": fleet, "in_sample_by_board": by_board,
                      "leave_one_network_out": loo_errors, "ablation": steps, "rows": table}, indent=2))


if __name__ == "__main__":
    main()
