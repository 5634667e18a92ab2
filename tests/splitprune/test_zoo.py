"""Model specs people deploy (YOLO, torchvision detectors, timm, Hugging Face), checked against
references we did not write, and built with no network at all."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision

from splitprune.errors import ModelLoadError
from splitprune.graph import trace
from splitprune.models import load_model

ROOT = Path(__file__).resolve().parents[2]


def _torchvision_ops_gmacs(name: str) -> float:
    """torchvision's documented ``_ops`` (GFLOPS as it counts them: one per multiply-accumulate)."""
    return float(torchvision.models.get_model_weights(name).DEFAULT.meta["_ops"])


def test_ssdlite_is_its_network_plus_a_named_postprocess_node_matching_torchvision_ops():
    loaded = load_model("torchvision:ssdlite320_mobilenet_v3_large", device="meta")
    assert loaded.input_shape == (1, 3, 320, 320)
    graph = trace(loaded.module, torch.empty(loaded.input_shape, device="meta"))
    reference = _torchvision_ops_gmacs("ssdlite320_mobilenet_v3_large")
    assert graph.total_macs / 1e9 == pytest.approx(reference, rel=0.03)
    post = graph.to_dict()["postprocess"]
    assert "NMS" in post["name"] and post["kind"] == "postprocess"
    assert post["mem_bytes"] >= graph.nodes[graph.output]["out_bytes"]


