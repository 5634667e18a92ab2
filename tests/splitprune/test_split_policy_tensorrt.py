"""The policy sweep of a TensorRT deployment: each cut priced with its boundary, as ``split_model`` prices it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from splitprune import Deployment, split_model
from splitprune.fusion import fuse
from splitprune.link import load_link
from splitprune.split import SplitSolver, bandwidth_policy, evaluate, split_policy, split_problem
from splitprune.split.deployed import traced

LOW_BPS, HIGH_BPS = 1e6, 1e9


@pytest.fixture(scope="module")
def link():
    return load_link("5g")


@pytest.fixture(scope="module", params=[("xavier-nx", "fp16"), ("orin-nano", "int8")])
def trt(request):
    board, precision = request.param
    deployed = Deployment.of(board, mode="tensorrt", precision=precision)
    return deployed, traced("torchvision:resnet18", deployed)


def test_every_piece_is_what_split_model_answers_inside_it(trt, link):
    deployed, graph = trt
    policy = split_policy(graph, deployed, link, LOW_BPS, HIGH_BPS)
    assert len(policy.pieces) > 2 and policy.exact
    for piece in policy.pieces:
        rate = math.sqrt(piece.low_bps * piece.high_bps)
        result = split_model(graph, deployed, link, rate_bps=rate)
        assert piece.objective_at(rate) == pytest.approx(result.objective_value, rel=1e-9)
        assert piece.sent_bytes == result.metrics.sent_bytes
        assert piece.device_energy_j == pytest.approx(result.metrics.device_energy_j, rel=1e-9)
        # the same cut, up to the side a kernel's free member (folded bn, fused activation) sits on:
        # moving one across prices the same (a tie the solver breaks either way)
        anchors = set(fuse(graph))
        moved = set(piece.device_nodes) ^ set(result.device_nodes)
        assert not moved & anchors, moved


def test_every_piece_is_priced_with_its_own_cut_as_the_fusion_boundary(trt, link):
    deployed, graph = trt
    policy = split_policy(graph, deployed, link, LOW_BPS, HIGH_BPS)
    for piece in policy.pieces:
        rate = math.sqrt(piece.low_bps * piece.high_bps)
        problem = split_problem(graph, deployed, boundary=piece.device_nodes)
        x = np.array([name in set(piece.device_nodes) for name in problem.names])
        ev = evaluate(problem, x, link.figures(rate))
        assert piece.device_energy_j == pytest.approx(ev.device_energy_j, rel=1e-12)
        assert piece.objective_at(rate) == pytest.approx(ev.total_energy_j, rel=1e-9)
    fused = split_problem(graph, deployed)  # the graph is left priced without a cut
    assert graph.total_energy_j == pytest.approx(float(fused.energy_j.sum()), rel=1e-12)


@pytest.mark.parametrize("mode", ["eager", "graph"])
def test_other_modes_are_priced_once_without_a_cut(mode, link):
    deployed = Deployment.of("xavier-nx", mode=mode, precision="fp16")
    graph = traced("torchvision:resnet18", deployed)
    policy = split_policy(graph, deployed, link, LOW_BPS, HIGH_BPS)
    plain = bandwidth_policy(SplitSolver(split_problem(graph, deployed)), link, LOW_BPS, HIGH_BPS)
    assert policy.pieces == plain.pieces and policy.solves == plain.solves
