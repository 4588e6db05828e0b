"""Helpers shared by the accuracy scripts: errors in ulps and their rst tables.

Imported by ``accuracy.py``, ``discrete_accuracy.py`` and ``mmd_uniform.py``
(``make_all.py`` skips files whose name starts with ``_``).
"""

from __future__ import annotations

import contextlib
import math
import platform
from pathlib import Path

import numpy as np

__all__ = ["fmt_ulps", "ulp_error", "ulp_table"]

DTYPE_NAMES = ("float32", "float64")


def ulp_error(computed: np.ndarray, exact, dtype: type) -> np.ndarray:
    """``|computed - exact| / spacing(exact)`` in ``dtype``; NaN or a wrong inf: inf.

    ``exact`` is float64, or a pair ``(hi, lo)`` of float64 arrays with ``hi + lo``
    the exact value to about 106 bits (so float64 results are measured to a
    fraction of an ulp, not rounded to whole ulps by the reference). ``inf - inf``
    is an exact match.
    """
    hi, lo = exact if isinstance(exact, tuple) else (exact, np.zeros_like(exact))
    computed = np.asarray(computed, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        spacing = np.spacing(np.abs(hi.astype(dtype))).astype(np.float64)
        err = np.abs((computed - hi) - lo) / spacing
    err[(computed == hi) & (lo == 0)] = 0.0
    err[np.isnan(err)] = np.inf
    return err


def fmt_ulps(x: float) -> str:
    """An error in ulps for a table: one decimal below 10, then whole numbers, then 1e5.

    NaN (not measured, e.g. an implementation unavailable there) is shown as ``--``.
    """
    if math.isnan(x):
        return "--"
    if not math.isfinite(x):
        return "inf"
    if x < 9.95:
        return f"{x:.1f}"
    if x < 1e4:
        return f"{x:.0f}"
    return f"{x:.1e}".replace("e+0", "e").replace("e+", "e")


def ulp_table(result: dict, caption: str, first: str = "implementation") -> str:
    """rst list-table of ``result[impl][region][dtype] = {"max", "median"}`` (float32, float64)."""
    lines = [
        f".. list-table:: {caption}",
        "   :header-rows: 1",
        "   :widths: 34 30 9 9 9 9",
        "",
        f"   * - {first}",
        "     - region",
        "     - float32 max",
        "     - float32 median",
        "     - float64 max",
        "     - float64 median",
    ]
    for name, regions in result.items():
        for i, (region, by_dtype) in enumerate(regions.items()):
            lines.append(f"   * - {name if i == 0 else ''}")
            lines.append(f"     - {region}")
            for dtype_name in DTYPE_NAMES:
                stats = by_dtype[dtype_name]
                lines.append(f"     - {fmt_ulps(stats['max'])}")
                lines.append(f"     - {fmt_ulps(stats['median'])}")
    return "\n".join(lines) + "\n"


def list_table(title: str, header: list[str], rows: list[list[str]]) -> list[str]:
    """The lines of an RST ``list-table`` (a header row, then ``rows``), blank-terminated."""
    lines = [f".. list-table:: {title}", "   :header-rows: 1", ""]
    for row in [header, *rows]:
        lines.append(f"   * - {row[0]}")
        lines.extend(f"     - {cell}" for cell in row[1:])
    return [*lines, ""]


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (Linux), else ``platform.processor()``."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "CPU model unknown"
