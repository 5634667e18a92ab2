"""The ``splitprune`` command line: thin typer commands over the library.

Each command lives in its own module and registers itself on :data:`app`. A user error
(:class:`~splitprune.errors.SplitpruneError`) is printed as one line on stderr with exit code 2.
"""

from __future__ import annotations

import atexit
import gc
import sys

import typer

from ..errors import SplitpruneError

app = typer.Typer(
    name="splitprune",
    help="Energy-aware split computing and pruning for NVIDIA Jetson boards.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Energy-aware split computing and pruning for NVIDIA Jetson boards."""


# Importing a command module registers its command on `app`.
from . import calibrate as _calibrate  # noqa: E402,F401
from . import estimate as _estimate  # noqa: E402,F401
from . import keys as _keys  # noqa: E402,F401
from . import plan as _plan  # noqa: E402,F401
from . import prune as _prune  # noqa: E402,F401
from . import serve as _serve  # noqa: E402,F401
from . import split as _split  # noqa: E402,F401
from . import study as _study  # noqa: E402,F401


def main() -> None:
    """Console-script entry point."""
    # At exit, teardown would run garbage-collection passes over torch's ~2,000 modules (~0.8 s
    # here); what is alive then dies with the process anyway.
    atexit.register(gc.freeze)
    try:
        app()
    except SplitpruneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
