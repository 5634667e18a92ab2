"""The ``splitprune`` command line: thin typer commands over the library.

Each command lives in its own module and registers itself on :data:`app`. A user error
(:class:`~splitprune.errors.SplitpruneError`) is printed as one line on stderr with exit code 2.
"""

from __future__ import annotations

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

# Importing a command module registers its command on `app`.
from . import estimate as _estimate  # noqa: E402,F401


def main() -> None:
    """Console-script entry point."""
    try:
        app(standalone_mode=False)
    except SplitpruneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except typer.Abort:
        print("aborted", file=sys.stderr)
        raise SystemExit(130) from None
    except (typer.BadParameter, typer.Exit) as exc:  # pragma: no cover - handled below
        raise exc
    except Exception as exc:  # click usage errors arrive as ClickException
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            raise SystemExit(exc.exit_code) from None
        if isinstance(exc, click.exceptions.Exit):
            raise SystemExit(exc.exit_code) from None
        raise
