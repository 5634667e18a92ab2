"""``splitprune keys``: write a CURVE key pair for ``serve --curve`` or ``run --curve``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from . import app
from .common import JsonOption, emit_json, people

__all__ = ["keys"]


@app.command()
def keys(
    name: Annotated[str, typer.Argument(help="Name of the pair, e.g. server or jetson1")],
    out: Annotated[Path, typer.Option(help="Folder to write NAME.key and NAME.key_secret in")] = Path("."),
    force: Annotated[bool, typer.Option(help="Replace an existing pair of that name")] = False,
    json_out: JsonOption = False,
) -> None:
    """Write a CURVE key pair: NAME.key (public: give it to the other side) and NAME.key_secret (0600)."""
    try:
        import zmq
    except ImportError:
        from .serve import MissingExtraError

        raise MissingExtraError("pyzmq is not installed; pip install 'splitprune[runtime]'") from None
    from ..runtime.keys import create_keypair

    if not zmq.has("curve"):
        from ..runtime.keys import KeysError

        raise KeysError("this pyzmq's libzmq has no CURVE support; install pyzmq's wheel (it bundles one)")
    made = create_keypair(out, name, force=force)
    if json_out:
        emit_json({"schema": "splitprune.keys/1", **made.to_dict()})
        return
    people.print(f"public key  {made.public_key_file}  (give it to the other side)", markup=False,
                 highlight=False)
    people.print(f"secret key  {made.secret_key_file}  (mode 0600; keep it on this machine)", markup=False,
                 highlight=False)
