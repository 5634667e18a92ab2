"""Model families people deploy on Jetsons, built with no download: YOLO, torchvision detectors, timm, HF.

Each ``NAME -> (factory, input shape)`` resolver here backs one spec prefix of
:func:`splitprune.models.load_model`. Optional packages (ultralytics, timm, transformers) are imported
only inside their resolver; ultralytics is AGPL-3.0 and stays an optional extra (``.[detect]``).

torchvision's detectors run data-dependent post-processing inside ``forward`` (anchor decoding,
score filtering, NMS), which no tracer can turn into a static graph. :func:`network_of` wraps them in
their traceable network (normalisation, backbone, heads: what runs on the accelerator) and records the
rest as a :class:`PostProcess` that :func:`splitprune.graph.trace` adds as one named, priced node.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from .errors import ModelLoadError

__all__ = ["HF_CONFIGS", "TORCHVISION_INPUT_SHAPES", "PostProcess", "network_of"]

Resolved = tuple[Callable[[], Any], tuple[int, ...]]


@dataclass(frozen=True)
class PostProcess:
    """Data-dependent post-processing that runs after the traced network (on the CPU, as deployed).

    Attributes:
        name: What it is, e.g. ``"box decoding + NMS (torchvision SSD.postprocess_detections)"``.
        ops: Elementwise operations it costs at most (decoding every anchor, scoring every class).
        mem_bytes: Bytes it reads (the network's raw outputs) and writes, at most.
        dispatches: Kernel-sized steps it takes (one per op the reference implementation runs).
    """

    name: str
    ops: int
    mem_bytes: int
    dispatches: int

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form."""
        return asdict(self)


# Default inputs of the detectors and segmenters: the size each model resizes to (min_size).
TORCHVISION_INPUT_SHAPES: dict[str, tuple[int, ...]] = {
    "ssdlite320_mobilenet_v3_large": (1, 3, 320, 320),
    "ssd300_vgg16": (1, 3, 300, 300),
    "fasterrcnn_mobilenet_v3_large_320_fpn": (1, 3, 320, 320),
    **{
        name: (1, 3, 800, 800)
        for name in ("fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2",
                     "fasterrcnn_mobilenet_v3_large_fpn", "retinanet_resnet50_fpn",
                     "retinanet_resnet50_fpn_v2", "fcos_resnet50_fpn", "maskrcnn_resnet50_fpn",
                     "maskrcnn_resnet50_fpn_v2", "keypointrcnn_resnet50_fpn")
    },  # fmt: skip
    **{
        name: (1, 3, 520, 520)
        for name in ("deeplabv3_mobilenet_v3_large", "deeplabv3_resnet50", "deeplabv3_resnet101",
                     "fcn_resnet50", "fcn_resnet101", "lraspp_mobilenet_v3_large")
    },  # fmt: skip
}


class _Normalize(nn.Module):
    """The detector transform's per-channel normalisation, on a batched tensor."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: list[float], std: list[float], device: torch.device) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, device=device).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, device=device).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class DenseDetectorNetwork(nn.Module):
    """SSD, SSDlite, RetinaNet, FCOS without their post-processing: returns the heads' raw outputs.

    The input must already have the model's size (the transform's resize is pre-processing).
    """

    def __init__(self, detector: Any) -> None:
        super().__init__()
        device = next(detector.parameters()).device
        self.normalize = _Normalize(detector.transform.image_mean, detector.transform.image_std, device)
        self.backbone = detector.backbone
        self.head = detector.head
        self.splitprune_postprocess_name = (
            f"anchor decoding + score filter + NMS ({type(detector).__name__}.postprocess_detections)"
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        features = self.backbone(self.normalize(x))
        features = list(features.values()) if isinstance(features, dict) else [features]
        return tuple(self.head(features).values())


class TwoStageDetectorNetwork(nn.Module):
    """Faster R-CNN's network with static stand-ins for its data-dependent steps (estimates only).

    The RPN keeps its ``post_nms_top_n`` best-scoring anchors without NMS (the most proposals NMS can
    leave), and RoIAlign pools every proposal from the finest FPN level (the level each proposal
    pools from depends on its size, not the cost): the same shapes and MACs as the real model with
    the most proposals, not the same numbers.
    """

    def __init__(self, detector: Any) -> None:
        super().__init__()
        device = next(detector.parameters()).device
        self.normalize = _Normalize(detector.transform.image_mean, detector.transform.image_std, device)
        self.backbone = detector.backbone
        self.rpn_head = detector.rpn.head
        self.box_head = detector.roi_heads.box_head
        self.box_predictor = detector.roi_heads.box_predictor
        self.proposals = int(detector.rpn._post_nms_top_n["testing"])
        self.pool_size = detector.roi_heads.box_roi_pool.output_size
        self.sampling_ratio = int(detector.roi_heads.box_roi_pool.sampling_ratio)
        self.splitprune_postprocess_name = (
            f"RPN proposal NMS + box decoding + per-class NMS ({type(detector).__name__})"
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from torchvision.ops import roi_align

        features = list(self.backbone(self.normalize(x)).values())
        objectness, deltas = self.rpn_head(features)
        scores = torch.cat([o.flatten(1) for o in objectness], dim=1)
        boxes = torch.cat([d.permute(0, 2, 3, 1).reshape(d.shape[0], -1, 4) for d in deltas], dim=1)
        k = min(self.proposals, scores.shape[1])
        top = scores.topk(k, dim=1).indices
        chosen = torch.gather(boxes, 1, top.unsqueeze(-1).expand(-1, -1, 4)).abs()
        rois = torch.cat([torch.zeros_like(chosen[..., :1]), chosen], dim=-1).reshape(-1, 5)
        scale = features[0].shape[-1] / x.shape[-1]
        pooled = roi_align(features[0], rois, self.pool_size, scale, self.sampling_ratio, True)
        return self.box_predictor(self.box_head(pooled))


def network_of(model: nn.Module) -> nn.Module:
    """The traceable network of a torchvision detector (itself for every other model)."""
    from torchvision.models.detection import FCOS, FasterRCNN, RetinaNet
    from torchvision.models.detection.ssd import SSD

    if isinstance(model, (SSD, RetinaNet, FCOS)):
        return DenseDetectorNetwork(model)
    if isinstance(model, FasterRCNN) and not (model.roi_heads.has_mask() or model.roi_heads.has_keypoint()):
        return TwoStageDetectorNetwork(model)
    if isinstance(model, FasterRCNN):
        raise ModelLoadError(
            f"{type(model).__name__} (mask/keypoint heads run on the detections) is not supported yet; "
            "use a fasterrcnn_*, retinanet_*, ssd* or fcos_* model"
        )
    return model


def postprocess_of(model: nn.Module, outputs_bytes: int, outputs_numel: int) -> PostProcess | None:
    """The post-processing record of a detector network, sized by its raw outputs; None for others."""
    name = getattr(model, "splitprune_postprocess_name", None)
    if name is None:
        return None
    # Decode, score and threshold every output value once or twice; NMS over what survives is
    # bounded by the same order (torchvision caps candidates per class before NMS).
    return PostProcess(name=name, ops=4 * outputs_numel, mem_bytes=2 * outputs_bytes, dispatches=8)


# --- ultralytics (AGPL-3.0, optional) ------------------------------------------------------------


TRAIN_SUFFIX = "@train"
"""Suffix of an ``ultralytics:`` spec asking for the unfused training graph (BatchNorm, RepConv branches)."""


def ultralytics(name: str) -> Resolved:
    """``ultralytics:yolo11n`` -> the YOLO built from the yaml shipped with ultralytics, no weights, fused.

    Fused as Ultralytics deploys it: its predictor, ``val``, ``benchmark`` and every export run
    ``model.fuse()`` (``AutoBackend(fuse=True)``) first, folding each BatchNorm into its conv and
    re-parameterising RepConv/RepVGGDW, so the graph we price is the one Ultralytics times. Append
    ``@train`` (``ultralytics:yolo11n@train``) for the unfused training graph, e.g. to fine-tune it.
    """
    for key, value in (("YOLO_OFFLINE", "True"), ("YOLO_AUTOINSTALL", "False"), ("YOLO_VERBOSE", "False")):
        os.environ.setdefault(key, value)
    try:
        with contextlib.redirect_stdout(sys.stderr):  # its first import announces a settings file on stdout
            from ultralytics.nn import tasks
    except ImportError:
        raise ModelLoadError(
            "ultralytics is not installed: pip install 'splitprune[detect]' (AGPL-3.0) for ultralytics: specs"
        ) from None
    name, train = (name[: -len(TRAIN_SUFFIX)], True) if name.endswith(TRAIN_SUFFIX) else (name, False)
    cfg = name if name.endswith(".yaml") else f"{name}.yaml"
    try:
        task = tasks.guess_model_task(cfg)
    except Exception:  # ultralytics raises plain Exceptions for names it does not know
        task = "detect"
    classes = {
        "detect": tasks.DetectionModel, "segment": tasks.SegmentationModel, "pose": tasks.PoseModel,
        "obb": tasks.OBBModel, "classify": tasks.ClassificationModel,
    }  # fmt: skip
    if task not in classes:
        raise ModelLoadError(f"ultralytics task {task!r} of {name!r} is not supported: use a detect model")
    size = 224 if task == "classify" else 640

    def build() -> nn.Module:
        try:
            with contextlib.redirect_stdout(sys.stderr):
                model = classes[task](cfg, verbose=False)
                return model if train else model.fuse(verbose=False)
        except FileNotFoundError:
            raise ModelLoadError(
                f"ultralytics has no model yaml for {name!r}: use e.g. yolo11n, yolov8s, yolov5nu, yolo26n"
            ) from None

    return build, (1, 3, size, size)


# --- timm ------------------------------------------------------------------------------------------


def timm(name: str) -> Resolved:
    """``timm:NAME`` -> ``timm.create_model(NAME, pretrained=False)`` at its default resolution."""
    try:
        import timm as timm_lib
    except ImportError:
        raise ModelLoadError("timm is not installed: pip install 'splitprune[timm]'") from None
    if not timm_lib.list_models(name):
        raise ModelLoadError(f"unknown timm model {name!r}: see timm.list_models()")
    config = timm_lib.get_pretrained_cfg(name)
    size = tuple(config.input_size) if config is not None else (3, 224, 224)
    return (lambda: timm_lib.create_model(name, pretrained=False)), (1, *size)


# --- Hugging Face transformers -------------------------------------------------------------------

HF_CONFIGS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "bert-base-uncased": ("BertConfig", "BertModel", {}),
    "google-bert/bert-base-uncased": ("BertConfig", "BertModel", {}),
    "distilbert-base-uncased": ("DistilBertConfig", "DistilBertModel", {}),
    "distilbert/distilbert-base-uncased": ("DistilBertConfig", "DistilBertModel", {}),
    "roberta-base": ("RobertaConfig", "RobertaModel", {"vocab_size": 50265}),
    "gpt2": ("GPT2Config", "GPT2Model", {}),
    "openai-community/gpt2": ("GPT2Config", "GPT2Model", {}),
    "google/vit-base-patch16-224": ("ViTConfig", "ViTModel", {}),
    "facebook/deit-small-patch16-224": (
        "ViTConfig", "ViTModel", {"hidden_size": 384, "num_attention_heads": 6, "intermediate_size": 1536},
    ),
    "microsoft/resnet-50": ("ResNetConfig", "ResNetModel", {}),
    "facebook/detr-resnet-50": ("DetrConfig", "DetrModel", {"use_pretrained_backbone": False}),
}
"""Model ids built from config classes shipped with transformers: (config class, model class, overrides).

