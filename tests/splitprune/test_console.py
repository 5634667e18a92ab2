"""The console as users run it: ``python -m splitprune`` in a real process, stdout and stderr apart.

In-process runners swap ``sys.stdout``, which native code (highspy's banner, torch, matplotlib) does not
write through; only a subprocess sees what lands on file descriptor 1. Every reporting command's
``--json`` must put exactly one JSON document there, and user mistakes exactly one line on stderr.
The Python API (``solve_split``, ``plan``) must leave fd 1 alone as well.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cvxpy as cp
import pytest
import torch

from splitprune.board import load_board
from splitprune.energy import annotate
from splitprune.graph import trace
from splitprune.link import load_link
from splitprune.models import load_model
from splitprune.plan import PlanOptions, plan
from splitprune.split import solve_split

HERE = Path(__file__).resolve().parent
TINY = f"{HERE / 'data' / 'console_nets.py'}:tiny"
TINY_SHAPE = ("--input-shape", "1,3,32,32")
H100_CSV = HERE.parents[1] / "data" / "h100" / "h100_b1.csv"
WORKERS = min(4, os.cpu_count() or 1)


Run = subprocess.CompletedProcess[str]


def console(*args: str, cwd: Path) -> Run:
    """``python -m splitprune ARGS`` in a fresh interpreter, stdout and stderr captured apart."""
    return subprocess.run(
        [sys.executable, "-m", "splitprune", *args],
        capture_output=True, text=True, cwd=cwd, timeout=600, check=False,
    )  # fmt: skip


def run_all(commands: Mapping[str, tuple[str, ...]], cwd: Path) -> dict[str, Run]:
    """Run every command at once (one process each) and return the finished processes by name."""
    with ThreadPoolExecutor(WORKERS) as pool:
        futures = {name: pool.submit(console, *args, cwd=cwd) for name, args in commands.items()}
        return {name: future.result() for name, future in futures.items()}


# --- reporting commands with --json ------------------------------------------------------------

# command -> (arguments given the scratch directory, what its stderr must say, its JSON schema)
REPORTS: dict[str, tuple[Callable[[Path], tuple[str, ...]], str | None, str]] = {
    "estimate": (
        lambda d: ("estimate", TINY, *TINY_SHAPE, "--plot", str(d / "estimate.png"), "--json"),
        "plot written", "splitprune.estimate/1",
    ),
    "split": (
        lambda d: ("split", TINY, *TINY_SHAPE, "--link", "wifi", "--plot", str(d / "split.png"), "--json"),
        "plot written", "splitprune.split/2",
    ),
    "split --sweep-bandwidth": (  # rates outside LTE's measured range: one warning, on stderr
        lambda d: ("split", TINY, *TINY_SHAPE, "--link", "lte", "--sweep-bandwidth", "1e5:1e9:8", "--json"),
        "lie outside", "splitprune.split/2",
    ),
    "prune": (
        lambda d: ("prune", TINY, *TINY_SHAPE, "--budget", "0.99", "--output", str(d / "pruned.pt"),
                   "--plot", str(d / "prune.png"), "--json"),
        None, "splitprune.prune/2",  # --json hides prune's progress lines
    ),
    "plan": (
        lambda d: ("plan", TINY, *TINY_SHAPE, "--link", "5g", "--rate-bps", "5e6", "--energy-budget-mj", "8",
                   "--plot", str(d / "plan.png"), "--json"),
        "plot written", "splitprune.plan/1",
    ),
    "validate": (
        lambda d: ("validate", str(H100_CSV), "--board", "h100-nvml", "--json"),
        "not scored", "splitprune.validate/",
    ),
    "calibrate": (
        lambda d: ("calibrate", str(H100_CSV), "--name", "h100-test", "--out", str(d / "h100.toml"),
                   "--json"),
        "warning:", "splitprune.calibrate/",
    ),
}


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Run]]:
    scratch = tmp_path_factory.mktemp("console")
    commands = {name: make(scratch) for name, (make, _, _) in REPORTS.items()}
    commands["split (table)"] = ("split", TINY, *TINY_SHAPE, "--link", "wifi")
    return scratch, run_all(commands, scratch)


@pytest.mark.parametrize("command", list(REPORTS))
def test_json_is_the_whole_stdout_and_the_rest_goes_to_stderr(reports, command: str):
    _, runs = reports
    done = runs[command]
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("{") and done.stdout.endswith("}\n"), done.stdout[:300]
    document = json.loads(done.stdout)  # the whole of stdout: nothing before or after the document
    assert isinstance(document, dict) and document["schema"].startswith(REPORTS[command][2])
    needle = REPORTS[command][1]
    assert needle is None or needle in done.stderr  # progress and warnings are on stderr
    assert "Traceback" not in done.stderr and "HiGHS" not in done.stderr


def test_files_the_commands_were_asked_for_exist(reports):
    scratch, runs = reports
    assert all(runs[name].returncode == 0 for name in ("estimate", "split", "prune", "plan"))
    for name in ("estimate.png", "split.png", "prune.png", "plan.png"):
        assert (scratch / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert (scratch / "pruned.pt").stat().st_size > 0


def test_tables_for_people_carry_no_solver_banner(reports):
    _, runs = reports
    done = runs["split (table)"]
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(TINY) and "tensors sent" in done.stdout
    assert "HiGHS" not in done.stdout and "THIRD_PARTY" not in done.stdout


# --- user mistakes, end to end -------------------------------------------------------------------

# case -> (arguments given the scratch directory, what the one line must say)
MISTAKES: dict[str, tuple[Callable[[Path], tuple[str, ...]], str]] = {
    "bad model spec": (lambda d: ("estimate", "resnet18", "--json"), "bad model 'resnet18'"),
    "missing model file": (lambda d: ("split", str(d / "nope.py") + ":net", "--json"), "not found"),
    "unknown board": (lambda d: ("split", TINY, *TINY_SHAPE, "--board", "orin", "--json"), "unknown board"),
    "unknown link": (
        lambda d: ("split", TINY, *TINY_SHAPE, "--link", "carrier-pigeon", "--json"), "unknown link",
    ),
    "malformed board TOML": (
        lambda d: ("estimate", TINY, *TINY_SHAPE, "--board", str(d / "broken.toml"), "--json"),
        "not valid TOML",
    ),
    "malformed sweep CSV (validate)": (
        lambda d: ("validate", str(d / "broken.csv"), "--board", "h100-nvml", "--json"), "not a sweep CSV",
    ),
    "unreadable sweep CSV": (
        lambda d: ("validate", str(d / "missing.csv"), "--board", "h100-nvml", "--json"), "cannot read",
    ),
    "impossible prune budget": (
        lambda d: ("prune", TINY, *TINY_SHAPE, "--budget", "0.02", "--json"), "raise the budget",
    ),
    "impossible plan budget": (
        lambda d: ("plan", TINY, *TINY_SHAPE, "--energy-budget-mj", "0.0001", "--json"), "--energy-budget-mj",
    ),
    "impossible deadline": (
        lambda d: ("split", TINY, *TINY_SHAPE, "--deadline-ms", "0.0001", "--json"), "--deadline-ms",
    ),
    "plot under a file": (
        lambda d: ("estimate", TINY, *TINY_SHAPE, "--plot", str(d / "a_file" / "e.png"), "--json"),
        "is a file",
    ),
    "export under a file": (
        lambda d: ("split", TINY, *TINY_SHAPE, "--export", str(d / "a_file" / "export"), "--json"),
        "is a file",
    ),
    "plot onto a directory": (
        lambda d: ("estimate", TINY, *TINY_SHAPE, "--plot", str(d / "a_dir"), "--json"), "cannot write",
    ),
}


@pytest.fixture(scope="module")
def mistakes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    scratch = tmp_path_factory.mktemp("mistakes")
    (scratch / "broken.toml").write_text('schema_version = 2\n[board\nname = "x"\n')
    (scratch / "broken.csv").write_text("op,kind,latency_s_median\nconv,conv,0.1\n")
    (scratch / "a_file").write_text("in the way\n")
    (scratch / "a_dir").mkdir()
    return run_all({name: make(scratch) for name, (make, _) in MISTAKES.items()}, scratch)


@pytest.mark.parametrize("case", list(MISTAKES))
def test_user_mistakes_are_one_line_on_stderr_exit_2_and_nothing_on_stdout(mistakes, case: str):
    done = mistakes[case]
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert MISTAKES[case][1] in done.stderr


# --- the Python API ---------------------------------------------------------------------------------


@pytest.fixture
def native_noise_in_the_solver(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every cvxpy solve write to fd 1 the way highspy's banner does (once per process, so an
    earlier test may have used up the real one): raw ``write(2)`` and C stdio, buffered when fd 1 is a file.
    """
    real_solve = cp.Problem.solve
    libc = ctypes.CDLL(None)

    def noisy_solve(self: cp.Problem, *args: object, **kwargs: object) -> object:
        os.write(1, b"Running HiGHS (raw write on fd 1)\n")
        libc.printf(b"Running HiGHS (C stdio on fd 1)\n")
        return real_solve(self, *args, **kwargs)

    monkeypatch.setattr(cp.Problem, "solve", noisy_solve)


def test_solve_split_writes_nothing_to_fd_1(capfd: pytest.CaptureFixture[str], native_noise_in_the_solver):
    loaded = load_model(TINY, device="meta")
    graph = annotate(trace(loaded.module, torch.empty(1, 3, 32, 32, device="meta")), load_board("tx2"))
    capfd.readouterr()
    result = solve_split(graph, load_link("wifi"))
    ctypes.CDLL(None).fflush(None)
    out, _ = capfd.readouterr()
    assert result.metrics.total_energy_j > 0
    assert out == ""


def test_plan_writes_nothing_to_fd_1(capfd: pytest.CaptureFixture[str], native_noise_in_the_solver):
    torch.manual_seed(0)
    model = load_model(TINY, device="cpu").module.eval()
    capfd.readouterr()
    sweep = plan(model, torch.randn(1, 3, 32, 32), load_board("tx2"), load_link("5g"), rates_bps=[5e6],
                 options=PlanOptions(energy_budget_j=1.0, max_prune=0.2))
    ctypes.CDLL(None).fflush(None)
    out, _ = capfd.readouterr()
    assert sweep.plans and sweep.plans[0].best.energy_j <= 1.0
    assert out == ""
