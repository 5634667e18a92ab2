"""Run the ``splitprune`` console entry point in-process and capture what it prints."""

from __future__ import annotations

import contextlib
import io
import sys
from typing import NamedTuple

from splitprune.cli import main


class CliRun(NamedTuple):
    code: int
    out: str
    err: str


def run_cli(*args: str) -> CliRun:
    """``splitprune ARGS``: exit code, stdout and stderr (torch stays imported, so this is fast)."""
    out, err = io.StringIO(), io.StringIO()
    argv, sys.argv = sys.argv, ["splitprune", *args]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.argv = argv
    return CliRun(code, out.getvalue(), err.getvalue())