The defaults of ``BertConfig``, ``DistilBertConfig``, ``GPT2Config``, ``ViTConfig`` and
``ResNetConfig`` are those models' published configs; the overrides make the rest match theirs.
"""

_HF_TEXT_TOKENS = 128


class _TokenModel(nn.Module):
    """A text model fed token ids as a float tensor (what splitprune traces); returns its hidden states."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=token_ids.long()).last_hidden_state


class _PixelModel(nn.Module):
    """A vision model on ``pixel_values``; returns its first output tensor."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values)[0]


def hugging_face(model_id: str) -> Resolved:
    """``hf:MODEL_ID`` -> the transformers model built from its shipped config class (nothing fetched)."""
    if model_id not in HF_CONFIGS:
        raise ModelLoadError(
            f"hf:{model_id} has no config shipped with splitprune (nothing is downloaded): use one of "
            + ", ".join(sorted(HF_CONFIGS))
        )
    try:
        import transformers
    except ImportError:
        raise ModelLoadError("transformers is not installed: pip install 'splitprune[hf]'") from None
    config_name, model_name, overrides = HF_CONFIGS[model_id]
    config = getattr(transformers, config_name)(**overrides)
    model_class = getattr(transformers, model_name)
    if hasattr(config, "vocab_size") and not hasattr(config, "image_size"):
        return (lambda: _TokenModel(model_class(config))), (1, _HF_TEXT_TOKENS)
    size = int(getattr(config, "image_size", 224))
    return (lambda: _PixelModel(model_class(config))), (1, 3, size, size)
