"""Import guard for the ``demo`` extra (PyTorch, matplotlib, scikit-learn).

Imports nothing heavy itself, so the command line can start without the extra
and say in one line what is missing instead of printing a traceback.
"""

from __future__ import annotations

import importlib
import importlib.util

__all__ = ["INSTALL", "MODULES", "extra_module", "missing_message", "missing_module"]

INSTALL = 'pip install "vaemath[demo]"'
# Modules of the extra. torch is imported at once by the command line, so it is
# imported here too; matplotlib and scikit-learn are imported on first use (the
# figures, the digits data), so they are only located, which costs nothing.
_IMPORTED = "torch"
_LOCATED = ("matplotlib", "sklearn")
MODULES = (_IMPORTED, *_LOCATED)


def extra_module(error: ModuleNotFoundError) -> str | None:
    """The module of the extra that ``error`` reports missing, or ``None`` for any other.

    Parameters
    ----------
    error : ModuleNotFoundError
        An import failure.

    Returns
    -------
    str or None
        ``"torch"``, ``"matplotlib"`` or ``"sklearn"``; ``None`` when the missing
        module is not one of the extra (a real bug: let it raise).
    """
    top = (error.name or "").partition(".")[0]
    return top if top in MODULES else None


def missing_module() -> str | None:
    """The first module of the extra that cannot be imported, or ``None`` if all can.

    Returns
    -------
    str or None
        The name of the missing module (its import name, e.g. ``"sklearn"``).
    """
    try:
        importlib.import_module(_IMPORTED)
    except ModuleNotFoundError as exc:
        if extra_module(exc) is None:
            raise
        return _IMPORTED
    for name in _LOCATED:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return name
    return None


def missing_message(name: str) -> str:
    """The one line that tells the user which module is missing and how to install it."""
    return f"vaemath.reference needs {name} (missing); install it with: {INSTALL}"
