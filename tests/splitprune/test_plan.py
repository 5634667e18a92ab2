"""Joint plans: never worse than prune-only and split-only, exact splits, runnable pruned head/tail."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_runner import run_cli
from torch import nn

from splitprune import annotate, trace
from splitprune.board import load_board
from splitprune.deploy import configure
from splitprune.link import load_link
from splitprune.plan import PlanInfeasibleError, PlanOptions, plan
from splitprune.plan.export import export_plan, pruned_model
from splitprune.split import InputWire, SplitOptions, SplitProblem, evaluate, solve_split
from splitprune.split.problem import closed_placements


class TinyNet(nn.Module):
    """A wide stem (its pooled output is larger than the input until pruned), a residual block, a head."""

    def __init__(self) -> None:
        super().__init__()

        def cbr(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
            conv = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.ReLU())

        self.stem = cbr(3, 64, 2)
        self.pool = nn.MaxPool2d(2)
        self.body = cbr(64, 128)
        self.res = nn.Sequential(nn.Conv2d(128, 128, 3, 1, 1, bias=False), nn.BatchNorm2d(128))
        self.fc = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.body(self.pool(self.stem(x)))
        x = torch.relu(x + self.res(x))
        return self.fc(x.mean((2, 3)))


@pytest.fixture(scope="module")
def tx2():
    # The small test networks are launch-bound on a TX2 in eager mode (157 us per op whatever its width),
    # where no pruning saves energy; the CUDA-graph view keeps only the work that pruning shrinks.
    # pruning mechanics are checked under the known cost structure of the 0.1 TX2 profile (schema 2)
    return configure(load_board(Path(__file__).resolve().parent / "tx2_schema2.toml"), mode="graph")


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return TinyNet().eval(), torch.randn(1, 3, 64, 64)


def _all_local_energy(model, x, board):
    return annotate(trace(model, x), board).total_energy_j


def _key(point, objective):
    return (round(point.saliency_removed, 12), point.value(objective))


# Links and rates around the point where offloading starts to pay for this net.
LINKS = [("5g", None), ("5g", 5e6), ("wifi", 2e8), ("lte", None)]


@pytest.mark.parametrize(("link_name", "rate"), LINKS)
def test_joint_plan_is_never_worse_than_either_baseline(net, tx2, link_name, rate):
    model, x = net
    link = load_link(link_name)
    local = _all_local_energy(model, x, tx2)
    for objective, fractions in (("energy", (0.4, 0.7, 0.95)), ("latency", (0.5, 0.9))):
        for fraction in fractions:
            if objective == "energy":
                options = PlanOptions(objective="energy", energy_budget_j=fraction * local, round_to=8)
            else:
                local_s = annotate(trace(model, x), tx2).total_latency_s
                options = PlanOptions(objective="latency", deadline_s=fraction * local_s, round_to=8)
            try:
                sweep = plan(model, x, tx2, link, rates_bps=None if rate is None else [rate], options=options)
            except PlanInfeasibleError as exc:
                assert exc.best > exc.limit  # the error's best reachable value really misses the budget
                continue
            result = sweep.plans[0]
            best = result.best
            assert best.feasible and best.saliency_removed <= options.max_prune + 1e-9
            limit = options.energy_budget_j if objective == "energy" else options.deadline_s
            assert best.value(objective) <= limit * (1 + 1e-9)
            for baseline in (result.prune_only, result.split_only):
                if baseline is not None:
                    assert baseline.feasible
                    assert _key(best, objective) <= _key(baseline, objective)
            if result.prune_only is not None:
                assert not result.prune_only.metrics.offloaded and result.prune_only.metrics.sent_bytes == 0
            if result.split_only is not None:
                assert result.split_only.saliency_removed == 0 and result.split_only.step == 0


def test_each_plan_uses_the_exact_split_of_its_pruned_model(net, tx2):
    model, x = net
    link = load_link("5g")
    budget = 0.6 * _all_local_energy(model, x, tx2)
    options = PlanOptions(energy_budget_j=budget, round_to=8)
    sweep = plan(model, x, tx2, link, rates_bps=[5e6], options=options)
    result = sweep.plans[0]
    pruned = pruned_model(model, (x,), sweep, result)
    graph = annotate(trace(pruned, x), tx2)
    # the replayed model is the one that was evaluated: same per-node energy
    np.testing.assert_allclose(
        [graph.nx.nodes[n]["energy_j"] for n in graph.order], result.problem.energy_j, rtol=1e-12
    )
    # an independent exact split of the pruned model gives the plan's energy
    independent = solve_split(graph, link, options=SplitOptions(objective="energy"), rate_bps=5e6)
    assert result.best.energy_j == pytest.approx(independent.metrics.total_energy_j, rel=1e-9)
    # and so does brute force over every closed placement
    problem = SplitProblem.from_digraph(
        graph.nx, graph.order, inputs=graph.inputs, output=graph.output, input_wire=InputWire.parse("uint8")
    )
    fig = link.figures(5e6)
    brute = min(evaluate(problem, xx, fig).total_energy_j for xx in closed_placements(problem))
    assert result.best.energy_j == pytest.approx(brute, rel=1e-9)


def test_a_plan_is_named_by_its_cut_and_its_pruning(net, tx2):
    model, x = net
    budget = 0.9 * _all_local_energy(model, x, tx2)
    sweep = plan(model, x, tx2, load_link("wifi"), rates_bps=[2e8],
                 options=PlanOptions(energy_budget_j=budget, round_to=8))
    result = sweep.plans[0]
    names = list(result.problem.names)

    def named(device: list[str], pruned: dict[str, tuple[int, int]], saliency: float) -> str:
        mask = np.array([n in device for n in names])
        best = dataclasses.replace(result.best, device_mask=mask, saliency_removed=saliency)
        return dataclasses.replace(result, best=best, pruned_layers=pruned).label

    upto = lambda last: names[: names.index(last) + 1]  # noqa: E731  (a placement closed under inputs)
    two = {"stem.0": (64, 32), "body.0": (128, 96)}
    assert named(names, {}, 0.0) == "all local, unpruned"
    assert named(["x"], {}, 0.0) == "full offload, unpruned"
    assert named(upto("pool"), two, 0.154) == "cut after pool, 2 layers pruned, 15.4 % saliency"
    one = {"stem.0": (64, 32)}
    assert named(upto("body_2"), one, 0.02) == "cut after body_2, 1 layer pruned, 2.0 % saliency"
    # the residual branch's input and its first conv both cross
    assert named(upto("res_0"), two, 0.5).startswith("cut after body_2, res_0, 2 layers pruned")
    # the plan the search chose: named by what its split sends, not by the trajectory it came from
    doc = sweep.to_dict()
    assert doc["plan"] == result.label
    assert doc["trajectory"] == f"{result.best.candidate} step {result.best.step}"
    sent = [c["name"] for c in doc["cut"]]
    if sent and set(sent) <= set(result.problem.names[i] for i in result.problem.inputs):
        assert doc["plan"].startswith("full offload")
    elif sent:
        assert doc["plan"].startswith(f"cut after {sent[0]}")
    else:
        assert doc["plan"].startswith("all local")
    assert ("unpruned" in doc["plan"]) == (not doc["pruned_layers"])


def test_saliency_is_counted_in_the_unpruned_model_and_bounded(net, tx2):
    model, x = net
    options = PlanOptions(energy_budget_j=1e-9, max_prune=0.3, round_to=8)  # unreachable: prune to the bound
    with pytest.raises(PlanInfeasibleError) as info:
        plan(model, x, tx2, load_link("wifi"), options=options)
    message = str(info.value)
    assert "device energy budget" in message and "--energy-budget-mj" in message and "\n" not in message
    assert info.value.best > 0
    # LTE at 1 Mbit/s: sending the frame costs far more than computing it, so the plan prunes locally
    no_budget = plan(
        model, x, tx2, load_link("lte"), rates_bps=[1e6], options=PlanOptions(max_prune=0.3, round_to=8)
    )
    result = no_budget.plans[0]
    assert 0 < result.best.saliency_removed <= 0.3 + 1e-9
    assert result.best.energy_j == pytest.approx(min(p.energy_j for p in result.pareto))
    costs = [p.saliency_removed for p in result.pareto]
    values = [p.energy_j for p in result.pareto]
    assert costs == sorted(costs) and values == sorted(values, reverse=True)
    assert result.pareto[0].saliency_removed == 0  # the unpruned model is on the front
    # the model handed in is never modified
    assert model.stem[0].out_channels == 64 and model.body[0].out_channels == 128


def test_evaluate_hook_makes_accuracy_the_pruning_cost(net, tx2):
    model, x = net
    reference = model(x).detach()

    def agreement(m: nn.Module) -> float:  # a stand-in for accuracy: closeness to the unpruned output
        with torch.no_grad():
            return -float((m(x) - reference).abs().mean())

    budget = 0.7 * _all_local_energy(model, x, tx2)
    sweep = plan(
        model,
        x,
        tx2,
        load_link("wifi"),
        options=PlanOptions(energy_budget_j=budget, round_to=8),
        evaluate_fn=agreement,
    )
    result = sweep.plans[0]
    assert result.best.accuracy is not None
    feasible = [p for p in [*result.pareto, result.best] if p.feasible]
    assert result.best.accuracy == max(p.accuracy for p in feasible)


def test_sweep_gives_one_plan_per_rate(net, tx2, tmp_path):
    model, x = net
    budget = 0.8 * _all_local_energy(model, x, tx2)
    rates = [1e6, 1e7, 1e8]
    sweep = plan(
        model,
        x,
        tx2,
        load_link("5g"),
        rates_bps=rates,
        options=PlanOptions(energy_budget_j=budget, round_to=8),
    )
    assert [r.link.rate_bps for r in sweep.plans] == pytest.approx(rates)
    document = sweep.to_dict()
    assert [p["link"]["rate_bps"] for p in document["plans"]] == pytest.approx(rates)
    # a faster link never needs more pruning (transmission only gets cheaper)
    removed = [r.best.saliency_removed for r in sweep.plans]
    assert removed == sorted(removed, reverse=True)
    from splitprune.plots.plan import plot_plan

    assert plot_plan(sweep, tmp_path / "sweep.png").stat().st_size > 10_000


def test_exported_tail_of_head_equals_the_pruned_model(net, tx2, tmp_path):
    model, x = net
    link = load_link("5g")
    budget = 0.6 * _all_local_energy(model, x, tx2)
    options = PlanOptions(energy_budget_j=budget, round_to=8)
    sweep = plan(model, x, tx2, link, rates_bps=[5e6], options=options)
    result = sweep.plans[0]
    manifest = export_plan(model, (x,), sweep, tmp_path / "plan")
    head = torch.export.load(tmp_path / "plan" / "head.pt2").module()
    tail = torch.export.load(tmp_path / "plan" / "tail.pt2").module()
    pruned = pruned_model(model, (x,), sweep, result)
    probe = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(tail(*head(probe)), pruned(probe), rtol=1e-5, atol=1e-5)
    crossing = [t["name"] for t in manifest["crossing"]]
    assert crossing == [c["name"] for c in result.cut] or manifest["all_local"]


@pytest.fixture(scope="module")
def cheap_radio(tmp_path_factory):
    """The shipped 5G profile with a frugal radio (0.5 W flat): offloading pays for TinyNet."""
    from splitprune.config import resolve_profile

    text = resolve_profile("5g", "links").read_text()
    for old, new in (
        ("base_power_w = 0.8399", "base_power_w = 0.5"),
        ("power_w_per_bps = 3.224e-8", "power_w_per_bps = 0.0"),
    ):
        assert old in text
        text = text.replace(old, new)
    path = tmp_path_factory.mktemp("links") / "cheap.toml"
    path.write_text(text)
    return load_link(path)


def test_pruning_the_cut_tensor_beats_both_baselines_and_the_tail_follows(tx2, cheap_radio):
    torch.manual_seed(1)
    model, x = TinyNet().eval(), torch.randn(1, 3, 64, 64)
    rate = 4e7  # 1e-7 J/byte: the fp32 input costs less than the unpruned pooled stem, more than half of it
    # all local costs 5.8 mJ on the TX2's GPU; offloading the input 4.9 mJ; the stem and pool 0.66 mJ + 6.6 mJ
    options = PlanOptions(energy_budget_j=4.0e-3, round_to=8, max_prune=0.6, input_wire="fp32")
    result = plan(model, x, tx2, cheap_radio, rates_bps=[rate], options=options).plans[0]
    cut = {c["name"]: c for c in result.cut}
    assert (
        set(cut) == {"pool"} and cut["pool"]["output_shapes"][0][1] < 64
    )  # fewer channels, fewer bytes sent
    assert result.split_only is None  # the unpruned model cannot meet the budget by splitting alone
    assert result.prune_only is None or result.prune_only.saliency_removed > result.best.saliency_removed
    sweep = plan(model, x, tx2, cheap_radio, rates_bps=[rate], options=options)
    result = sweep.plans[0]
    pruned = pruned_model(model, (x,), sweep, result)
    assert (
        pruned.body[0].in_channels == cut["pool"]["output_shapes"][0][1]
    )  # the server side reads what is sent
    assert pruned.body[0].out_channels == 128  # server-side layers keep their outputs
    graph = trace(pruned, x)
    from splitprune.export import split_modules

    device = [n for n, on in zip(result.problem.names, result.best.device_mask, strict=True) if on]
    parts = split_modules(graph.gm, device)
    with torch.no_grad():
        torch.testing.assert_close(parts.tail(*parts.head(x)), pruned(x), rtol=1e-5, atol=1e-5)


def test_cli_json_document_and_errors(tmp_path):
    args = ["plan", "torchvision:resnet18", "--input-shape", "1,3,64,64", "--link", "5g", "--rate-bps", "5e6"]
    ok = run_cli(
        *args,
        "--energy-budget-mj",
        "30",
        "--json",
        "--plot",
        str(tmp_path / "plan.png"),
        "--export",
        str(tmp_path / "export"),
        "--full-front",
        "--max-prune",
        "0.2",
    )
    assert ok.code == 0, ok.err
    doc = json.loads(ok.out)
    assert doc["schema"] == "splitprune.plan/1"
    for key in (
        "plan",
        "trajectory",
        "energy_j",
        "latency_s",
        "saliency_removed",
        "cut",
        "prune_only",
        "split_only",
        "link",
        "device_energy_j",
        "transmission_energy_j",
        "server_energy_j",
        "pareto",
        "nodes",
    ):
        assert key in doc
    assert doc["link"]["rate_bps"] == pytest.approx(5e6)
    assert doc["energy_j"] <= 0.030 * (1 + 1e-9)
    assert doc["energy_j"] == pytest.approx(doc["device_energy_j"] + doc["transmission_energy_j"])
    assert all("inputs" in row and "predecessors" not in row for row in doc["nodes"])
    assert (tmp_path / "plan.png").stat().st_size > 10_000
    manifest = json.loads((tmp_path / "export" / "manifest.json").read_text())
    crossing = [t["name"] for t in manifest["crossing"]]
    assert crossing == [c["name"] for c in doc["cut"]] or manifest["all_local"]
    assert max(p["saliency_removed"] for p in doc["pareto"]) <= 0.2 + 1e-9
    assert doc["search"]["states"] > 2  # --full-front kept pruning after the budget was met
    for baseline in ("prune_only", "split_only"):
        assert doc[baseline] is None or doc[baseline]["energy_j"] <= 0.030 * (1 + 1e-9)

    low = run_cli(*args, "--energy-budget-mj", "0.001")
    assert low.code == 2 and low.err.count("\n") == 1 and "--energy-budget-mj" in low.err
    assert "Traceback" not in low.err
    none = run_cli("plan", "torchvision:resnet18", "--input-shape", "1,3,64,64")
    assert none.code == 2 and "budget" in none.err
    refused = run_cli(
        "plan", "torchvision:shufflenet_v2_x0_5", "--input-shape", "1,3,64,64", "--energy-budget-mj", "10"
    )
    assert refused.code == 2 and refused.err.startswith("error: ") and refused.err.count("\n") == 1


def test_deadline_with_energy_objective_uses_the_constrained_exact_split(net, tx2):
    model, x = net
    link, rate = load_link("5g"), 2e8
    local_s = annotate(trace(model, x), tx2).total_latency_s
    deadline = 0.8 * local_s
    sweep = plan(
        model,
        x,
        tx2,
        link,
        rates_bps=[rate],
        options=PlanOptions(objective="energy", deadline_s=deadline, round_to=8),
    )
    result = sweep.plans[0]
    assert result.best.latency_s <= deadline * (1 + 1e-9)
    fig = link.figures(rate)
    # brute force: the least energy over every closed placement of that pruned model within the deadline
    evaluations = [evaluate(result.problem, xx, fig) for xx in closed_placements(result.problem)]
    brute = min(e.total_energy_j for e in evaluations if e.latency_s <= deadline * (1 + 1e-9))
    assert result.best.energy_j == pytest.approx(brute, rel=1e-9)
