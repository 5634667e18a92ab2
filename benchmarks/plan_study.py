"""Plan study: joint split + prune against prune-only and split-only at equal device-energy budgets.

Two parts, each for every link given with ``--link`` (default: every shipped link):

- **Digits** (real data, no download: scikit-learn's ``load_digits``, the CNN of
  ``digits_study.py``, TX2 estimate per batch of 32): for budgets given as fractions of the
  all-local energy, the plan with the least accuracy lost (an ``evaluate`` hook measures test
  accuracy after a short fine-tune of every pruned model), with prune-only and split-only at the
  same budget.
- **ImageNet-size models** (ResNet-18 and ResNet-50 at 224 x 224, untrained weights: the pruning
  cost is saliency removed): the same comparison, plus the time of one plan and of a sweep of
  8 plans over two decades of rate for ResNet-50.

A baseline that cannot meet a budget is reported as null. Prints one JSON document; a markdown table
goes to stderr. Run: .venv/bin/python benchmarks/plan_study.py --link 5g --link wifi
The links are parameters so the study can be re-run as the shipped radio models change.

Both parts are also study files run by ``splitprune study`` (``benchmarks/studies/plan_imagenet.toml``,
``plan_digits.toml``); ``--from-study DIR`` turns such a results directory into this table.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch
import torchvision

from splitprune import annotate, trace
from splitprune.board import load_board
from splitprune.link import load_link
from splitprune.plan import PlanInfeasibleError, PlanOptions, plan
from splitprune.prune.finetune import accuracy, finetune_classifier

sys.path.insert(0, str(Path(__file__).resolve().parent))
from digits_study import BATCH_ON_BOARD, SIDE, DigitsNet, batches, load_data  # noqa: E402

LINKS = ("wifi", "lte", "5g", "ble")
FRACTIONS = (0.4, 0.55, 0.7, 0.85)
DIGITS_FRACTIONS = (0.4, 0.6, 0.8)


def _figures(point) -> dict | None:
    if point is None:
        return None
    return {
        "candidate": point.candidate, "step": point.step, "energy_j": point.energy_j,
        "latency_s": point.latency_s, "sent_bytes": point.metrics.sent_bytes,
        "saliency_removed": point.saliency_removed, "accuracy": point.accuracy,
    }


def _verdict(best, others, cost) -> str:
    """How the joint plan compares with the better baseline.

    ``only-joint-meets-budget``; ``better`` (lower pruning cost than both); ``same-cost-less-energy``
    (ties the better baseline's pruning cost and uses less energy); ``ties-a-baseline``.
    """
    feasible = [o for o in others if o is not None]
    if not feasible:
        return "only-joint-meets-budget"
    best_cost = cost(best)
    if all(best_cost < cost(o) for o in feasible):
        return "better"
    tied = [o for o in feasible if cost(o) == best_cost]
    if all(best.energy_j < o.energy_j * (1 - 1e-9) for o in tied):
        return "same-cost-less-energy"
    return "ties-a-baseline"


def compare(model, x, board, link, fractions, *, rate_bps=None, evaluate_fn=None, finetune=None,
            options: dict | None = None) -> list[dict]:
    """Plans at each budget fraction of the all-local energy, with both baselines."""
    local_j = annotate(trace(model, x), board).total_energy_j
    rows = []
    for fraction in fractions:
        opts = PlanOptions(energy_budget_j=fraction * local_j, **(options or {}))
        started = time.perf_counter()
        row = {"budget_fraction": fraction, "budget_j": fraction * local_j}
        try:
            sweep = plan(model, x, board, link, rates_bps=None if rate_bps is None else [rate_bps],
                         options=opts, evaluate_fn=evaluate_fn, finetune=finetune)
        except PlanInfeasibleError as exc:
            row.update(joint=None, prune_only=None, split_only=None, verdict="infeasible",
                       best_reachable_j=exc.best, elapsed_s=time.perf_counter() - started)
            rows.append(row)
            continue
        r = sweep.plans[0]
        base = next((p.accuracy for p in r.pareto if p.state == 0), None)

        def cost(p, base=base):  # the planner's order: accuracy lost (floored at 0), then saliency
            lost = max(0.0, base - p.accuracy) if base is not None and p.accuracy is not None else 0.0
            return (round(lost, 12), round(p.saliency_removed, 12))
        row.update(
            rate_bps=r.link.rate_bps, joint=_figures(r.best), prune_only=_figures(r.prune_only),
            split_only=_figures(r.split_only), verdict=_verdict(r.best, (r.prune_only, r.split_only), cost),
            states=sweep.states, candidates=list(sweep.candidates), elapsed_s=time.perf_counter() - started,
        )
        rows.append(row)
    return rows


def digits_part(links, fractions, seed, finetune_epochs) -> dict:
    torch.manual_seed(seed)
    board = load_board("tx2")
    x_train, y_train, x_test, y_test = load_data(seed)
    model = DigitsNet()
    finetune_classifier(model, batches(x_train, y_train, 64, seed), epochs=8, lr=3e-3)
    model.eval()
    base_acc = accuracy(model, x_test, y_test)
    example = torch.zeros(BATCH_ON_BOARD, 1, SIDE, SIDE)

    def tune(m):
        finetune_classifier(m, batches(x_train, y_train, 64, seed + 1), epochs=finetune_epochs, lr=1e-3)

    def evaluate_fn(m):
        return accuracy(m, x_test, y_test)

    out = {"baseline_accuracy": base_acc, "finetune_epochs": finetune_epochs, "links": {}}
    for name in links:
        out["links"][name] = compare(copy.deepcopy(model), example, board, load_link(name), fractions,
                                     evaluate_fn=evaluate_fn, finetune=tune,
                                     options={"round_to": 8, "step_saliency": 0.05})
    return out


def imagenet_part(models, links, fractions, seed) -> dict:
    board = load_board("tx2")
    out: dict = {}
    for name in models:
        torch.manual_seed(seed)
        model = getattr(torchvision.models, name)(weights=None).eval()
        x = torch.randn(1, 3, 224, 224)
        out[name] = {"all_local_energy_j": annotate(trace(model, x), board).total_energy_j, "links": {}}
        for link_name in links:
            out[name]["links"][link_name] = compare(model, x, board, load_link(link_name), fractions)
    return out


def timing_part(link_name: str, seed: int) -> dict:
    """ResNet-50: one plan at the link's rate and a sweep of 8 plans over two decades around it."""
    torch.manual_seed(seed)
    board, link = load_board("tx2"), load_link(link_name)
    model = torchvision.models.resnet50(weights=None).eval()
    x = torch.randn(1, 3, 224, 224)
    budget = 0.4 * annotate(trace(model, x), board).total_energy_j  # a hard budget: long trajectories
    rate = link.figures().rate_bps
    result = {}
    sweep_rates = [rate / 10 * 10 ** (i * 2 / 7) for i in range(8)]
    for label, rates in (("one_rate", [rate]), ("sweep_8", sweep_rates)):
        started = time.perf_counter()
        try:
            sweep = plan(model, x, board, link, rates_bps=rates, options=PlanOptions(energy_budget_j=budget))
            states = sweep.states
        except PlanInfeasibleError:
            states = None
        result[label] = {"elapsed_s": time.perf_counter() - started, "rates": len(rates), "states": states}
    return {"model": "resnet50", "link": link_name, "budget_j": budget, **result,
            "torch_threads": torch.get_num_threads()}


def table(study: dict) -> str:
    lines = ["| part | link | budget | joint | prune-only | split-only | verdict |",
             "|---|---|---|---|---|---|---|"]

    def cell(f, accuracy_cost):
        if f is None:
            return "misses"
        cost = f"acc {f['accuracy']:.3f}" if accuracy_cost else f"sal {f['saliency_removed']:.3f}"
        return f"{cost}, {f['energy_j'] * 1e3:.1f} mJ ({f['candidate']})"

    parts = [("digits", study.get("digits", {}).get("links", {}), True)]
    parts += [(m, v["links"], False) for m, v in study.get("imagenet", {}).items()]
    for part, links, acc in parts:
        for link, rows in links.items():
            for r in rows:
                lines.append(
                    f"| {part} | {link} | {r['budget_fraction']:.0%} | {cell(r['joint'], acc)} | "
                    f"{cell(r['prune_only'], acc)} | {cell(r['split_only'], acc)} | {r['verdict']} |"
                )
    return "\n".join(lines) + "\n"


def _from_row(row: dict, prefix: str) -> dict | None:
    """A plan's figures (as ``_figures``) from a study row; None when that baseline misses."""
    keys = ("candidate", "step", "energy_j", "latency_s", "sent_bytes", "saliency_removed", "accuracy")
    if row.get(f"{prefix}energy_j") is None:
        return None
    return {k: row.get(f"{prefix}{k}") for k in keys}


def from_study(directory: Path) -> dict:
    """The study document of ``compare`` rebuilt from ``splitprune study`` results (plan_*.toml)."""
    from types import SimpleNamespace

    import pyarrow.parquet as pq

    out: dict = {"schema": "splitprune.plan_study/1", "from_study": str(directory), "imagenet": {},
                 "digits": {"links": {}}}
    for row in pq.read_table(directory / "results.parquet").to_pylist():
        digits = row.get("evaluate") is not None
        imagenet = out["imagenet"].setdefault(row["model"], {"links": {}}) if not digits else None
        part = out["digits"]["links"] if imagenet is None else imagenet["links"]
        entry = {"budget_fraction": float(row["budget"]), "budget_j": row.get("budget_j")}
        if row["status"] != "ok":
            entry.update(joint=None, prune_only=None, split_only=None, verdict="infeasible",
                         error=row["error"])
        else:
            joint, prune_only, split_only = (_from_row(row, p) for p in ("", "prune_only.", "split_only."))
            base = row.get("baseline_accuracy")

            def cost(p, base=base):
                lost = max(0.0, base - p.accuracy) if base is not None and p.accuracy is not None else 0.0
                return (round(lost, 12), round(p.saliency_removed, 12))

            points = [None if f is None else SimpleNamespace(**f) for f in (joint, prune_only, split_only)]
            entry.update(joint=joint, prune_only=prune_only, split_only=split_only,
                         verdict=_verdict(points[0], points[1:], cost))
        part.setdefault(row["link"], []).append(entry)
    if not out["digits"]["links"]:
        del out["digits"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--link", action="append", help=f"link profile (repeatable; default {LINKS})")
    parser.add_argument("--model", action="append", help="torchvision model (default resnet18, resnet50)")
    parser.add_argument("--fractions", default=",".join(map(str, FRACTIONS)),
                        help="budgets as fractions of the all-local energy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument("--skip-digits", action="store_true")
    parser.add_argument("--skip-imagenet", action="store_true")
    parser.add_argument("--timing-link", default="5g")
    parser.add_argument("--from-study", type=Path, default=None,
                        help="tabulate `splitprune study benchmarks/studies/plan_*.toml --out DIR` results")
    args = parser.parse_args()
    if args.from_study is not None:
        study = from_study(args.from_study)
        sys.stderr.write(table(study))
        print(json.dumps(study, indent=2, allow_nan=False))
        return
    links = tuple(args.link or LINKS)
    fractions = tuple(float(f) for f in args.fractions.split(","))
    started = time.perf_counter()
    study: dict = {"schema": "splitprune.plan_study/1", "board": "tx2", "links": list(links),
                   "fractions": list(fractions), "seed": args.seed}
    if not args.skip_digits:
        digits_fractions = fractions if args.fractions != ",".join(map(str, FRACTIONS)) else DIGITS_FRACTIONS
        study["digits"] = digits_part(links, digits_fractions, args.seed, args.finetune_epochs)
    if not args.skip_imagenet:
        study["imagenet"] = imagenet_part(tuple(args.model or ("resnet18", "resnet50")), links, fractions,
                                          args.seed)
        study["timing"] = timing_part(args.timing_link, args.seed)
    study["elapsed_s"] = time.perf_counter() - started
    sys.stderr.write(table(study))
    print(json.dumps(study, indent=2, allow_nan=False))


if __name__ == "__main__":
    main()
