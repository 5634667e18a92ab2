"""``python -m splitprune``: the command line."""

from .cli import main

main()
