"""``python -m shine``: the same as the ``shine`` command."""

from shine.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