def test_detector_builders_never_ask_for_backbone_weights(monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("a weight download was attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    loaded = load_model("torchvision:fasterrcnn_mobilenet_v3_large_320_fpn", device="meta")
    assert type(loaded.module).__name__ == "TwoStageDetectorNetwork"


def test_mask_rcnn_says_it_is_not_supported():
    with pytest.raises(ModelLoadError, match="not supported"):
        load_model("torchvision:maskrcnn_resnet50_fpn", device="meta")


def test_unknown_specs_are_one_line_errors():
    with pytest.raises(ModelLoadError, match="nothing is downloaded"):
        load_model("hf:someone/private-model")
    pytest.importorskip("timm")
    with pytest.raises(ModelLoadError, match="unknown timm model"):
        load_model("timm:not_a_model_at_all")


def test_timm_and_hugging_face_specs_build_from_shipped_configs():
    pytest.importorskip("timm")
    pytest.importorskip("transformers")
    timm_model = load_model("timm:resnet18", device="meta")
    graph = trace(timm_model.module, torch.empty(timm_model.input_shape, device="meta"))
    assert graph.total_macs / 1e9 == pytest.approx(_torchvision_ops_gmacs("resnet18"), rel=0.03)
    bert = load_model("hf:bert-base-uncased")
    assert bert.input_shape == (1, 128)
    bert_graph = trace(bert.module, torch.zeros(bert.input_shape))
    # BERT-base: 12 layers x (4 d^2 + 2 d * 4d) per token = 85 M MACs/token, plus attention scores.
    per_token = 12 * (4 * 768**2 + 2 * 768 * 3072)
    assert bert_graph.total_macs == pytest.approx(128 * per_token + 12 * 2 * 128 * 128 * 768, rel=0.03)


def _ultralytics_yaml_gflops(name: str) -> float:
    """The GFLOPs at 640 that Ultralytics writes beside each scale in its model yaml (FLOPs = 2 MACs)."""
    import re

    import ultralytics

    family, scale = name[:-1], name[-1]
    (path,) = Path(ultralytics.__file__).parent.glob(f"cfg/models/*/{family}.yaml")
    line = next(line for line in path.read_text().splitlines() if line.strip().startswith(f"{scale}:"))
    return float(re.search(r"([\d.]+) GFLOPs", line, re.IGNORECASE).group(1))


# References we did not write: the GFLOPs in Ultralytics' model yamls (the guide's table at 640 lists
# the same models 1-2 % lower, after fusing batch norms) and torchvision's _ops metadata. The yamls
# count the training graph: YOLO26's fused (inference) model drops its one-to-many head, hence @train.
DONE_WHEN = {
    "ultralytics:yolo11n": ("yaml", "yolo11n"),
    "ultralytics:yolo11s": ("yaml", "yolo11s"),
    "ultralytics:yolo11m": ("yaml", "yolo11m"),
    "ultralytics:yolov8n": ("yaml", "yolov8n"),
    "ultralytics:yolo26n@train": ("yaml", "yolo26n"),  # the yaml counts both heads; fuse() drops one
    "torchvision:ssdlite320_mobilenet_v3_large": ("ops", "ssdlite320_mobilenet_v3_large"),
    "torchvision:fasterrcnn_mobilenet_v3_large_320_fpn": (None, None),
    "torchvision:retinanet_resnet50_fpn_v2": ("ops", "retinanet_resnet50_fpn_v2"),
    "torchvision:deeplabv3_mobilenet_v3_large": ("ops", "deeplabv3_mobilenet_v3_large"),
    "timm:resnet18": ("ops", "resnet18"),
    "hf:bert-base-uncased": (None, None),
}

_OFFLINE_SCRIPT = """
import json, sys, torch
from torch.utils.flop_counter import FlopCounterMode
from splitprune.graph import trace
from splitprune.models import load_model
rows = {}
for spec in sys.argv[1:]:
    loaded = load_model(spec, device="meta")
    graph = trace(loaded.module, torch.empty(loaded.input_shape, device="meta"))
    row = {"macs": graph.total_macs, "tracer": graph.tracer, "postprocess": graph.postprocess is not None}
    if spec.startswith("ultralytics:"):
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            loaded.module(torch.zeros(loaded.input_shape))
        row["flop_counter_macs"] = counter.get_total_flops() // 2
    rows[spec] = row
print(json.dumps(rows))
"""


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")
def test_done_when_specs_build_and_trace_with_no_network_and_match_references():
    for package in ("ultralytics", "timm", "transformers"):
        pytest.importorskip(package)
    probe = subprocess.run(["unshare", "-rn", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("unshare -rn is not permitted here")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        ["unshare", "-rn", sys.executable, "-c", _OFFLINE_SCRIPT, *DONE_WHEN],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads(result.stdout)
    for spec, (source, reference) in DONE_WHEN.items():
        row = rows[spec]
        assert row["macs"] > 0
        if spec.startswith("ultralytics:"):
            assert row["tracer"] == "dispatch"
            assert row["macs"] == pytest.approx(row["flop_counter_macs"], rel=0.03), spec
        else:
            detector = spec.startswith("torchvision:") and "deeplab" not in spec
            assert row["postprocess"] == detector, spec
        if source == "yaml":
            assert 2 * row["macs"] / 1e9 == pytest.approx(_ultralytics_yaml_gflops(reference), rel=0.03), spec
        elif source == "ops":
            assert row["macs"] / 1e9 == pytest.approx(_torchvision_ops_gmacs(reference), rel=0.03), spec


def test_video_models_get_a_clip_shaped_input_and_match_torchvision_ops():
    loaded = load_model("torchvision:r3d_18", device="meta")
    assert loaded.input_shape == (1, 3, 16, 112, 112)
    graph = trace(loaded.module, torch.empty(loaded.input_shape, device="meta"))
    assert graph.total_macs / 1e9 == pytest.approx(_torchvision_ops_gmacs("r3d_18"), rel=0.03)


def test_ultralytics_specs_are_fused_as_ultralytics_deploys_them_and_train_keeps_batchnorm():
    pytest.importorskip("ultralytics")
    x = torch.randn(1, 3, 64, 64)
    outputs, batchnorms = {}, {}
    for spec in ("ultralytics:yolo11n", "ultralytics:yolo11n@train"):
        torch.manual_seed(0)
        module = load_model(spec).module.eval()
        batchnorms[spec] = sum(isinstance(m, torch.nn.BatchNorm2d) for m in module.modules())
        with torch.no_grad():
            outputs[spec] = module(x)[0]
    assert batchnorms["ultralytics:yolo11n"] == 0 < batchnorms["ultralytics:yolo11n@train"]
    # Folding BatchNorm into the conv changes the graph, not the function (Ultralytics' own model.fuse()).
    fused, train = outputs["ultralytics:yolo11n"], outputs["ultralytics:yolo11n@train"]
    assert torch.allclose(fused, train, rtol=1e-4, atol=1e-4 * float(train.abs().max()))
