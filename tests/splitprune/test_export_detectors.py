"""Head/tail of torch.export (ATen) graphs: YOLO11n and an SSDlite backbone+head, nested outputs."""

from __future__ import annotations

import json
import random

import pytest
import torch
import torchvision
from torch.utils._pytree import tree_leaves, tree_structure

from splitprune.export import export_split, split_modules


class _SSDNetwork(torch.nn.Module):
    """SSDlite's backbone and head (the network; anchors and NMS are post-processing)."""

    def __init__(self) -> None:
        super().__init__()
        ssd = torchvision.models.detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None)
        self.backbone, self.head = ssd.backbone, ssd.head

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.head(list(self.backbone(x).values()))


def _exported(model: torch.nn.Module, x: torch.Tensor):
    model.eval()
    gm = torch.export.export(model, (x,), strict=False).module()
    detect = getattr(model, "model", [None])[-1]
    if hasattr(detect, "shape"):  # export leaves fake anchors cached in YOLO's Detect: rebuild them
        detect.shape = None
    with torch.no_grad():
        reference = model(x.clone())
    return gm, reference


@pytest.fixture(scope="module")
def yolo():
    tasks = pytest.importorskip("ultralytics.nn.tasks")
    torch.manual_seed(0)
    x = torch.randn(1, 3, 160, 160)
    return (*_exported(tasks.DetectionModel("yolo11n.yaml", verbose=False), x), x)


@pytest.fixture(scope="module")
def ssd():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 320, 320)
    return (*_exported(_SSDNetwork(), x), x)


def _closed_placements(gm, count, seed):
    """Random device sets closed under predecessors: the ancestors of a few random nodes."""
    nodes = [n for n in gm.graph.nodes if n.op not in ("get_attr", "output", "call_module")]
    rng = random.Random(seed)
    for _ in range(count):
        seen, stack = set(), rng.sample(nodes, 3)
        while stack:
            n = stack.pop()
            if n.name not in seen and n.op != "get_attr":
                seen.add(n.name)
                stack.extend(n.all_input_nodes)
        yield seen


