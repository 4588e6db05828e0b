"""``python -m vaemath.reference``: see :mod:`vaemath.reference.cli`."""

from vaemath.reference.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
