"""How tensors travel: the wire format of intermediate tensors and of the graph's input.

Intermediate tensors (``--wire``) are floats: ``fp32``, ``fp16``, ``int8`` or ``ratio:R``. The graph's
input (``--input-wire``) is a camera frame before normalisation, priced on its own: ``fp32``/``fp16``
(the float tensor as the model sees it), ``uint8`` (raw 8-bit pixels, the default), ``jpeg:QUALITY``
or a fixed byte count per input tensor.

The JPEG size of an ``H x W`` image is ``JPEG_HEADER_BYTES + bpp(Q) * H * W / 8`` with ``bpp`` the mean
bits per pixel measured by ``benchmarks/bench_jpeg.py`` on 27 crops (224 x 224) of the real photos that
ship with scikit-learn and matplotlib, encoded by Pillow/libjpeg with 4:2:0 subsampling; qualities in
between are interpolated linearly, below 10 the quality-10 figure is used. Per-image sizes vary about
2x either way around the mean (see the README table); pass a byte count when you know yours.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import SplitpruneError

__all__ = ["JPEG_BITS_PER_PIXEL", "JPEG_HEADER_BYTES", "InputWire", "WireFormat", "jpeg_bytes"]

_FLOAT_DTYPES = {"float32": 4, "float": 4, "float64": 8, "double": 8, "float16": 2, "half": 2,
                 "bfloat16": 2}

# Measured by benchmarks/bench_jpeg.py (Pillow 13.0, libjpeg, 4:2:0): quality -> mean bits per pixel
# after the header over 27 crops of 224 x 224 (3 centre crops, 24 random crops) of china.jpg,
# flower.jpg (scikit-learn) and grace_hopper.jpg (matplotlib). Header: an 8 x 8 image's size.
JPEG_BITS_PER_PIXEL = {10: 0.376, 25: 0.668, 50: 1.052, 75: 1.588, 85: 2.128, 90: 2.663, 95: 3.791,
                       100: 7.244}
JPEG_HEADER_BYTES = 629


def jpeg_bytes(height: int, width: int, quality: int) -> int:
    """Estimated JPEG bytes of one ``height x width`` colour image at ``quality`` (1-100)."""
    qualities = sorted(JPEG_BITS_PER_PIXEL)
    bpp = float(np.interp(quality, qualities, [JPEG_BITS_PER_PIXEL[q] for q in qualities]))
    return JPEG_HEADER_BYTES + int(np.ceil(bpp * height * width / 8))


@dataclass(frozen=True)
class WireFormat:
    """How a floating-point tensor travels: ``fp32``, ``fp16``, ``int8`` or ``ratio:R``.

    Attributes:
        name: The spelling used on the command line.
        bytes_per_element: Wire bytes per element for floating tensors (``None`` for a ratio).
        ratio: Compression ratio applied to the native bytes (``ratio:R``), else 1.
        header_bytes: Bytes added per tensor (int8: fp32 scale and int32 zero point).
    """

    name: str = "fp32"
    bytes_per_element: float | None = 4.0
    ratio: float = 1.0
    header_bytes: int = 0

    @classmethod
    def parse(cls, text: str) -> WireFormat:
        """Parse ``fp32``, ``fp16``, ``int8`` or ``ratio:R`` (R > 0); raise SplitpruneError else."""
        spelled = text.strip().lower()
        if spelled in ("fp32", "fp16"):
            return cls(spelled, 4.0 if spelled == "fp32" else 2.0)
        if spelled == "int8":
            return cls("int8", 1.0, header_bytes=8)
        match = re.fullmatch(r"ratio:([0-9.eE+-]+)", spelled)
        if match:
            try:
                ratio = float(match.group(1))
            except ValueError:
                ratio = -1.0
            if ratio > 0:
                return cls(f"ratio:{ratio:g}", None, ratio=ratio)
        raise SplitpruneError(f"bad wire format {text!r}: use fp32, fp16, int8 or ratio:R with R > 0")

    def wire_bytes(self, out_bytes: int, dtype: str) -> int:
        """Bytes on the wire for a tensor of ``out_bytes`` native bytes of ``dtype``."""
        if out_bytes <= 0:
            return 0
        if self.bytes_per_element is None:
            return int(np.ceil(out_bytes / self.ratio))
        itemsize = _FLOAT_DTYPES.get(dtype.removeprefix("torch."))
        if itemsize is None:  # integer, bool or unknown: sent as is
            return int(out_bytes)
        return int(np.ceil(out_bytes / itemsize * self.bytes_per_element)) + self.header_bytes


@dataclass(frozen=True)
class InputWire:
    """How the graph's input travels: ``fp32``, ``fp16``, ``uint8``, ``jpeg:Q`` or a byte count.

    Attributes:
        name: The spelling used on the command line.
        kind: ``float`` (bytes per element), ``uint8``, ``jpeg`` or ``bytes``.
        bytes_per_element: For ``float`` and ``uint8``.
        quality: JPEG quality (1-100) for ``jpeg``.
        fixed_bytes: Bytes per input tensor for ``bytes``.
    """

    name: str = "uint8"
    kind: str = "uint8"
    bytes_per_element: float = 1.0
    quality: int = 0
    fixed_bytes: int = 0

    @classmethod
    def parse(cls, text: str) -> InputWire:
        """Parse ``fp32``, ``fp16``, ``uint8``, ``jpeg:Q`` (1-100) or a positive byte count."""
        spelled = text.strip().lower()
        if spelled in ("fp32", "fp16"):
            return cls(spelled, "float", 4.0 if spelled == "fp32" else 2.0)
        if spelled == "uint8":
            return cls()
        match = re.fullmatch(r"jpeg:([0-9]+)", spelled)
        if match and 1 <= int(match.group(1)) <= 100:
            return cls(f"jpeg:{int(match.group(1))}", "jpeg", quality=int(match.group(1)))
        if re.fullmatch(r"[0-9]+", spelled) and int(spelled) > 0:
            return cls(f"{int(spelled)} bytes", "bytes", fixed_bytes=int(spelled))
        raise SplitpruneError(
            f"bad --input-wire {text!r}: use fp32, fp16, uint8, jpeg:QUALITY (1-100) or a byte count"
        )

    def wire_bytes(self, out_bytes: int, dtype: str, shapes: Any = ()) -> int:
        """Bytes on the wire for an input tensor (``shapes``: its output shapes, e.g. ``[(1,3,H,W)]``).

        Raises:
            SplitpruneError: ``jpeg`` for a tensor that is not an image batch ``(N, C, H, W)``, C in 1, 3.
        """
        if out_bytes <= 0:
            return 0
        if self.kind == "bytes":
            return self.fixed_bytes
        itemsize = _FLOAT_DTYPES.get(dtype.removeprefix("torch."))
        if itemsize is None:  # token ids, masks: sent as they are
            return int(out_bytes)
        if self.kind != "jpeg":
            return int(np.ceil(out_bytes / itemsize * self.bytes_per_element))
        shape = tuple(shapes[0]) if len(shapes) == 1 else ()
        if len(shape) == 3:
            shape = (1, *shape)
        if len(shape) != 4 or shape[1] not in (1, 3):
            raise SplitpruneError(
                f"--input-wire {self.name} needs an image input (N, C, H, W) with C = 1 or 3, got "
                f"{list(shapes)}; use uint8 or a byte count"
            )
        n, c, h, w = (int(d) for d in shape)
        per_image = jpeg_bytes(h, w, self.quality)
        if c == 1:  # assumption: bits scale with samples; luma is 2/3 of the 4:2:0 samples
            per_image = JPEG_HEADER_BYTES + int(np.ceil((per_image - JPEG_HEADER_BYTES) * 2 / 3))
        return n * per_image