def _plain(value):
    """fx's read-only ``immutable_dict``/``immutable_list`` (dict and list subclasses) as dict and list."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(map(_plain, value)) if type(value) in (list, tuple) else list(map(_plain, value))
    return value


def _assert_same(out, reference):
    assert tree_structure(_plain(out)) == tree_structure(_plain(reference))
    for got, want in zip(tree_leaves(out), tree_leaves(reference), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("model", ["yolo", "ssd"])
def test_tail_of_head_reproduces_nested_outputs_and_only_tensors_cross(model, request):
    gm, reference, x = request.getfixturevalue(model)
    splits = 0
    for device in _closed_placements(gm, 12, seed=len(model)):
        parts = split_modules(gm, device)
        with torch.no_grad():
            crossing = parts.head(x)
            assert all(isinstance(t, torch.Tensor) for t in crossing), parts.crossing
            _assert_same(parts.tail(*crossing), reference)
        splits += not parts.all_local
    assert splits >= 6


def test_yolo_tuple_elements_are_taken_on_the_device_and_anchors_rebuilt_by_the_tail(yolo):
    gm, reference, x = yolo
    chunk = next(n for n in gm.graph.nodes if "chunk" in str(n.target))
    device = {n.name for n in gm.graph.nodes if n.op != "get_attr"}
    order = [n.name for n in gm.graph.nodes]
    device = {n for n in device if order.index(n) <= order.index(chunk.name)}
    anchors = {n.name for n in gm.graph.nodes if "arange" in str(n.target)}
    parts = split_modules(gm, device | anchors)
    assert chunk.name not in parts.crossing  # its elements cross, not the list
    assert not anchors & set(parts.crossing)  # computed from constants: the tail rebuilds them
    with torch.no_grad():
        _assert_same(parts.tail(*parts.head(x)), reference)


def test_in_place_ops_become_out_of_place_and_the_input_is_not_changed(ssd):
    gm, reference, x = ssd
    assert any(str(n.target).endswith("_.default") for n in gm.graph.nodes)  # relu_, hardswish_
    order = [n.name for n in gm.graph.nodes if n.op not in ("get_attr", "call_module")]
    parts = split_modules(gm, set(order[: len(order) // 2]))
    for part in (parts.head, parts.tail):
        assert not any(str(n.target).endswith("_.default") for n in part.graph.nodes)
        assert not any(n.op == "call_module" for n in part.graph.nodes)  # export guards left out
    before = x.clone()
    with torch.no_grad():
        _assert_same(parts.tail(*parts.head(x)), reference)
    assert torch.equal(x, before)


def test_all_local_head_returns_the_model_output(yolo):
    gm, reference, x = yolo
    parts = split_modules(gm, {n.name for n in gm.graph.nodes})
    assert parts.all_local
    with torch.no_grad():
        (out,) = parts.head(x)
        _assert_same(out, reference)
        _assert_same(parts.tail(out), reference)


def test_an_all_local_yolo_split_exports_and_its_programs_reproduce_the_model(tmp_path):
    """The pass-through tail is exported on what the exported head returns (its containers included).

    The manifest's check runs the exported programs' ``tail(*head(x))`` against the traced model.
    """
    pytest.importorskip("ultralytics")
    from splitprune.graph import trace
    from splitprune.models import load_model

    torch.manual_seed(0)
    model, x = load_model("ultralytics:yolov8n").module.eval(), torch.randn(1, 3, 160, 160)
    gm = trace(model, x).gm
    manifest = export_split(gm, {n.name for n in gm.graph.nodes}, (x,), tmp_path, model="yolov8n")
    assert manifest["all_local"] and manifest["check"]["max_abs_error"] == 0.0
    assert (tmp_path / "head.pt2").is_file() and (tmp_path / "tail.pt2").is_file()


def test_export_writes_yolo_programs_that_reload_and_reproduce_the_model(yolo, tmp_path):
    gm, reference, x = yolo
    order = [n.name for n in gm.graph.nodes if n.op not in ("get_attr", "call_module")]
    device = set(order[: int(0.4 * len(order))])
    manifest = export_split(gm, device, (x,), tmp_path, model="yolo11n")
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest
    assert all(t["out_bytes"] > 0 for t in manifest["crossing"])
    head = torch.export.load(tmp_path / "head.pt2").module()
    tail = torch.export.load(tmp_path / "tail.pt2").module()
    with torch.no_grad():
        _assert_same(tail(*head(x)), reference)


@pytest.mark.parametrize(
    ("spec", "args"),
    [
        pytest.param("ultralytics:yolo11n", ("--input-shape", "1,3,320,320"), id="yolo11n"),
        pytest.param("torchvision:ssdlite320_mobilenet_v3_large", (), id="ssdlite"),
    ],
)
def test_split_cli_exports_programs_that_reproduce_the_model(spec, args, tmp_path):
    if spec.startswith("ultralytics:"):
        pytest.importorskip("ultralytics")
    from cli_runner import run_cli

    from splitprune.models import load_model

    torch.manual_seed(0)  # the CLI builds the model and its example from the same seed as below
    done = run_cli("split", spec, "--link", "5g", "--wire", "int8", "--input-wire", "fp32", *args,
                   "--export", str(tmp_path), "--json")  # fmt: skip
    assert done.code == 0, done.err
    doc = json.loads(done.out)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["check"]["max_abs_error"] < 1e-4
    assert sorted(t["name"] for t in manifest["crossing"]) == sorted(c["name"] for c in doc["cut"]) or (
        manifest["all_local"]
    )
    torch.manual_seed(0)
    loaded = load_model(spec)
    shape = tuple(int(d) for d in args[1].split(",")) if args else loaded.input_shape
    model, x = loaded.module.eval(), torch.randn(shape)
    head = torch.export.load(tmp_path / "head.pt2").module()
    tail = torch.export.load(tmp_path / "tail.pt2").module()
    with torch.no_grad():
        _assert_same(tail(*head(x)), model(x))
