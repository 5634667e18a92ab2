"""Fine-tuning in the loop: the planner scores its pruned models on 2 workers, with the same plan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from splitprune import annotate, trace
from splitprune.board import load_board
from splitprune.deploy import configure
from splitprune.link import load_link
from splitprune.models import load_model
from splitprune.plan import PlanOptions, plan
from splitprune.study import StudySpec, run_study
from splitprune.study.entry import EntryPoint, PrimedExecutor
from splitprune.study.executors import LocalExecutor

MODELS = Path(__file__).parent / "study_data" / "models.py"
pytestmark = pytest.mark.slow


def _document(sweep):
    doc = sweep.to_dict()
    doc["search"].pop("elapsed_s")
    return doc


@pytest.fixture(scope="module")
def pool():
    with LocalExecutor(2) as executor:
        yield executor


@pytest.fixture(scope="module")
def setting():
    torch.set_num_threads(1)  # the workers train with one thread each: the same arithmetic here
    board = configure(load_board("tx2"), mode="graph")  # small nets are launch-bound in eager mode
    loaded = load_model(f"{MODELS}:trained_digits")
    torch.manual_seed(0)
    x = torch.randn(loaded.input_shape)
    local_j = annotate(trace(loaded.module, x), board).total_energy_j
    options = PlanOptions(energy_budget_j=0.5 * local_j, round_to=8, step_saliency=0.05, max_prune=0.5,
                          max_candidates=3)
    args = (loaded.module, x, board, load_link("5g"))
    evaluate_fn = EntryPoint(f"{MODELS}:finetune_and_score")
    sequential = plan(*args, rates_bps=[1e5], options=options, evaluate_fn=evaluate_fn)
    return args, options, evaluate_fn, sequential


def test_parallel_evaluations_give_the_sequential_plan(pool, setting):
    args, options, evaluate_fn, sequential = setting
    primed = PrimedExecutor(pool, primers=(f"{MODELS}:trained_digits",))
    parallel = plan(*args, rates_bps=[1e5], options=options, evaluate_fn=evaluate_fn, executor=primed)
    assert sequential.states >= 4 and sequential.plans[0].best.step > 0  # the budget needs pruning
    accuracies = [p.accuracy for p in sequential.plans[0].pareto]
    assert all(a is not None and 0.5 < a <= 1 for a in accuracies)
    assert _document(parallel) == _document(sequential)


def test_plan_study_with_an_evaluate_entry_point_matches_the_plan(pool, setting, tmp_path):
    *_, sequential = setting
    spec = StudySpec(
        command="plan", models=[f"{MODELS}:trained_digits"], modes=["graph"], links=["5g"], rates_bps=[1e5],
        budgets=[0.5], evaluate=f"{MODELS}:finetune_and_score",
        plan={"round_to": 8, "step_saliency": 0.05, "max_prune": 0.5, "max_candidates": 3},
    )
    report = run_study(spec, tmp_path, pool, plots=False)
    assert (report.jobs, report.done, report.failed) == (1, 1, 0)
    stored = json.loads(next((tmp_path / "jobs").glob("*.json")).read_text())
    best = sequential.plans[0].best
    row = stored["row"]
    assert row["candidate"] == best.candidate and row["step"] == best.step
    assert row["accuracy"] == pytest.approx(best.accuracy)
    assert row["energy_j"] == pytest.approx(best.energy_j)


def test_prune_study_scores_each_pruned_model(pool, tmp_path):
    # the 0.1 TX2 profile, whose 50 % budget the digits CNN meets without losing half its accuracy
    old_tx2 = str(Path(__file__).parent / "tx2_schema2.toml")
    spec = StudySpec(command="prune", models=[f"{MODELS}:trained_digits"], boards=[old_tx2], modes=["graph"],
                     budgets=[0.5],
                     evaluate=f"{MODELS}:finetune_and_score",
                     prune={"importance": ["energy", "magnitude"], "round_to": 8})
    report = run_study(spec, tmp_path, pool, plots=False)
    assert (report.jobs, report.done, report.failed) == (2, 2, 0)
    rows = [json.loads(p.read_text())["row"] for p in sorted((tmp_path / "jobs").glob("*.json"))]
    assert sorted(r["importance"] for r in rows) == ["energy", "magnitude"]
    for row in rows:
        assert row["energy_after_j"] <= 0.5 * row["energy_before_j"] * 1.001
        assert row["energy_j"] == row["energy_after_j"]
        assert 0.5 < row["accuracy"] <= 1
