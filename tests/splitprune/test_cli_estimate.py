"""The estimate command end to end: table, JSON contract, plot, and one-line errors with exit 2."""

import json
import textwrap

import pytest
from cli_runner import run_cli


def test_json_is_the_only_stdout_and_recomputes():
    code, out, _ = run_cli("estimate", "torchvision:resnet18", "--json")
    assert code in (0, None)
    doc = json.loads(out)
    assert doc["model"] == "torchvision:resnet18"
    assert doc["input_shape"] == [1, 3, 224, 224]
    assert doc["total_macs"] == sum(row["macs"] for row in doc["layers"])
    assert doc["total_energy_j"] == pytest.approx(sum(row["energy_j"] for row in doc["layers"]))
    assert doc["total_latency_s"] == pytest.approx(sum(row["latency_s"] for row in doc["layers"]))
    names = {row["name"] for row in doc["layers"]}
    assert all(set(row["inputs"]) <= names for row in doc["layers"])
    adds = [row for row in doc["layers"] if row["kind"] == "add"]
    assert adds and all(len(row["inputs"]) == 2 for row in adds)


def test_table_plot_and_batch(tmp_path):
    plot = tmp_path / "e.png"
    code, out, err = run_cli(
        "estimate", "torchvision:mobilenet_v2", "--board", "xavier-nx", "--batch", "2", "--plot", str(plot)
    )
    assert code in (0, None)
    assert "Xavier NX" in out and "total:" in out
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert "plot written" in err


def test_user_callable_from_a_file(tmp_path):
    source = tmp_path / "tiny.py"
    source.write_text(textwrap.dedent("""
        from torch import nn
        def build():
            return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
        def not_a_model():
            return 42
    """))
    code, out, _ = run_cli(
        "estimate", f"{source}:build", "--input-shape", "1,1,8,8", "--json"
    )
    assert code in (0, None)
    assert json.loads(out)["total_macs"] == 4 * 36 * 9 + 144 * 2
    code, _, err = run_cli("estimate", f"{source}:not_a_model")
    assert code == 2 and "returned int, not an nn.Module" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["torchvision:resnet5"], "unknown torchvision model 'resnet5': did you mean resnet50"),
        (["resnet18"], "bad model 'resnet18'"),
        (["no_such_pkg.models:net"], "cannot import 'no_such_pkg.models'"),
        (["/nope/model.py:net"], "model file '/nope/model.py' not found"),
        (["torchvision:resnet18", "--input-shape", "1,a,2"], "bad --input-shape"),
        (["torchvision:resnet18", "--input-shape", "1,1,224,224"], "does not fit layer 'conv1'"),
        (["torchvision:resnet18", "--batch", "0"], "--batch must be at least 1"),
        (["torchvision:resnet18", "--board", "orin"], "unknown board 'orin'"),
        (["torchvision:resnet18", "--board", "/nope/b.toml"], "not found"),
    ],
)
def test_user_mistakes_are_one_line_and_exit_2(args, message):
    code, out, err = run_cli("estimate", *args)
    assert code == 2
    assert out == ""
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err
