"""Wire formats: the input priced apart from intermediate tensors; the JPEG estimate vs real encodes."""

from __future__ import annotations

import io

import networkx as nx
import numpy as np
import pytest

from splitprune.errors import SplitpruneError
from splitprune.split import InputWire, SplitProblem, WireFormat
from splitprune.split.wire import JPEG_HEADER_BYTES, jpeg_bytes


def _real_photos() -> list:
    image = pytest.importorskip("PIL.Image")
    datasets = pytest.importorskip("sklearn.datasets")
    return [image.fromarray(a) for a in datasets.load_sample_images().images]


def _jpeg_size(img, quality: int) -> int:
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=quality)
    return buffer.tell()


@pytest.mark.parametrize("quality", [50, 75, 90, 95])
def test_jpeg_estimate_is_within_a_factor_of_two_of_real_encodes(quality):
    # 224 x 224 crops at other offsets than the benchmark's (its centre crops and seeded random crops)
    sizes = []
    for photo in _real_photos():
        for left, top in ((0, 0), (400, 190), (200, 100)):
            sizes.append(_jpeg_size(photo.crop((left, top, left + 224, top + 224)), quality))
    estimate = jpeg_bytes(224, 224, quality)
    assert min(sizes) / 2 <= estimate <= max(sizes) * 2
    assert 0.6 <= estimate / float(np.mean(sizes)) <= 1.6


def test_jpeg_estimate_grows_with_quality_and_pixels():
    sizes = [jpeg_bytes(224, 224, q) for q in range(1, 101, 3)]
    assert all(b >= a for a, b in zip(sizes, sizes[1:], strict=False))
    assert jpeg_bytes(448, 448, 90) - JPEG_HEADER_BYTES == pytest.approx(
        4 * (jpeg_bytes(224, 224, 90) - JPEG_HEADER_BYTES), rel=1e-3)
    assert jpeg_bytes(224, 224, 90) < 224 * 224 * 3  # smaller than raw 8-bit pixels


def test_input_wire_formats():
    native = 2 * 3 * 32 * 32 * 4  # a float32 batch of two 32 x 32 RGB images
    shapes = [(2, 3, 32, 32)]
    assert InputWire.parse("fp32").wire_bytes(native, "float32", shapes) == native
    assert InputWire.parse("fp16").wire_bytes(native, "float32", shapes) == native // 2
    assert InputWire.parse("uint8").wire_bytes(native, "float32", shapes) == native // 4
    assert InputWire.parse("jpeg:90").wire_bytes(native, "float32", shapes) == 2 * jpeg_bytes(32, 32, 90)
    assert InputWire.parse("12345").wire_bytes(native, "float32", shapes) == 12345
    grey = InputWire.parse("jpeg:90").wire_bytes(native // 3, "float32", [(2, 1, 32, 32)])
    assert grey < 2 * jpeg_bytes(32, 32, 90)
    assert InputWire.parse("uint8").wire_bytes(800, "int64", [(1, 100)]) == 800  # token ids as they are


@pytest.mark.parametrize("text", ["png", "jpeg:101", "jpeg:0", "jpeg", "-5", "0", "int8"])
def test_bad_input_wire_is_a_user_error(text):
    with pytest.raises(SplitpruneError, match="input-wire"):
        InputWire.parse(text)


def test_jpeg_of_a_non_image_input_is_a_user_error():
    with pytest.raises(SplitpruneError, match="image input"):
        InputWire.parse("jpeg:80").wire_bytes(4000, "float32", [(1, 1000)])


def test_problem_prices_inputs_with_input_wire_and_the_rest_with_wire():
    g = nx.DiGraph()
    g.add_node("x", energy_j=0.0, latency_s=0.0, out_bytes=3 * 16 * 16 * 4, output_shapes=[(1, 3, 16, 16)])
    g.add_node("a", energy_j=1.0, latency_s=1.0, out_bytes=4000)
    g.add_node("output", energy_j=0.0, latency_s=0.0, out_bytes=40)
    g.add_edges_from([("x", "a"), ("a", "output")])
    problem = SplitProblem.from_digraph(g, ["x", "a", "output"], inputs=["x"], output="output",
                                        wire=WireFormat.parse("fp16"), input_wire=InputWire.parse("jpeg:75"))
    assert problem.wire_bytes.tolist() == [jpeg_bytes(16, 16, 75), 2000, 20]
    default = SplitProblem.from_digraph(g, ["x", "a", "output"], inputs=["x"], output="output",
                                        wire=WireFormat.parse("fp16"))
    assert default.wire_bytes[0] == 3 * 16 * 16 * 2  # without input_wire the input follows --wire
