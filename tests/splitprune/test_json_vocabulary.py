"""One JSON vocabulary across estimate, split and prune: same names for the same things, units in names."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from cli_runner import run_cli

MODEL = "torchvision:resnet18"
SHAPE = ("--input-shape", "1,3,32,32")
RETIRED = {"predecessors", "bytes_sent", "tensors_sent", "link_figures", "objective_kind", "shapes",
           "cross_check_objective", "alpha_w_per_bps", "beta_w"}


def _keys(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from _keys(value, f"{path}.{key}")
    elif isinstance(node, list):
        for item in node:
            yield from _keys(item, path)


def _unit_problem(key: str, value: Any) -> str | None:
    """Why ``key`` breaks the vocabulary, or None."""
    if key in RETIRED:
        return "retired name"
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    rules = {"energy": ("_j", "_fraction", "_per_j"), "latency": ("_s", "_fraction", "_per_s"),
             "bytes": ("_bytes",), "rate": ("_bps",), "power": ("_w",)}
    for word, endings in rules.items():
        if word in key and not key.endswith(endings):
            return f"has '{word}' but does not end with {' or '.join(endings)}"
    return None


@pytest.fixture(scope="module")
def documents() -> dict[str, dict]:
    runs = {
        "estimate": ("estimate", MODEL, *SHAPE, "--json"),
        "split": ("split", MODEL, *SHAPE, "--link", "lte", "--sweep-bandwidth", "1e5:1e9", "--json"),
        "prune": ("prune", MODEL, *SHAPE, "--budget", "0.9", "--json"),
    }
    docs = {}
    for name, args in runs.items():
        done = run_cli(*args)
        assert done.code == 0, done.err
        docs[name] = json.loads(done.out)
    return docs


def test_schema_versions(documents):
    assert documents["estimate"]["schema"] == "splitprune.estimate/1"
    assert documents["split"]["schema"] == "splitprune.split/2"
    assert documents["prune"]["schema"] == "splitprune.prune/2"


@pytest.mark.parametrize("command", ["estimate", "split", "prune"])
def test_keys_follow_the_vocabulary(documents, command):
    problems = {key: why for key, value in _keys(documents[command])
                if (why := _unit_problem(key, value)) is not None}
    assert not problems


def test_estimate_and_split_describe_nodes_with_the_same_names(documents):
    layers = {row["name"]: row for row in documents["estimate"]["layers"]}
    nodes = {row["name"]: row for row in documents["split"]["nodes"]}
    assert layers.keys() == nodes.keys()
    for name, row in nodes.items():
        for key in ("kind", "energy_j", "latency_s", "out_bytes", "inputs"):
            assert row[key] == layers[name][key], (name, key)


def test_link_figures_are_nested_and_objective_names_match(documents):
    split = documents["split"]
    assert split["link"]["name"] and split["link"]["rate_bps"] > 0 and "power_w" in split["link"]
    assert not {"rate_bps", "energy_per_byte_j", "rtt_s"} & split.keys()
    assert split["objective"] == split["policy"]["objective"] == "energy"
    assert documents["prune"]["metric"] == "energy"  # the same word for the same quantity
