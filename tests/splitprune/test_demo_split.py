"""The ``split`` lines of ``make demo``, run exactly as the Makefile spells them (outputs in tmp_path)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from cli_runner import run_cli

MAKEFILE = Path(__file__).resolve().parents[2] / "Makefile"


def _demo_split_lines() -> list[list[str]]:
    lines, in_demo = [], False
    for line in MAKEFILE.read_text().splitlines():
        if line.startswith("demo:"):
            in_demo = True
        elif in_demo and not line.startswith("\t"):
            break
        elif in_demo and "splitprune split" in line:
            lines.append(shlex.split(line.strip())[1:])  # drop $(BIN)/splitprune
    return lines


DEMO = _demo_split_lines()


def _run(args: list[str], tmp_path: Path) -> tuple[str, str]:
    args = [a.replace("out/", f"{tmp_path}/") for a in args]
    redirect = args.index(">") if ">" in args else None
    target = Path(args[redirect + 1]) if redirect is not None else None
    done = run_cli(*(args[:redirect] if redirect is not None else args))
    assert done.code == 0, done.err
    if target is not None:
        target.write_text(done.out)
    return done.out, done.err


def test_the_demo_has_split_lines():
    assert len(DEMO) >= 2


def test_headline_demo_split_changes_with_the_rate_and_prints_the_policy(tmp_path):
    headline = DEMO[0]
    assert "--json" not in headline and "--sweep-bandwidth" in headline
    out, _ = _run(headline, tmp_path)
    assert "bandwidth policy" in out
    for kind in ("all local", "split (", "full offload"):  # local at low rates, a split, then offload
        assert kind in out, kind
    plot = Path(headline[headline.index("--plot") + 1].replace("out/", f"{tmp_path}/"))
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("line", DEMO[1:])
def test_other_demo_split_lines_run_and_their_policy_changes_with_rate(line, tmp_path):
    out, _ = _run(line, tmp_path)
    if "--json" in line:
        target = Path(line[line.index(">") + 1].replace("out/", f"{tmp_path}/"))
        doc = json.loads(target.read_text())
        assert doc["schema"] == "splitprune.split/2"
        kinds = {p["split_kind"] for p in doc["policy"]["pieces"]}
        assert len(kinds) >= 2, kinds
