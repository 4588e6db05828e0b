"""Interleaved timing of vaemath.mmd2 against the floors at B = 4096 (torch, float32).

The pytest-benchmark file gives the side-by-side table; on a shared machine its
separate runs drift, so this script alternates the candidates and reports the
median of the per-round ratios. Run from the repository root:
``PYTHONPATH=. python benchmarks/ratios_mmd.py`` (prefix ``OMP_NUM_THREADS=1``
for one thread).
"""

from __future__ import annotations

import statistics
import time

import torch

import vaemath


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(size: int = 4096, rounds: int = 9) -> None:
    for dim in (16, 128):
        torch.manual_seed(0)
        x, y = torch.randn(size, dim), torch.randn(size, dim) + 0.1
        xs, ys = x * dim**-0.5, y * dim**-0.5
        buf = torch.empty(size, size)

        def floor(xs=xs, ys=ys):
            for a, b in ((xs, xs), (ys, ys), (xs, ys)):
                (a @ b.T).exp_()

        def floor_pre(xs=xs, ys=ys, buf=buf):
            for a, b in ((xs, xs), (ys, ys), (xs, ys)):
                torch.mm(a, b.T, out=buf)
                buf.exp_()

        def ours(x=x, y=y, h=dim**0.5):
            vaemath.mmd2(x, y, bandwidth=h)

        for fn in (floor, floor_pre, ours):
            fn()
        r1, r2, t_ours = [], [], []
        for _ in range(rounds):
            a, b, c = _time(floor), _time(floor_pre), _time(ours)
            r1.append(c / a)
            r2.append(c / b)
            t_ours.append(c)
        print(
            f"threads={torch.get_num_threads()} B={size} D={dim}: vaemath "
            f"{1e3 * min(t_ours):.0f} ms (min); median ratio vs floor "
            f"{statistics.median(r1):.2f}, vs preallocated floor {statistics.median(r2):.2f}"
        )


if __name__ == "__main__":
    main()
