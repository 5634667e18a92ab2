"""The prune command end to end: JSON contract, saved model and report, plot, one-line errors."""

import json

import pytest
import torch
from cli_runner import run_cli

from splitprune.prune.io import load_pruned


def test_json_output_saved_model_and_plot(tmp_path):
    saved, plot = tmp_path / "pruned.pt", tmp_path / "prune.png"
    code, out, _ = run_cli(
        "prune", "torchvision:resnet18", "--board", "tx2", "--mode", "graph", "--budget", "0.6",
        "--input-shape", "1,3,112,112", "--output", str(saved), "--plot", str(plot), "--json",
    )  # fmt: skip
    assert code in (0, None)
    doc = json.loads(out)
    for key in ("energy_before_j", "energy_after_j", "budget_j", "macs_before", "macs_after",
                "params_before", "params_after", "steps", "output", "layers"):  # fmt: skip
        assert key in doc, key
    assert doc["output"] == str(saved)
    assert 0.97 * doc["budget_j"] <= doc["energy_after_j"] <= doc["budget_j"]
    assert doc["budget_j"] == pytest.approx(0.6 * doc["energy_before_j"])
    assert doc["macs_after"] < doc["macs_before"] and doc["params_after"] < doc["params_before"]
    assert doc["energy_after_j"] == pytest.approx(sum(r["energy_after_j"] for r in doc["layers"]))
    conv1 = next(r for r in doc["layers"] if r["module"] == "layer1.0.conv1")
    assert conv1["channels_before"] == 64 and conv1["energy_after_j"] <= conv1["energy_before_j"]

    report = json.loads(saved.with_suffix(".json").read_text())
    assert report["energy_after_j"] == doc["energy_after_j"]
    model = load_pruned(saved)
    assert sum(p.numel() for p in model.parameters()) == doc["params_after"]
    assert model(torch.zeros(1, 3, 112, 112)).shape == (1, 1000)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_table_for_people():
    code, out, _ = run_cli(
        "prune", "torchvision:resnet18", "--budget", "70%", "--input-shape",
        "1,3,96,96", "--importance", "magnitude", "--round-to", "16", "--mode", "graph",
    )  # fmt: skip
    assert code in (0, None)
    assert "layer1.0.conv1" in out and "within tolerance" in out and "round_to=16" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--budget", "0.02"], "the guards allow"),
        (["--budget", "half"], "bad budget"),
        (["--importance", "l2"], "unknown importance"),
        (["--ignore", "layer1.0.conv9"], "did you mean"),
    ],
)
def test_user_errors_are_one_line_with_exit_2(args, message):
    code, out, err = run_cli("prune", "torchvision:resnet18", "--input-shape", "1,3,64,64", *args)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and message in errors[0]
    assert "Traceback" not in err


def test_unsupported_model_is_one_line():
    code, _, err = run_cli("prune", "torchvision:shufflenet_v2_x0_5", "--input-shape", "1,3,64,64")
    assert code == 2 and "permutes tensor dimensions" in err and "Traceback" not in err


def test_vit_is_pruned_saved_and_re_estimated_from_the_file(tmp_path):
    from splitprune.board import load_board
    from splitprune.energy import annotate
    from splitprune.graph import trace

    saved = tmp_path / "vit.pt"
    code, out, _ = run_cli(
        "prune", "torchvision:vit_b_32", "--board", "tx2", "--budget", "0.7",
        "--output", str(saved), "--json",
    )  # fmt: skip
    assert code in (0, None)
    doc = json.loads(out)
    assert 0.97 * doc["budget_j"] <= doc["energy_after_j"] <= doc["budget_j"]
    mlp = next(r for r in doc["layers"] if r["module"] == "encoder.layers.encoder_layer_0.mlp.0")
    assert mlp["channels_before"] == 3072  # channels of a token linear are its last dimension
    assert torch.load(saved, weights_only=True)["model_spec"] == "torchvision:vit_b_32"
    model = load_pruned(saved)
    x = torch.zeros(doc["input_shape"])
    with torch.no_grad():
        assert model(x).shape == (1, 1000)
    energy_j = annotate(trace(model, x), load_board("tx2")).total_energy_j
    assert energy_j == pytest.approx(doc["energy_after_j"], rel=0.01)
