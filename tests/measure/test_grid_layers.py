from __future__ import annotations

from pathlib import Path

import pytest
import torch

from measure import GridError, load_grid
from measure.layers import LAYERS
from measure.sensor_facts import idle_block_s
from measure.window import plan_window
from splitprune.graph import trace

CONFIGS = Path(__file__).parent.parent.parent / "configs" / "sweeps"
DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("name", ["quick.toml", "full.toml", "gpu.toml"])
def test_shipped_grids_load(name: str):
    grid = load_grid(CONFIGS / name)
    ops = {p.op for p in grid.points}
    assert {"conv", "linear", "batchnorm", "relu", "network"} <= ops
    assert len({p.point_id for p in grid.points}) == len(grid.points)
    assert grid.description


def test_full_grid_keeps_the_documented_method_defaults():
    method = load_grid(CONFIGS / "full.toml").method
    assert method.window_s >= 1.0 and method.min_samples >= 20 and method.windows >= 5


def _estimate_s(name: str, *, period_s: float, interval_s: float, counter: bool, build_s: float) -> float:
    """Sweep duration by the window rule, with the assumptions stated in the grid file's header."""
    grid = load_grid(CONFIGS / name)
    m = grid.method
    plan = plan_window(
        window_s=m.window_s,
        update_period_s=period_s,
        sample_interval_s=interval_s,
        has_counter=counter,
        min_samples=m.min_samples,
    )
    settle_s = max(1.4, 2 * (idle_block_s(m.idle_s, period_s) + plan.tail_s))  # ~1.3 s decay on an H100
    per_point_s = build_s + m.warmup_s + settle_s + m.windows * plan.run_s
    start_s = 2 * m.probe_s + 2 * settle_s
    networks = sum(p.op == "network" for p in grid.points)
    return len(grid.points) * per_point_s + start_s + networks * 1.0


def test_gpu_grid_fits_in_10_minutes_by_the_window_rule():
    # H100: NVML counter tick ~90 ms (data/h100/README.md), NvmlSensor samples every 2 ms
    total_s = _estimate_s("gpu.toml", period_s=0.09, interval_s=0.002, counter=True, build_s=0.2)
    assert total_s < 0.9 * 600  # 10 % margin for retries


def test_full_grid_is_about_an_hour_on_a_jetson():
    # INA3221 sampled every 10 ms, refreshing at least that often; slower boards build layers slower
    total_s = _estimate_s("full.toml", period_s=0.01, interval_s=0.01, counter=False, build_s=0.5)
    assert 50 * 60 < total_s < 70 * 60


def test_cartesian_product_and_defaults():
    grid = load_grid(DATA / "tiny_grid.toml")
    convs = [p for p in grid.points if p.op == "conv"]
    assert len(convs) == 4
    assert convs[0].params == {
        "bias": False,
        "groups": 1,
        "in_channels": 4,
        "kernel_size": 1,
        "kernels": 4,
        "spatial": 8,
        "stride": 1,
    }
    assert (
        convs[0].point_id
        == "conv:bias=false,groups=1,in_channels=4,kernel_size=1,kernels=4,spatial=8,stride=1"
    )


