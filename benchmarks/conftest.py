"""pytest-benchmark configuration shared by the benchmark files.

Thread settings are fixed here, before NumPy or torch is imported, so that every
run measures the same thing whatever the machine:

* ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS`` and ``OMP_NUM_THREADS`` are set
  to ``1`` (NumPy and SciPy run single-threaded);
* ``torch.set_num_threads(n)`` with ``n`` from ``VAEMATH_BENCH_TORCH_THREADS``
  (default ``1``).

Both are recorded in the JSON output (``machine_info["vaemath_bench"]``), and
``docs/scripts/bench_table.py`` prints them above the tables.

Every benchmark tags itself with :func:`tag`: ``extra_info`` holds the operation,
library, mode, shape and implementation, and the group is all of them but the
implementation, so one group holds the alternatives a user would otherwise
write, measured in the same run. The table script and ``ratios.py`` read
``extra_info``, never the pytest ids.

Run everything (and regenerate the Performance page's tables) with
``python docs/scripts/bench_table.py --run``; one file by hand with
``python -m pytest benchmarks/test_bench_gaussian.py --benchmark-only
--benchmark-json=out.json`` and ``python benchmarks/ratios.py out.json``.
"""

from __future__ import annotations

import os
import sys
import warnings

BLAS_THREADS = "1"
for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ[_var] = BLAS_THREADS
NUMPY_IMPORTED_FIRST = "numpy" in sys.modules
if NUMPY_IMPORTED_FIRST:  # pragma: no cover - a plugin imported NumPy before us
    warnings.warn(
        "numpy was imported before benchmarks/conftest.py: OPENBLAS_NUM_THREADS=1 may not "
        "apply; prefix the command with OPENBLAS_NUM_THREADS=1",
        stacklevel=1,
    )

TORCH_THREADS = int(os.environ.get("VAEMATH_BENCH_TORCH_THREADS", "1"))

import numpy as np  # noqa: E402
import pytest  # noqa: E402

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None
else:
    torch.set_num_threads(TORCH_THREADS)


def _blas_threads() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return os.environ["OPENBLAS_NUM_THREADS"]
    counts = sorted({str(p["num_threads"]) for p in threadpool_info() if p["user_api"] == "blas"})
    return ",".join(counts) or os.environ["OPENBLAS_NUM_THREADS"]


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["vaemath_bench"] = {
        "torch_threads": torch.get_num_threads() if torch is not None else None,
        "torch_version": torch.__version__ if torch is not None else None,
        "numpy_version": np.__version__,
        "OPENBLAS_NUM_THREADS": os.environ["OPENBLAS_NUM_THREADS"],
        "blas_threads": _blas_threads(),
        "numpy_imported_first": NUMPY_IMPORTED_FIRST,
    }


@pytest.fixture
def tag(benchmark):
    """``tag(op, library, mode, shape, impl, heavy=False)``: label the benchmark.

    ``heavy=True`` cases (seconds per call) are skipped when timing is off
    (``--benchmark-disable``, the quick smoke run of every code path).
    """

    def _tag(
        op: str, library: str, mode: str, shape: str, impl: str, *, heavy: bool = False, **extra
    ) -> None:
        if heavy and not benchmark.enabled:
            pytest.skip("large case: timed with --benchmark-only, skipped by --benchmark-disable")
        benchmark.group = f"{op} {library} {mode} {shape}"
        benchmark.extra_info.update(
            op=op, library=library, mode=mode, shape=shape, impl=impl, **extra
        )

    return _tag
