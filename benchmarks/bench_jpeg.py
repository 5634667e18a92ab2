"""Measure JPEG size per pixel on real photos; prints one JSON document (``--markdown``: a table).

    .venv/bin/python benchmarks/bench_jpeg.py [--markdown]

This is the evidence behind ``--input-wire jpeg:QUALITY`` (``splitprune.split.wire.JPEG_BITS_PER_PIXEL``):
a camera frame is sent as a JPEG, so full offload pays for ``header + bpp(Q) * pixels / 8`` bytes.
Images: the real photos that ship with the installed packages (scikit-learn's ``china.jpg`` and
``flower.jpg``, 640x427; matplotlib's ``grace_hopper.jpg``, 512x600). Each is prepared as a classifier
sees it (shorter side resized to 256/224 of the crop, centre crop of 112, 224 and 448 pixels) and as 8
random 224x224 crops of the full-resolution photo; every crop is encoded with Pillow (libjpeg, 4:2:0
chroma subsampling, standard tables) at several qualities. The header is the size of an 8x8 image
(quantisation and Huffman tables, no content). Runs in a few seconds.
"""

from __future__ import annotations

import argparse
import io
import json
import sys

import numpy as np

QUALITIES = (10, 25, 50, 75, 85, 90, 95, 100)
SIZES = (112, 224, 448)
RANDOM_CROPS = 8


def photos() -> dict:
    """The real photos shipped with scikit-learn and matplotlib, as RGB PIL images."""
    import matplotlib.cbook
    from PIL import Image
    from sklearn.datasets import load_sample_images

    sample = load_sample_images()
    images = {name.rsplit("/", 1)[-1]: Image.fromarray(a) for name, a in zip(sample.filenames, sample.images,
                                                                              strict=True)}
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as handle:
        images["grace_hopper.jpg"] = Image.open(handle).convert("RGB")
    return images


def centre_crop(image, side: int):
    """Resize the shorter side to ``side * 256 / 224`` and cut the centre ``side x side``."""
    from PIL import Image

    width, height = image.size
    scale = side * 256 / 224 / min(width, height)
    image = image.resize((round(width * scale), round(height * scale)), Image.BILINEAR)
    width, height = image.size
    left, top = (width - side) // 2, (height - side) // 2
    return image.crop((left, top, left + side, top + side))


def encoded_bytes(image, quality: int) -> int:
    """Size of ``image`` as a Pillow JPEG at ``quality``."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.tell()


def measure() -> dict:
    """Bits per pixel (after the header) per quality and crop set."""
    from PIL import Image

    images = photos()
    rng = np.random.default_rng(0)
    random_crops = []
    for image in images.values():
        width, height = image.size
        for _ in range(RANDOM_CROPS):
            left, top = int(rng.integers(0, width - 223)), int(rng.integers(0, height - 223))
            random_crops.append(image.crop((left, top, left + 224, top + 224)))
    centre = {side: [centre_crop(image, side) for image in images.values()] for side in SIZES}
    rows = {}
    for quality in QUALITIES:
        header = encoded_bytes(Image.new("RGB", (8, 8), (128, 128, 128)), quality)
        row: dict = {"header_bytes": header}
        for side, crops in centre.items():
            sizes = [encoded_bytes(c, quality) for c in crops]
            row[f"centre_{side}_bpp"] = [8 * (s - header) / side**2 for s in sizes]
        sizes = [encoded_bytes(c, quality) for c in random_crops]
        row["random_224_bpp"] = [8 * (s - header) / 224**2 for s in sizes]
        pooled = row["centre_224_bpp"] + row["random_224_bpp"]
        row["bpp_224_mean"] = float(np.mean(pooled))
        row["bpp_224_min"] = float(np.min(pooled))
        row["bpp_224_max"] = float(np.max(pooled))
        row["fp32_224_over_jpeg"] = 224 * 224 * 3 * 4 / (header + row["bpp_224_mean"] * 224 * 224 / 8)
        rows[str(quality)] = row
    return {"images": {name: list(image.size) for name, image in images.items()},
            "random_crops_per_image": RANDOM_CROPS, "qualities": rows}


def markdown(document: dict) -> str:
    """A README table: bits per pixel at 224x224 and what the model predicts vs measures at 112/448."""
    from splitprune.split.wire import jpeg_bytes

    lines = ["| quality | header B | bits/pixel at 224 (mean, min-max of 27 crops) | KB at 224 | "
             "model/measured at 112 | at 448 | fp32 / JPEG |", "|---|---|---|---|---|---|---|"]
    for quality, row in document["qualities"].items():
        q = int(quality)
        ratios = []
        for side in (112, 448):
            measured = np.mean([row["header_bytes"] + b * side**2 / 8 for b in row[f"centre_{side}_bpp"]])
            ratios.append(jpeg_bytes(side, side, q) / measured)
        lines.append(
            f"| {q} | {row['header_bytes']} | {row['bpp_224_mean']:.2f} ({row['bpp_224_min']:.2f}-"
            f"{row['bpp_224_max']:.2f}) | {jpeg_bytes(224, 224, q) / 1024:.1f} | {ratios[0]:.2f} | "
            f"{ratios[1]:.2f} | {row['fp32_224_over_jpeg']:.0f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="print the README table instead of JSON")
    args = parser.parse_args()
    document = measure()
    document["python"] = sys.version.split()[0]
    if args.markdown:
        print(markdown(document))
    else:
        print(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
