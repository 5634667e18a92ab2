"""The policy sweep of a TensorRT deployment: each cut priced with its boundary, as ``split_model`` does."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from splitprune import Deployment, split_model
from splitprune.fusion import fuse
from splitprune.link import load_link
from splitprune.split import SplitSolver, bandwidth_policy, evaluate, split_policy, split_problem
from splitprune.split.deployed import traced

LOW_BPS, HIGH_BPS = 1e6, 1e9


class Straddle(nn.Module):
    """A kernel (``c2`` + the ``add`` of a parameter map) whose inner tensor is 64x smaller than its output.

    Priced fused, a cut inside it pays the whole kernel (the map's bytes, the 64-channel write) on
    the device; TensorRT builds two engines there, so the device pays only ``c2``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 64, 3, stride=2, padding=1)
        self.c2 = nn.Conv2d(64, 1, 1)
        self.bias_map = nn.Parameter(torch.randn(1, 64, 56, 56))
        self.c3 = nn.Sequential(*[nn.Conv2d(64, 64, 3, padding=1) for _ in range(4)])
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.c2(torch.relu(self.c1(x))) + self.bias_map
        return self.fc(self.c3(y).mean((2, 3)))


@pytest.fixture(scope="module")
def link():
    return load_link("5g")


@pytest.fixture(scope="module", params=[("resnet18", "xavier-nx", "fp16"), ("resnet18", "orin-nano", "int8"),
                                        ("straddle", "xavier-nx", "fp16")])
def trt(request):
    model, board, precision = request.param
    deployed = Deployment.of(board, mode="tensorrt", precision=precision)
    if model == "straddle":
        torch.manual_seed(0)
        return deployed, traced(Straddle(), deployed, example=torch.randn(1, 3, 112, 112), name=model)
    return deployed, traced(f"torchvision:{model}", deployed)


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


def test_a_cut_inside_a_fused_kernel_is_priced_as_two_engines(link):
    deployed = Deployment.of("xavier-nx", mode="tensorrt", precision="fp16")
    torch.manual_seed(0)
    graph = traced(Straddle(), deployed, example=torch.randn(1, 3, 112, 112), name="straddle")
    fused = bandwidth_policy(SplitSolver(split_problem(graph, deployed)), link, LOW_BPS, HIGH_BPS)
    policy = split_policy(graph, deployed, link, LOW_BPS, HIGH_BPS)
    inside = [p for p in policy.pieces if p.cut == ("c2",)]  # the add (and its map) on the server
    assert inside
    for piece in inside:
        rate = math.sqrt(piece.low_bps * piece.high_bps)
        before = fused.piece_at(rate)
        assert before.cut == ("c2",) and before.device_energy_j > piece.device_energy_j * 1.01
        assert piece.objective_at(rate) == pytest.approx(
            split_model(graph, deployed, link, rate_bps=rate).objective_value, rel=1e-9)
