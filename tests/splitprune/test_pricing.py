"""The one pricing path: a Deployment parsed once, price(), its resource table, launch, batch, studies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchvision
from cli_runner import run_cli

from splitprune import Deployment, annotate, price, trace
from splitprune.board import load_board
from splitprune.errors import ConfigError
from splitprune.models import load_model
from splitprune.pricing import SCALES, resource_factors
from splitprune.prune import prune_to_budget
from splitprune.study import StudySpec, expand
from splitprune.study.spec import Job

SHIPPED = Path(__file__).resolve().parents[2] / "configs" / "boards" / "xavier_nx.toml"
NO_GRAPH_TABLE = SHIPPED.with_name("agx_xavier.toml")  # ships no [runtimes.tensorrt.launch.cuda-graph]


def _graph(name: str = "squeezenet1_0", shape: tuple[int, ...] = (1, 3, 96, 96)):
    return trace(load_model(f"torchvision:{name}", device="meta").module, torch.empty(shape, device="meta"))


def test_price_returns_costs_and_annotate_writes_exactly_them():
    graph = _graph()
    deployed = Deployment.of("xavier-nx", mode="tensorrt", precision="int8")
    costs = price(graph, deployed)
    assert "energy_j" not in graph.nodes[graph.order[-2]]  # price does not touch the graph
    annotate(graph, deployed)
    assert graph.total_energy_j == pytest.approx(costs.total_energy_j, rel=1e-12)
    assert all(graph.nodes[n]["latency_s"] == costs.latency_s[n] for n in graph.order)
    fused = [n for n in graph.order if costs.kernel[n] not in (None, n)]
    assert fused and all(costs.energy_j[n] == 0.0 for n in fused)  # members: the anchor pays


def test_every_coefficient_names_the_resources_that_scale_it():
    resources = {r for rs in SCALES.values() for r in rs}
    assert {"gpu_clock_x_sms", "emc_clock", "cpu_clock", "bytes_per_element", "gpu_volts2"} <= resources
    factors, _ = resource_factors(Deployment.of("xavier-nx", mode="tensorrt", precision="fp16",
                                                power_mode="MODE_10W_4CORE"))
    assert factors["gpu_clock_x_sms"] == pytest.approx(1_109_250_000 / 803_250_000)
    assert factors["emc_clock"] == pytest.approx(1_866_000_000 / 1_600_000_000)
    assert factors["bytes_per_element"] == 0.5 and factors["cpu_dispatch"] == 0.0
    assert 0 < factors["gpu_volts2"] < 1


def test_explicit_clocks_equal_to_a_mode_price_as_that_mode_and_lower_clocks_cost_time():
    graph = _graph()
    named = Deployment.of("xavier-nx", mode="graph", power_mode="MODE_10W_4CORE")
    text = "gpu=803.25MHz,emc=1.6GHz,cpu=1190400kHz,cpu_cores=4"
    clocks = Deployment.of("xavier-nx", mode="graph", clocks=text)
    assert clocks.power_mode == "custom" and clocks.to_dict()["explicit_clocks"]
    a, b = price(graph, named), price(graph, clocks)
    assert b.total_latency_s == pytest.approx(a.total_latency_s, rel=1e-12)
    assert b.total_energy_j == pytest.approx(a.total_energy_j, rel=1e-12)
    slow = price(graph, Deployment.of("xavier-nx", mode="graph", clocks="gpu=400MHz"))
    assert slow.total_latency_s > a.total_latency_s


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"clocks": "gpu=1.1"}, None),
        ({"clocks": "gpu=-3MHz"}, "positive frequency"),
        ({"clocks": "vram=3MHz"}, "unknown --clocks key 'vram'"),
        ({"clocks": "cpu_cores=two"}, "whole number"),
        ({"launch": "cuda-graph"}, "--launch applies to --mode tensorrt"),
        ({"mode": "tensorrt", "launch": "graphs"}, "unknown launch 'graphs'"),
        ({"batch": 0}, "batch must be"),
        ({"precision": "int8"}, "int8 needs a quantising runtime"),
    ],
)
def test_deployment_options_are_checked_once_with_the_fix(options, message):
    if message is None:
        assert Deployment.of("xavier-nx", **options).clocks.gpu_clock_hz == 1.1
        return
    with pytest.raises(ConfigError, match=message):
        Deployment.of("xavier-nx", **options)


def test_a_launch_without_evidence_is_refused_with_the_fix():
    with pytest.raises(ConfigError, match="no runtimes.tensorrt.launch.cuda-graph costs"):
        Deployment.of(str(NO_GRAPH_TABLE), mode="tensorrt", launch="cuda-graph")


def test_launch_default_is_stated_and_a_cuda_graph_table_is_priced_with_its_source(tmp_path):
    assert Deployment.of("xavier-nx", mode="tensorrt").to_dict()["launch"] == "enqueue"
    assert Deployment.of("xavier-nx", mode="graph").to_dict()["launch"] is None
    shipped_graph = load_board("xavier-nx").runtimes["tensorrt"].launch["cuda-graph"]
    assert shipped_graph.source and shipped_graph.per_inference_s is not None
    text = NO_GRAPH_TABLE.read_text()
    table = ('[runtimes.tensorrt.launch.cuda-graph]\nper_inference_s = 2e-05\nkernel_overhead_s = 1e-06\n'
             'source = "test value, not a measurement"\n\n[provenance]')
    path = tmp_path / "nx.toml"
    path.write_text(text.replace("[provenance]", table, 1))
    graph_launch = Deployment.of(str(path), mode="tensorrt", launch="cuda-graph")
    enqueue = Deployment.of(str(path), mode="tensorrt")
    assert graph_launch.profile.latency_s.per_inference == 2e-05
    assert graph_launch.profile.latency_s.static_per_layer == 1e-06
    shipped = load_board(NO_GRAPH_TABLE).runtimes["tensorrt"]
    assert enqueue.profile.latency_s.per_inference == shipped.per_inference_s
    path.write_text(text.replace("[provenance]", table.replace("source =", "sauce = 1\nsource ="), 1))
    with pytest.raises(ConfigError, match="sauce"):
        load_board(path)


def test_estimate_reports_per_batch_and_per_image_figures():
    runs = {b: run_cli("estimate", "torchvision:squeezenet1_0", "--board", "xavier-nx", "--mode", "tensorrt",
                       "--precision", "fp16", "--input-shape", "1,3,96,96", "--batch", str(b), "--json")
            for b in (1, 8)}
    docs = {b: json.loads(r.out) for b, r in runs.items()}
    assert docs[8]["batch_size"] == 8 and docs[8]["deployment"]["batch"] == 8
    assert docs[8]["energy_per_image_j"] == pytest.approx(docs[8]["total_energy_j"] / 8)
    assert docs[8]["energy_per_image_j"] < docs[1]["energy_per_image_j"]  # the enqueue and kernels amortise
    assert docs[1]["launch"] == "enqueue"


def test_studies_take_every_deployment_axis():
    spec = StudySpec(command="estimate", models=["torchvision:squeezenet1_0"], boards=["xavier-nx"],
                     modes=["graph", "tensorrt"], precisions=["fp16"], power_modes=["all"], batches=[1, 4],
                     launches=["enqueue"])
    jobs = expand(spec)
    modes = list(load_board("xavier-nx").power_modes)
    assert len(jobs) == 2 * len(modes) * 2
    assert {j.launch for j in jobs if j.mode == "graph"} == {None}
    assert {j.launch for j in jobs if j.mode == "tensorrt"} == {"enqueue"}
    assert {j.power_mode for j in jobs} == set(modes) and {j.batch for j in jobs} == {1, 4}
    clocked = expand(StudySpec(command="estimate", models=["m"], boards=["xavier-nx"], clocks=["gpu=600MHz"]))
    assert clocked[0].deployment().power_mode == "custom"
    with pytest.raises(ValueError, match="launches apply to TensorRT"):
        StudySpec(command="estimate", models=["m"], launches=["cuda-graph"])


def test_a_job_without_the_new_axes_keeps_its_id():
    job = Job(command="estimate", model="m", board="tx2")
    assert set(job.to_dict()) == {"command", "model", "board", "mode", "precision", "power_mode", "link",
                                  "rate_bps", "objective", "budget", "settings"}
    assert Job(command="estimate", model="m", board="tx2", batch=4).job_id != job.job_id


def test_prune_under_tensorrt_lands_in_the_window_and_its_channel_model_agrees():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    x = torch.randn(1, 3, 64, 64)
    deployed = Deployment.of("xavier-nx", mode="tensorrt", precision="fp16")
    result = prune_to_budget(model, x, deployed, 0.6, importance="energy")
    budget = 0.6 * result.energy_before_j
    assert 0.97 * budget <= result.energy_after_j <= budget
    assert not any("disagrees" in note for note in result.notes)
    assert result.energy_after_j == pytest.approx(price(trace(model, x), deployed).total_energy_j, rel=1e-9)


def test_split_cli_takes_clocks_and_refuses_a_launch_without_evidence_in_one_line():
    base = ("split", "torchvision:squeezenet1_0", "--board", "xavier-nx", "--link", "5g",
            "--mode", "tensorrt", "--input-shape", "1,3,96,96", "--json")
    slow = run_cli(*base, "--clocks", "gpu=300MHz")
    fast = run_cli(*base)
    assert slow.code == fast.code == 0, slow.err
    a, b = json.loads(slow.out), json.loads(fast.out)
    assert a["deployment"]["power_mode"] == "custom" and a["deployment"]["clocks"]["gpu_clock_hz"] == 3e8
    assert a["all_local"]["device_latency_s"] > b["all_local"]["device_latency_s"]
    refused = run_cli(*base, "--launch", "cuda-graph", "--board", str(NO_GRAPH_TABLE))
    assert refused.code != 0 and "Traceback" not in refused.err
    assert "runtimes.tensorrt.launch.cuda-graph" in refused.err and len(refused.err.strip().splitlines()) == 1
