"""Benchmark the split solver; prints one JSON document on stdout.

    .venv/bin/python benchmarks/bench_split.py [--quick]

Torchvision models (traced on meta, annotated for the TX2, Wi-Fi, RTX 3090 server): first solve
(cvxpy compile + HiGHS), re-solve after a rate change (median of 20 rates), networkx min-cut, and the
exact bandwidth policy over 1 kbit/s - 10 Gbit/s (Wi-Fi, BLE and LTE: the policy is split at the edges of
each link's measured range). Random layered DAGs of 100-5,000 nodes: first solve,
re-solve, min-cut, and brute force over all closed sets where that is feasible (small DAGs).
Targets (issue 3): ResNet-50 re-solve <= 20 ms median; 500-node first solve <= 1 s; ResNet-50 policy
<= 0.5 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import networkx as nx
import numpy as np

RATES = list(np.geomspace(1e4, 1e9, 20))


def _timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def _median_ms(fn, rates) -> float:
    times = []
    for rate in rates:
        _, elapsed = _timed(lambda r=rate: fn(float(r)))
        times.append(elapsed)
    return statistics.median(times) * 1e3


def bench_problem(problem, link, *, policy: bool = True, objective: str = "energy") -> dict:
    from splitprune.split import SplitOptions, SplitSolver, bandwidth_policy
    from splitprune.split.mincut import solve_mincut

    solver = SplitSolver(problem)
    lp = SplitOptions(objective=objective)
    _, first = _timed(lambda: solver.place(link.figures(1e6), lp))
    row = {
        "nodes": problem.n,
        "first_solve_s": first,
        "resolve_median_ms": _median_ms(lambda r: solver.place(link.figures(r), lp), RATES),
        "resolve_full_result_median_ms": _median_ms(lambda r: solver.solve(link.figures(r), lp),
                                                    RATES[:5]),
        "networkx_mincut_median_ms": _median_ms(
            lambda r: solve_mincut(problem, solver.objective_costs(link.figures(r), lp)[0]), RATES[:5]
        ),
    }
    values = []
    for rate in RATES[::4]:
        costs, _ = solver.objective_costs(link.figures(float(rate)), lp)
        x, *_ = solver.place(link.figures(float(rate)), lp)
        _, cut_value = solve_mincut(problem, costs)
        values.append(abs(costs.value(x.astype(float), problem.sent(x).astype(float)) - cut_value)
                      / max(cut_value, 1e-300))
    row["lp_vs_mincut_max_rel_diff"] = max(values)
    if policy:
        from splitprune.link import load_link

        for label, policy_link in (("", link), ("_ble", load_link("ble")), ("_lte", load_link("lte"))):
            result, elapsed = _timed(
                lambda pl=policy_link: bandwidth_policy(SplitSolver(problem), pl, 1e3, 1e10, options=lp)
            )
            row[f"policy{label}_s"] = elapsed
            row[f"policy{label}_pieces"] = len(result.pieces)
            row[f"policy{label}_solves"] = result.solves
    return row


def torchvision_rows(names: list[str]) -> dict:
    import torch
    import torchvision

    from splitprune import annotate, load_board, trace
    from splitprune.link import load_link, load_server
    from splitprune.split import SplitProblem

    board, link, server = load_board("tx2"), load_link("wifi"), load_server("gpu-server")
    rows = {}
    for name in names:
        with torch.device("meta"):
            model = getattr(torchvision.models, name)(weights=None)
        graph, trace_s = _timed(lambda m=model: trace(m, torch.empty(1, 3, 224, 224, device="meta")))
        annotate(graph, board)
        problem = SplitProblem.from_digraph(graph.nx, graph.order, inputs=graph.inputs,
                                            output=graph.output, server=server)
        rows[name] = {"trace_s": trace_s, **bench_problem(problem, link)}
        rows[name]["latency_objective"] = bench_problem(problem, link, objective="latency")
    return rows


def layered_dag(n: int, seed: int = 0, width: int = 8):
    """Random layered DAG: each node reads 1-3 nodes of the previous two layers."""
    from splitprune.split import SplitProblem

    rng = np.random.default_rng(seed)
    g = nx.DiGraph()
    names = [f"v{i}" for i in range(n)]
    g.add_node(names[0], energy_j=0.0, latency_s=0.0, out_bytes=600_000)
    for i in range(1, n):
        depth = i / n
        g.add_node(names[i], energy_j=float(rng.uniform(0, 5e-3)), latency_s=float(rng.uniform(0, 5e-4)),
                   server_latency_s=float(rng.uniform(0, 5e-5)),
                   out_bytes=int(800_000 * (1 - depth) ** 2 * rng.uniform(0.2, 1.5)) + 4000,
                   param_bytes=int(rng.integers(0, 10**6)))
        lo = max(0, i - 2 * width)
        for p in rng.choice(np.arange(lo, i), size=int(rng.integers(1, min(3, i - lo) + 1)),
                            replace=False):
            g.add_edge(names[int(p)], names[i])
    g.add_node("output", energy_j=0.0, latency_s=0.0, out_bytes=4000)
    for v in names:
        if g.out_degree(v) == 0:
            g.add_edge(v, "output")
    order = [*names, "output"]
    return SplitProblem.from_digraph(g, order, inputs=[names[0]], output="output")


def brute_force_row(n: int, seeds: int) -> dict:
    from splitprune.link import load_link
    from splitprune.split import SplitSolver, evaluate
    from splitprune.split.problem import closed_placements

    link = load_link("wifi").figures(1e7)
    agree, sets, elapsed_bf, elapsed_solver = 0, 0, 0.0, 0.0
    for seed in range(seeds):
        problem = layered_dag(n, seed, width=2)
        start = time.perf_counter()
        best, count = np.inf, 0
        for x in closed_placements(problem):
            count += 1
            best = min(best, evaluate(problem, x, link).total_energy_j)
        elapsed_bf += time.perf_counter() - start
        result, t = _timed(lambda p=problem: SplitSolver(p).solve(link))
        elapsed_solver += t
        sets += count
        agree += abs(result.objective_value - best) <= 1e-9 * best
    return {"nodes": n + 1, "cases": seeds, "agree": agree, "mean_closed_sets": sets / seeds,
            "brute_force_mean_s": elapsed_bf / seeds, "solver_mean_s": elapsed_solver / seeds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="resnet50 and DAGs up to 1,000 nodes")
    args = parser.parse_args()
    _, import_s = _timed(lambda: __import__("cvxpy"))
    from splitprune.link import load_link

    sizes = [100, 500, 1000] if args.quick else [100, 500, 1000, 2000, 5000]
    models = ["resnet50"] if args.quick else ["resnet18", "resnet50", "mobilenet_v2", "googlenet"]
    link = load_link("wifi")
    document = {
        "machine": {"python": sys.version.split()[0]},
        "cvxpy_import_s": import_s,
        "torchvision": torchvision_rows(models),
        "random_layered_dags": {
            str(n): bench_problem(layered_dag(n - 1), link, policy=n <= 1000) for n in sizes
        },
        "brute_force": brute_force_row(14, 10),
    }
    r50 = document["torchvision"]["resnet50"]
    dag500 = document["random_layered_dags"]["500"]
    document["targets"] = {
        "resnet50_resolve_median_ms": [r50["resolve_median_ms"], 20.0],
        "dag500_first_solve_s": [dag500["first_solve_s"], 1.0],
        "resnet50_policy_s": [r50["policy_s"], 0.5],
        "resnet50_policy_ble_s": [r50["policy_ble_s"], 0.5],
        "resnet50_policy_lte_s": [r50["policy_lte_s"], 0.5],
        "resnet50_latency_policy_s": [r50["latency_objective"]["policy_s"], 0.5],
    }
    print(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
