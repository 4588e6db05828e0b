"""``python -m vaemath.reference``: see :mod:`vaemath.reference.cli`."""

from vaemath.reference.cli import main

raise SystemExit(main())
