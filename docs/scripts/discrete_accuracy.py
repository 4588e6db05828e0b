"""Accuracy tables for the discrete KLs: errors in ulps against an mpmath reference.

For :func:`vaemath.bernoulli_kl` and :func:`vaemath.categorical_kl`, and for
each input region, draws points (fixed seed), rounds them to float32 or
float64, evaluates

* vaemath on NumPy, array-api-strict, PyTorch and JAX (with ``jax_enable_x64``),
  and its float32 algorithm for libraries without float64 (JAX without x64,
  PyTorch on MPS), measured on PyTorch CPU;
* the formula most code writes by hand ("naive": sigmoid or softmax, then
  log), in the dtype of the inputs;
* ``torch.distributions.kl_divergence`` on ``Bernoulli(logits=...)`` and
  ``Categorical(logits=...)``;

and compares with the exact KL of the same (rounded) logits computed by
mpmath: the Bernoulli definition at 320 bits, the categorical one as
``sum_k p_k (e^-l_k - 1 + l_k)`` at 200 bits (no cancellation; checked against
the definition in ``tests/test_discrete.py``). The error of an output ``y``
with exact value ``x`` is ``|y - x| / spacing(x)`` in the output dtype. XLA
flushes subnormal numbers to zero, so JAX's errors are taken over exact values
above ``smallest_normal * 2**mantissa_bits``.

Writes ``docs/_generated/discrete_accuracy_{bernoulli,categorical,backends}.rst``
(included by ``docs/discrete.rst``) and ``docs/_generated/discrete_cancellation.png``.
Run from the repository root::

    python docs/scripts/discrete_accuracy.py            # about two minutes
    python docs/scripts/discrete_accuracy.py --n 200    # quick check
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import array_api_strict
import jax
import matplotlib.pyplot as plt
import mpmath
import numpy as np
import torch
from torch.distributions import Bernoulli, Categorical, kl_divergence

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import fmt_ulps, ulp_table  # noqa: E402

import vaemath._discrete._working as working  # noqa: E402
from vaemath._discrete import bernoulli_kl, categorical_kl  # noqa: E402
from vaemath._lib._helpers import to_numpy  # noqa: E402

OUT = ROOT / "docs" / "_generated"
DTYPES = {"float32": np.float32, "float64": np.float64}
K_CATEGORIES = 4

Inputs = tuple[np.ndarray, np.ndarray]

# -- exact references (mpmath) ----------------------------------------------------------


def exact_bernoulli(a: np.ndarray, b: np.ndarray) -> list[mpmath.mpf]:
    out = []
    with mpmath.workprec(320):
        for x_float, y_float in zip(a.tolist(), b.tolist(), strict=True):
            x, y = mpmath.mpf(x_float), mpmath.mpf(y_float)
            lp, lpc = -mpmath.log1p(mpmath.exp(-x)), -mpmath.log1p(mpmath.exp(x))
            lq, lqc = -mpmath.log1p(mpmath.exp(-y)), -mpmath.log1p(mpmath.exp(y))
            out.append(mpmath.exp(lp) * (lp - lq) + mpmath.exp(lpc) * (lpc - lqc))
    return out


def _phi(z: mpmath.mpf) -> mpmath.mpf:
    if abs(z) < mpmath.mpf("1e-3"):
        return z * z * mpmath.fsum(2 * z**j / mpmath.factorial(j + 2) for j in range(25)) / 2
    return mpmath.expm1(z) - z


def exact_categorical(a: np.ndarray, b: np.ndarray) -> list[mpmath.mpf]:
    out = []
    with mpmath.workprec(200):
        for row_a, row_b in zip(a.tolist(), b.tolist(), strict=True):
            xs = [mpmath.mpf(v) for v in row_a]
            ys = [mpmath.mpf(v) for v in row_b]
            a_max, b_max = max(xs), max(ys)
            log_sa = mpmath.log(mpmath.fsum(mpmath.exp(x - a_max) for x in xs))
            log_sb = mpmath.log(mpmath.fsum(mpmath.exp(y - b_max) for y in ys))
            out.append(
                mpmath.fsum(
                    mpmath.exp(x - a_max - log_sa)
                    * _phi(-(((x - y) - (a_max - b_max)) - (log_sa - log_sb)))
                    for x, y in zip(xs, ys, strict=True)
                )
            )
    return out


# -- input regions ----------------------------------------------------------------------


def _signed(rng: np.random.Generator, lo: float, hi: float, shape) -> np.ndarray:
    """Random sign times a log-uniform magnitude in [10**lo, 10**hi]."""
    return rng.choice([-1.0, 1.0], shape) * 10.0 ** rng.uniform(lo, hi, shape)


def _near_steps(dtype_name: str) -> tuple[float, float]:
    """log10 range of relative logit steps near the prior: 1e-12..1e-7 (float64), 1e-7..1e-3."""
    return (-12.0, -7.0) if dtype_name == "float64" else (-7.0, -3.0)


def bernoulli_regions(rng: np.random.Generator, n: int, dtype_name: str) -> dict[str, Inputs]:
    regions: dict[str, Inputs] = {}
    b = rng.uniform(-12, 12, n)
    regions[
        r"near the prior: :math:`|a - b| \le 10^{-7}\max(1, |b|)` (float32: :math:`10^{-3}`)"
    ] = (
        b + _signed(rng, *_near_steps(dtype_name), n) * np.maximum(1.0, np.abs(b)),
        b,
    )
    regions[r"ordinary: :math:`|a|, |b| \le 6`"] = (rng.uniform(-6, 6, n), rng.uniform(-6, 6, n))
    a = _signed(rng, -1, 2, n)
    regions[r"moderate: :math:`|a| \le 100`, :math:`1 \le |b - a| \le 100`"] = (
        a,
        a + _signed(rng, 0, 2, n),
    )
    a = _signed(rng, 3, 4, n)
    regions[r"saturated: :math:`10^3 \le |a| \le 10^4`, :math:`|b| \le 10^4`"] = (
        a,
        np.clip(
            np.where(rng.random(n) < 0.5, _signed(rng, 3, 4, n), a + _signed(rng, -8, 1, n)),
            -1e4,
            1e4,
        ),
    )
    edge = 745.0 if dtype_name == "float64" else 103.0
    a = _signed(rng, math.log10(edge - 45), math.log10(edge + 15), n)
    regions[r"tiny :math:`\sigma(a)`: :math:`|a|` near :math:`-\log` (smallest normal)"] = (
        a,
        a + _signed(rng, -6, 2.5, n),
    )
    return regions


def categorical_regions(
    rng: np.random.Generator, n: int, dtype_name: str, k: int = K_CATEGORIES
) -> dict[str, Inputs]:
    regions: dict[str, Inputs] = {}
    b = rng.normal(0, 3, (n, k))
    regions[
        r"near the prior: :math:`|a_k - b_k| \le 10^{-7}\max(1, |b_k|)` (float32: :math:`10^{-3}`)"
    ] = (
        b + _signed(rng, *_near_steps(dtype_name), (n, k)) * np.maximum(1.0, np.abs(b)),
        b,
    )
    b = rng.normal(0, 1, (n, k))
    regions[r"offset: :math:`a = b + 100 + \epsilon`, :math:`|\epsilon| \le 1`"] = (
        b + 100.0 + _signed(rng, -9, 0, (n, 1)) * rng.normal(0, 1, (n, k)),
        b,
    )
    regions[r"ordinary: :math:`a_k, b_k \sim \mathcal N(0, 2^2)`"] = (
        rng.normal(0, 2, (n, k)),
        rng.normal(0, 2, (n, k)),
    )
    regions[r"wide: :math:`a_k, b_k \sim \mathcal N(0, 30^2)`"] = (
        rng.normal(0, 30, (n, k)),
        rng.normal(0, 30, (n, k)),
    )
    regions[r"saturated: :math:`10^2 \le |a_k|, |b_k| \le 10^4`"] = (
        _signed(rng, 2, 4, (n, k)),
        _signed(rng, 2, 4, (n, k)),
    )
    regions[r"uniform prior (``prior_logits=None``), :math:`a_k \sim \mathcal N(0, 3^2)`"] = (
        rng.normal(0, 3, (n, k)),
        np.zeros((n, k)),
    )
    return regions


# -- the implementations compared -------------------------------------------------------


def _on(library: str, x: np.ndarray):
    if library == "numpy":
        return x
    if library == "array_api_strict":
        return array_api_strict.asarray(x)
    if library == "torch":
        return torch.from_numpy(x)
    return jnp.asarray(x)


def _back(y) -> np.ndarray:
    return np.asarray(to_numpy(y))


LIBRARIES = {
    "NumPy": "numpy",
    "array-api-strict": "array_api_strict",
    "PyTorch": "torch",
    "JAX": "jax",
}


def _no_float64(fn: Callable[..., object], *args: object) -> object:
    """``fn(*args)`` as on a library without float64 (JAX without x64, PyTorch on MPS)."""
    saved = working.has_float64
    working.has_float64 = lambda x, xp: False  # type: ignore[assignment]
    try:
        return fn(*args)
    finally:
        working.has_float64 = saved


def bernoulli_impls() -> dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]]:
    impls: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {}
    for name, lib in LIBRARIES.items():
        impls[f"vaemath ({name})"] = lambda a, b, lib=lib: _back(
            bernoulli_kl(_on(lib, a), _on(lib, b))
        )
    impls["vaemath, float32 without float64"] = lambda a, b: (
        _back(_no_float64(bernoulli_kl, torch.from_numpy(a), torch.from_numpy(b)))
        if a.dtype == np.float32
        else np.full(a.shape, np.nan)
    )

    def naive(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a, b = torch.from_numpy(a), torch.from_numpy(b)
        p, q = torch.sigmoid(a), torch.sigmoid(b)
        return (p * torch.log(p / q) + (1 - p) * torch.log((1 - p) / (1 - q))).numpy()

    def distributions(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        p, q = Bernoulli(logits=torch.from_numpy(a)), Bernoulli(logits=torch.from_numpy(b))
        return kl_divergence(p, q).numpy()

    impls["naive ``p*log(p/q) + (1-p)*log((1-p)/(1-q))``, ``p = sigmoid(a)``"] = naive
    impls["torch ``kl_divergence(Bernoulli(logits=a), Bernoulli(logits=b))``"] = distributions
    return impls


def categorical_impls() -> dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]]:
    impls: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {}
    for name, lib in LIBRARIES.items():
        impls[f"vaemath ({name})"] = lambda a, b, lib=lib: _back(
            categorical_kl(_on(lib, a), _on(lib, b))
        )
    impls["vaemath, float32 without float64"] = lambda a, b: (
        _back(_no_float64(categorical_kl, torch.from_numpy(a), torch.from_numpy(b)))
        if a.dtype == np.float32
        else np.full(a.shape[:-1], np.nan)
    )

    def naive(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a, b = torch.from_numpy(a), torch.from_numpy(b)
        log_p, log_q = torch.log_softmax(a, -1), torch.log_softmax(b, -1)
        return (log_p.exp() * (log_p - log_q)).sum(-1).numpy()

    def distributions(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        p, q = Categorical(logits=torch.from_numpy(a)), Categorical(logits=torch.from_numpy(b))
        return kl_divergence(p, q).numpy()

    impls["naive ``sum(softmax(a) * (log_softmax(a) - log_softmax(b)))``"] = naive
    impls["torch ``kl_divergence(Categorical(logits=a), Categorical(logits=b))``"] = distributions
    return impls


# -- measuring --------------------------------------------------------------------------


def ulp_error(
    computed: np.ndarray, exact: list[mpmath.mpf], dtype: type, floor: float
) -> np.ndarray:
    """``|computed - exact| / spacing(exact)`` in ``dtype``; exact values below ``floor`` skip."""
    computed = np.asarray(computed, dtype=np.float64).ravel()
    err = np.zeros(len(exact))
    tiny = float(np.finfo(dtype).smallest_subnormal)
    for i, (y, x) in enumerate(zip(computed.tolist(), exact, strict=True)):
        if abs(x) < floor or (math.isinf(x) and y == x):
            continue
        if not math.isfinite(y):
            err[i] = math.inf
            continue
        spacing = float(np.spacing(dtype(abs(float(x))))) if x != 0 else tiny
        err[i] = float(abs(mpmath.mpf(y) - x)) / max(spacing, tiny)
    return err


def _floor(name: str, dtype: type) -> float:
    if "JAX" in name:
        info = np.finfo(dtype)
        return float(info.smallest_normal) * 2.0**info.nmant
    return 0.0


def measure(
    regions_by_dtype: dict[str, dict[str, Inputs]],
    impls: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]],
    exact_fn: Callable[[np.ndarray, np.ndarray], list[mpmath.mpf]],
) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """``result[impl][region][dtype] = {"max": ..., "median": ...}``."""
    result: dict[str, dict[str, dict[str, dict[str, float]]]] = {name: {} for name in impls}
    for dtype_name, regions in regions_by_dtype.items():
        dtype = DTYPES[dtype_name]
        for region, (a_wide, b_wide) in regions.items():
            a, b = a_wide.astype(dtype), b_wide.astype(dtype)
            exact = exact_fn(a.astype(np.float64), b.astype(np.float64))
            for name, fn in impls.items():
                with np.errstate(all="ignore"):
                    out = fn(a, b)
                if np.isnan(out).all() and "without float64" in name:
                    stats = {"max": math.nan, "median": math.nan}
                else:
                    err = ulp_error(out, exact, dtype, _floor(name, dtype))
                    stats = {"max": float(np.max(err)), "median": float(np.median(err))}
                result[name].setdefault(region, {})[dtype_name] = stats
    return result


def backends_table(results: dict[str, dict]) -> str:
    """Max ulps over all regions, per function, implementation and dtype (vaemath only)."""
    lines = [
        ".. list-table:: vaemath: largest error in ulps over all regions",
        "   :header-rows: 1",
        "   :widths: 40 20 20 20",
        "",
        "   * - implementation",
        "     - function",
        "     - float32",
        "     - float64",
    ]
    for function, result in results.items():
        for name, regions in result.items():
            if not name.startswith("vaemath"):
                continue
            lines.append(f"   * - {name}")
            lines.append(f"     - ``{function}``")
            for dtype_name in DTYPES:
                values = [by_dtype[dtype_name]["max"] for by_dtype in regions.values()]
                values = [v for v in values if not math.isnan(v)]
                lines.append(f"     - {fmt_ulps(max(values)) if values else '--'}")
    return "\n".join(lines) + "\n"


def cancellation_figure(out_dir: Path) -> Path:
    """Error in ulps of the Bernoulli KL as the logits approach the prior's."""
    d = np.concatenate([-np.geomspace(3.0, 1e-12, 300), np.geomspace(1e-12, 3.0, 300)])
    prior = 1.5
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True, constrained_layout=True)
    impls = bernoulli_impls()
    shown = [
        "vaemath (NumPy)",
        "vaemath (PyTorch)",
        next(k for k in impls if k.startswith("naive")),
        next(k for k in impls if k.startswith("torch")),
    ]
    for ax, (dtype_name, dtype) in zip(axes, DTYPES.items(), strict=True):
        b = np.full(d.shape, prior, dtype=dtype)
        a = (prior + d).astype(dtype)
        keep = a != b
        a, b, dd = a[keep], b[keep], np.abs(a[keep].astype(np.float64) - prior)
        exact = exact_bernoulli(a.astype(np.float64), b.astype(np.float64))
        for name in shown:
            with np.errstate(all="ignore"):
                err = ulp_error(impls[name](a, b), exact, dtype, 0.0)
            label = name.replace("``", "")
            style = (
                {"marker": "o", "mfc": "none", "ms": 3.5}
                if "NumPy" in name
                else {"marker": ".", "ms": 2.5}
            )
            ax.plot(dd, np.clip(np.maximum(err, 0.1), None, 1e17), ls="none", label=label, **style)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.axhline(4.0, color="k", lw=0.7, ls="--")
        ax.set_title(f"{dtype_name}, prior logit b = {prior}")
        ax.set_xlabel(r"$|a - b|$ (both signs)")
    axes[0].set_ylabel("error in ulps (clipped at 0.1)")
    axes[0].legend(fontsize=7, loc="upper right", markerscale=4)
    target = out_dir / "discrete_cancellation.png"
    fig.savefig(target, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return target


def main(n: int = 2000, out_dir: Path = OUT, figure: bool = True) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    rng = np.random.default_rng(20260201)
    bern_regions = {name: bernoulli_regions(rng, n, name) for name in DTYPES}
    cat_regions = {name: categorical_regions(rng, max(n // 4, 10), name) for name in DTYPES}
    bern = measure(bern_regions, bernoulli_impls(), exact_bernoulli)
    cat = measure(cat_regions, categorical_impls(), exact_categorical)
    (out_dir / "discrete_accuracy_bernoulli.rst").write_text(
        ulp_table(
            bern,
            r"error in ulps of :math:`\mathrm{KL}(\mathrm{Bern}(\sigma(a)) \,\|\, "
            r"\mathrm{Bern}(\sigma(b)))`",
        ),
        encoding="utf-8",
    )
    (out_dir / "discrete_accuracy_categorical.rst").write_text(
        ulp_table(
            cat,
            rf"error in ulps of the categorical KL, :math:`K = {K_CATEGORIES}` categories",
        ),
        encoding="utf-8",
    )
    (out_dir / "discrete_accuracy_backends.rst").write_text(
        backends_table({"bernoulli_kl": bern, "categorical_kl": cat}), encoding="utf-8"
    )
    if figure:
        cancellation_figure(out_dir)
    return {"seconds": round(time.perf_counter() - start, 1), "bernoulli": bern, "categorical": cat}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="points per Bernoulli region")
    parser.add_argument("--out", type=Path, default=OUT, help="output folder")
    args = parser.parse_args()
    rec = main(args.n, args.out)
    for function in ("bernoulli", "categorical"):
        for name, regions in rec[function].items():
            if name.startswith("vaemath"):
                worst = {
                    d: max(
                        (r[d]["max"] for r in regions.values() if not math.isnan(r[d]["max"])),
                        default=math.nan,
                    )
                    for d in DTYPES
                }
                print(
                    f"{function:12s} {name:36s} "
                    + "  ".join(f"{d} {v:.2f}" for d, v in worst.items())
                )
    print(f"wrote {args.out} in {rec['seconds']} s")
