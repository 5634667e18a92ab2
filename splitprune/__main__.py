"""``python -m splitprune``: the same as the ``splitprune`` console script."""

from .cli import main

main()