GOOD = 'schema_version = 1\n[provenance]\ndescription = "x"\n'
CONV = "[[conv]]\nin_channels = 4\nkernel_size = 3\nspatial = 8\n"
RELU = "[[relu]]\nchannels = 1\nspatial = 1\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            GOOD + "[[conv]]\nin_channels = 4\nkernals = 4\nkernel_size = 3\nspatial = 8\n",
            "kernals: unknown key",
        ),
        (GOOD + CONV, "missing key 'kernels'"),
        (GOOD + "[[linear]]\nin_features = [0]\nout_features = 3\n", "bad value 0"),
        (GOOD + "[[linear]]\nin_features = 'a'\nout_features = 3\n", "bad value 'a'"),
        (GOOD + "[[pooling]]\nchannels = 3\n", "pooling: unknown table"),
        (GOOD + "[conv]\nin_channels = 3\n", "array of tables"),
        (
            GOOD + "[method]\nwindow = 1.0\n[[relu]]\nchannels = 1\nspatial = 1\n",
            "method.window: unknown key",
        ),
        (GOOD + "[method]\ndevice = 'tpu'\n" + RELU, "use cpu or cuda"),
        (GOOD + "[[network]]\nmodel = 'resnet18'\ninput_shape = [1, 3, 8, 8]\n", "torchvision:NAME"),
        (GOOD + "[[network]]\nmodel = 'torchvision:resnet18'\ninput_shape = [3, 8]\n", "give [N, C, H, W]"),
        (
            GOOD + "[[conv]]\nin_channels = 6\nkernels = 4\nkernel_size = 3\nspatial = 8\ngroups = 3\n",
            "must divide",
        ),
        (GOOD, "no points"),
        ('schema_version = 2\n[provenance]\ndescription = "x"\n', "schema_version: must be 1"),
        ("schema_version = 1\n[[relu]]\nchannels = 1\nspatial = 1\n", "provenance"),
        (GOOD + "[[relu]\n", "not valid TOML"),
    ],
)
def test_malformed_grids_give_one_line_errors(tmp_path: Path, text: str, message: str):
    path = tmp_path / "grid.toml"
    path.write_text(text)
    with pytest.raises(GridError) as info:
        load_grid(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_grid_file(tmp_path: Path):
    with pytest.raises(GridError, match="cannot read"):
        load_grid(tmp_path / "nope.toml")


class _One(torch.nn.Module):
    """Holds the layer as a submodule, as a network would (fx cannot trace ``*inputs``)."""

    def __init__(self, layer: torch.nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return self.layer(x)


class _Two(_One):
    def forward(self, a, b):
        return self.layer(a, b)


class _Three(_One):
    def forward(self, q, k, v):
        return self.layer(q, k, v)


POINTS = {
    "conv": {
        "in_channels": 16,
        "kernels": 24,
        "kernel_size": 3,
        "spatial": 14,
        "stride": 2,
        "groups": 2,
        "bias": True,
    },
    "dwconv": {"channels": 32, "kernel_size": 7, "spatial": 14, "stride": 1, "bias": False},
    "linear": {"in_features": 64, "out_features": 10, "bias": True},
    "batchnorm": {"channels": 8, "spatial": 7},
    "relu": {"channels": 8, "spatial": 7},
    "add": {"channels": 8, "spatial": 7},
    "maxpool": {"channels": 8, "spatial": 14, "kernel_size": 3, "stride": 2},
    "avgpool": {"channels": 8, "spatial": 7},
    "linear_tokens": {"tokens": 5, "in_features": 16, "out_features": 24, "bias": True},
    "matmul": {"heads": 3, "m": 5, "k": 8, "n": 7},
    "sdpa": {"heads": 2, "tokens": 9, "head_dim": 8},
    "mha": {"embed_dim": 16, "heads": 4, "tokens": 9},
    "layernorm": {"tokens": 9, "channels": 16},
    "layernorm2d": {"channels": 16, "spatial": 5},
    "softmax": {"heads": 2, "tokens": 9},
    "gelu": {"tokens": 9, "features": 32},
    "layerscale": {"channels": 16, "spatial": 5},
    "patchify": {"in_channels": 3, "kernels": 8, "patch": 4, "spatial": 16, "bias": True},
}

# The tracer kinds each table must produce (splitprune/ops.py; docs/CONTRACT.md).
KINDS = {
    "conv": "conv", "dwconv": "conv", "linear": "linear", "batchnorm": "bn", "relu": "act", "add": "add",
    "maxpool": "pool", "avgpool": "pool", "linear_tokens": "matmul", "matmul": "matmul",
    "sdpa": "attention", "mha": "attention", "layernorm": "norm", "layernorm2d": "norm",
    "softmax": "softmax", "gelu": "act", "layerscale": "mul", "patchify": "conv",
}  # fmt: skip


def test_every_registry_entry_is_covered():
    assert set(POINTS) == set(LAYERS) == set(KINDS)


@pytest.mark.parametrize("op", sorted(POINTS))
@pytest.mark.parametrize("batch", [1, 2])
def test_layer_counts_match_splitprune_graph(op: str, batch: int):
    """measure counts MACs/bytes itself (it must not import splitprune); the fit needs them to agree."""
    from splitprune.ops import NO_WORK_KINDS

    spec = LAYERS[op]
    module, inputs = spec.build(POINTS[op], batch)
    counts = spec.count(POINTS[op], batch, 4)
    graph = trace((_One, _Two, _Three)[len(inputs) - 1](module).eval(), inputs)
    layers = [graph.nodes[n] for n in graph.order if graph.nodes[n]["kind"] not in NO_WORK_KINDS]
    assert len(layers) == 1, [(graph.nodes[n]["kind"], graph.nodes[n]["target"]) for n in graph.order]
    node = layers[0]
    assert (node["kind"], node["macs"], node["mem_bytes"], node["kernels"]) == (
        KINDS[op],
        counts.macs,
        counts.mem_bytes,
        counts.kernels,
    )
    assert counts.kind == KINDS[op]
    assert counts.input_shape == tuple(inputs[0].shape)
    assert tuple(module(*inputs).shape) == node["output_shapes"][0]  # the module really runs


def test_measure_does_not_import_splitprune():
    import ast

    for source in (Path(__file__).parent.parent.parent / "measure").glob("*.py"):
        tree = ast.parse(source.read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not any(name.startswith("splitprune") for name in names), source
