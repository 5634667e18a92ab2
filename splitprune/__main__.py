"""``python -m splitprune``: the same as the ``splitprune`` command."""

from .cli import main

main()
