"""``python -m splitprune``: the same console as the ``splitprune`` script."""

from splitprune.cli import main

if __name__ == "__main__":
    main()
