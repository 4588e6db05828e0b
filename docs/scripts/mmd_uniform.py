"""Accuracy tables and a figure for ``mmd2_uniform_prior`` and the error functions behind it.

Writes into ``docs/_generated/``:

* ``mmd_uniform_erf.rst``, ``mmd_uniform_erfc.rst``, ``mmd_uniform_erfcx.rst``: error in
  ulps of erf, erfc and erfcx for vaemath's own implementation (``vaemath._lib._special``)
  and for the native ones it uses (``scipy.special``, ``torch.special``,
  ``jax.scipy.special``), by region, float32 and float64;
* ``mmd_uniform_terms.rst``: error of the prior's per-dimension expectations
  (``E_y k(x, y)`` and ``E k(y, y')``), vaemath against the direct formula;
* ``mmd_uniform.png``: that error along x, and the spread of the estimate against batch
  size next to ``vaemath.mmd2`` against as many uniform samples;
* ``mmd_uniform.json``: every number above, with the versions.

The reference is mpmath (at 200 bits and more) evaluated at the dtype-rounded inputs, so
input rounding is not counted against anyone. Run from the repository root (about
20 s)::

    python docs/scripts/mmd_uniform.py
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import jax
import matplotlib.pyplot as plt
import mpmath
import numpy as np
import scipy
import scipy.special
import torch

jax.config.update("jax_enable_x64", True)
import array_api_strict  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import jax.scipy.special  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ulp_error, ulp_table  # noqa: E402

import vaemath  # noqa: E402
from vaemath._lib._compat import array_namespace  # noqa: E402
from vaemath._lib._special import own_erf, own_erfc, own_erfcx  # noqa: E402
from vaemath._mmd import mmd2_uniform_prior  # noqa: E402
from vaemath._mmd._uniform import _log_mean_kernel, _log_mean_kernel_pair  # noqa: E402

OUT = ROOT / "docs" / "_generated"
DTYPES = {"float32": np.float32, "float64": np.float64}
XP_TORCH = array_namespace(torch.zeros(0))
PREC = 256

Impl = Callable[[np.ndarray], np.ndarray]


def signed_logu(rng: np.random.Generator, lo: float, hi: float, n: int) -> np.ndarray:
    """Random sign times a log-uniform magnitude in [10**lo, 10**hi]."""
    return np.sign(rng.uniform(-1, 1, n)) * 10.0 ** rng.uniform(lo, hi, n)


# -- the error functions -----------------------------------------------------------------


def special_regions(rng: np.random.Generator, n: int) -> dict[str, dict[str, np.ndarray]]:
    """Arguments per function and region (float64; rounded per dtype when measured)."""
    return {
        "erf": {
            r":math:`10^{-30} \le |z| \le 1`": signed_logu(rng, -30, 0, n),
            r":math:`1 < |z| \le 6`": np.sign(rng.uniform(-1, 1, n)) * rng.uniform(1, 6, n),
        },
        "erfc": {
            r":math:`-6 \le z < 1/2`": rng.uniform(-6, 0.5, n),
            r":math:`1/2 \le z \le 9`": rng.uniform(0.5, 9, n),
            r":math:`9 < z \le 26.5` (float32: subnormal from 9.2, 0 from 10.1)": rng.uniform(
                9, 26.5, n
            ),
            r":math:`26.5 < z \le 27.3` (float64: subnormal)": rng.uniform(26.5, 27.3, n),
        },
        "erfcx": {
            r":math:`|z| < 1/2`": rng.uniform(-0.5, 0.5, n),
            r":math:`1/2 \le z \le 30`": rng.uniform(0.5, 30, n),
            r":math:`30 < z \le 10^{6}`": 10.0 ** rng.uniform(math.log10(30), 6, n),
            r":math:`-9 \le z < -1/2`": rng.uniform(-9, -0.5, n),
        },
    }


def exact_special(name: str, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(hi, lo)``: the exact value as the sum of two float64 numbers."""
    hi, lo = [], []
    with mpmath.workprec(PREC):
        for v in z:
            x = mpmath.mpf(float(v))
            if name == "erf":
                e = mpmath.erf(x)
            elif name == "erfc":
                e = mpmath.erfc(x)
            else:
                e = mpmath.erfc(x) * mpmath.exp(x * x)
            hi.append(float(e))
            lo.append(float(e - hi[-1]) if math.isfinite(hi[-1]) else 0.0)
    return np.array(hi), np.array(lo)


def special_impls(name: str) -> dict[str, Impl]:
    own = {"erf": own_erf, "erfc": own_erfc, "erfcx": own_erfcx}[name]

    def vaemath_strict(z: np.ndarray) -> np.ndarray:
        return np.asarray(own(array_api_strict.asarray(z), xp=array_api_strict))

    def vaemath_torch(z: np.ndarray) -> np.ndarray:
        return own(torch.from_numpy(z), xp=XP_TORCH).numpy()

    def scipy_special(z: np.ndarray) -> np.ndarray:
        return np.asarray(getattr(scipy.special, name)(z))

    def torch_special(z: np.ndarray) -> np.ndarray:
        return getattr(torch.special, name)(torch.from_numpy(z)).numpy()

    def jax_special(z: np.ndarray) -> np.ndarray:
        return np.asarray(getattr(jax.scipy.special, name)(jnp.asarray(z)))

    return {
        "vaemath (array-api-strict; float32 via float64)": vaemath_strict,
        "vaemath (torch tensors; float32 arithmetic)": vaemath_torch,
        "``scipy.special``": scipy_special,
        "``torch.special``": torch_special,
        "``jax.scipy.special``": jax_special,
    }


def measure(
    regions: dict[str, np.ndarray],
    impls: dict[str, Impl],
    exact_fn: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """``result[impl][region][dtype] = {"max": ..., "median": ...}`` (errors in ulps)."""
    result: dict[str, dict[str, dict[str, dict[str, float]]]] = {name: {} for name in impls}
    for region, z in regions.items():
        for dtype_name, np_dtype in DTYPES.items():
            rounded = z.astype(np_dtype)
            exact = exact_fn(rounded.astype(np.float64))
            for name, fn in impls.items():
                with np.errstate(all="ignore"):
                    err = ulp_error(fn(rounded), exact, np_dtype)
                stats = {"max": float(np.max(err)), "median": float(np.median(err))}
                result[name].setdefault(region, {})[dtype_name] = stats
    return result


# -- the per-dimension expectations -------------------------------------------------------


def exact_log_mean_kernel(x: float, low: float, high: float, h: float) -> float:
    """log E_{y ~ U[low, high]} exp(-(x - y)^2 / (2 h^2)), mpmath."""
    with mpmath.workprec(PREC):
        x, low, high, h = (mpmath.mpf(float(v)) for v in (x, low, high, h))
        a, b, s2 = (low - x) / h, (high - x) / h, mpmath.sqrt(2)
        if a >= 0:
            mass = (mpmath.erfc(a / s2) - mpmath.erfc(b / s2)) / 2
        elif b <= 0:
            mass = (mpmath.erfc(-b / s2) - mpmath.erfc(-a / s2)) / 2
        else:
            mass = 1 - (mpmath.erfc(b / s2) + mpmath.erfc(-a / s2)) / 2
        return float(mpmath.log(h * mpmath.sqrt(2 * mpmath.pi) / (high - low) * mass))


def exact_log_mean_kernel_pair(r: float) -> float:
    with mpmath.workprec(4 * PREC):
        r = mpmath.mpf(float(r))
        value = (
            2
            / r**2
            * (
                r * mpmath.sqrt(mpmath.pi / 2) * mpmath.erf(r / mpmath.sqrt(2))
                + mpmath.expm1(-r * r / 2)
            )
        )
        return float(mpmath.log(value))


def cross_regions(rng: np.random.Generator, n: int) -> dict[str, dict[str, np.ndarray]]:
    """(x, low, high, h) per region: box [-1, 1] unless stated; p = distance outside / h."""
    ones = np.ones(n)

    def outside(p: np.ndarray, h: np.ndarray) -> dict[str, np.ndarray]:
        side = np.sign(rng.uniform(-1, 1, n))
        return {"x": side * (1.0 + p * h), "low": -ones, "high": ones, "h": h}

    h = 10.0 ** rng.uniform(-1, 0.5, n)
    regions = {
        r"inside: :math:`|x| \le 1`, :math:`h \in [0.1, 3]`": {
            "x": rng.uniform(-1, 1, n),
            "low": -ones,
            "high": ones,
            "h": h,
        },
        r"near outside: :math:`0 < p \le 5`": outside(rng.uniform(0, 5, n), h),
        r"far outside: :math:`5 < p \le 40`": outside(rng.uniform(5, 40, n), h),
        r"very far: :math:`40 < p \le 10^4`": outside(10.0 ** rng.uniform(math.log10(40), 4, n), h),
    }
    h_wide = 10.0 ** rng.uniform(1, 4, n)
    regions[r"narrow box: :math:`h \in [10, 10^4]`, :math:`|x| \le 3`"] = {
        "x": rng.uniform(-3, 3, n),
        "low": -ones,
        "high": ones,
        "h": h_wide,
    }
    return regions


def cross_impls() -> dict[str, Callable[[dict[str, np.ndarray]], np.ndarray]]:
    xp_np = array_namespace(np.zeros(0))

    def vaemath_numpy(a: dict[str, np.ndarray]) -> np.ndarray:
        # one point, one case per dimension; the bandwidth enters by arithmetic only
        out = _log_mean_kernel(
            a["x"][None, :], a["low"], a["high"], a["high"] - a["low"], a["h"], xp=xp_np
        )
        return np.asarray(out)[0]

    def vaemath_torch(a: dict[str, np.ndarray]) -> np.ndarray:
        t = {k: torch.from_numpy(v) for k, v in a.items()}
        out = _log_mean_kernel(
            t["x"][None, :], t["low"], t["high"], t["high"] - t["low"], t["h"], xp=XP_TORCH
        )
        return out[0].numpy()

    def naive(a: dict[str, np.ndarray]) -> np.ndarray:
        # what one writes from the formula: h sqrt(2 pi) / w (Phi(beta) - Phi(alpha)), in logs
        x, low, high, h = a["x"], a["low"], a["high"], a["h"]
        mass = scipy.special.ndtr((high - x) / h) - scipy.special.ndtr((low - x) / h)
        return np.log(h * math.sqrt(2 * math.pi) / (high - low) * mass)

    return {
        "vaemath (NumPy)": vaemath_numpy,
        "vaemath (PyTorch)": vaemath_torch,
        r"direct :math:`\Phi(\beta) - \Phi(\alpha)` (``scipy.special.ndtr``)": naive,
    }


def pair_impls() -> dict[str, Callable[[dict[str, np.ndarray]], np.ndarray]]:
    xp_np = array_namespace(np.zeros(0))

    def vaemath_numpy(a: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(_log_mean_kernel_pair(a["r"], xp=xp_np))

    def vaemath_torch(a: dict[str, np.ndarray]) -> np.ndarray:
        return _log_mean_kernel_pair(torch.from_numpy(a["r"]), xp=XP_TORCH).numpy()

    def naive(a: dict[str, np.ndarray]) -> np.ndarray:
        r = a["r"]
        bracket = r * math.sqrt(math.pi / 2) * scipy.special.erf(r / math.sqrt(2))
        return np.log(2 / r**2 * (bracket + np.exp(-r * r / 2) - 1))

    return {
        "vaemath (NumPy) ": vaemath_numpy,
        "vaemath (PyTorch) ": vaemath_torch,
        "direct formula": naive,
    }


def measure_terms(rng: np.random.Generator, n: int) -> dict[str, Any]:
    """Error of log E (= relative error of E), in units of eps of the dtype (max, median)."""
    result: dict[str, dict[str, dict[str, dict[str, float]]]] = {}

    def record(impls: dict, regions: dict, exact_fn: Callable) -> None:
        for name in impls:
            result.setdefault(name, {})
        for region, inputs in regions.items():
            for dtype_name, np_dtype in DTYPES.items():
                rounded = {k: v.astype(np_dtype) for k, v in inputs.items()}
                exact = exact_fn({k: v.astype(np.float64) for k, v in rounded.items()})
                eps = float(np.finfo(np_dtype).eps)
                # an error of the log relative to max(1, |log E|): far outside the box
                # log E ~ -p^2 / 2, whose own condition number is |log E|
                scale = eps * np.maximum(1.0, np.abs(exact))
                for name, fn in impls.items():
                    with np.errstate(all="ignore"):
                        got = np.asarray(fn(rounded), dtype=np.float64)
                        err = np.abs(got - exact) / scale
                    err[np.isnan(err)] = np.inf
                    stats = {"max": float(np.max(err)), "median": float(np.median(err))}
                    result[name].setdefault(region, {})[dtype_name] = stats

    def cross_exact(a: dict[str, np.ndarray]) -> np.ndarray:
        rows = zip(a["x"], a["low"], a["high"], a["h"], strict=True)
        return np.array([exact_log_mean_kernel(*row) for row in rows])

    def pair_exact(a: dict[str, np.ndarray]) -> np.ndarray:
        return np.array([exact_log_mean_kernel_pair(r) for r in a["r"]])

    regions = cross_regions(rng, n)
    record(cross_impls(), {f"cross, {k}": v for k, v in regions.items()}, cross_exact)
    pair_regions = {
        r"prior term, :math:`10^{-8} \le w/h \le 0.05`": {
            "r": 10.0 ** rng.uniform(-8, np.log10(0.05), n)
        },
        r"prior term, :math:`0.05 < w/h \le 10^{3}`": {
            "r": 10.0 ** rng.uniform(np.log10(0.05), 3, n)
        },
    }
    record(pair_impls(), pair_regions, pair_exact)
    return result


# -- the figure ------------------------------------------------------------------------------


def population_mmd2(scale: float, dim: int, h: float) -> float:
    """MMD²(N(0, scale² I_D), U([-1, 1]^D)), RBF kernel, from the normal CDF."""
    s2, v = scale * scale, h * h + scale * scale
    kxx = (h * h / (h * h + 2 * s2)) ** (dim / 2)
    cross = (
        h
        / math.sqrt(v)
        * math.sqrt(2 * math.pi * v)
        * (scipy.special.ndtr(1 / math.sqrt(v)) - scipy.special.ndtr(-1 / math.sqrt(v)))
        / 2
    )
    r = 2 / h
    prior = (
        2
        / r**2
        * (r * math.sqrt(math.pi / 2) * math.erf(r / math.sqrt(2)) + math.expm1(-r * r / 2))
    )
    return kxx - 2 * cross**dim + prior**dim


def make_figure(out_dir: Path, quick: bool) -> Path:
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 3.9), constrained_layout=True)
    # (a) relative error of E_y k(x, y) along x, box [-1, 1], h = 0.5, float64
    h = 0.5
    xs = np.linspace(-25.0, 25.0, 200 if quick else 1000)
    exact = np.array([exact_log_mean_kernel(x, -1.0, 1.0, h) for x in xs])
    a = {"x": xs, "low": -np.ones_like(xs), "high": np.ones_like(xs), "h": np.full_like(xs, h)}
    beta, alpha = (1.0 - xs) / h, (-1.0 - xs) / h
    scale = h * math.sqrt(2 * math.pi) / 2.0
    with np.errstate(all="ignore"):
        curves = {
            "vaemath": cross_impls()["vaemath (NumPy)"](a),
            r"direct, $\Phi(\beta) - \Phi(\alpha)$ (ndtr)": np.log(
                scale * (scipy.special.ndtr(beta) - scipy.special.ndtr(alpha))
            ),
            r"direct, $[\mathrm{erf}(\beta/\sqrt{2}) - \mathrm{erf}(\alpha/\sqrt{2})]/2$": np.log(
                scale
                * 0.5
                * (scipy.special.erf(beta / math.sqrt(2)) - scipy.special.erf(alpha / math.sqrt(2)))
            ),
        }
    for (label, log_e), style in zip(curves.items(), ("-", "--", ":"), strict=True):
        with np.errstate(all="ignore"):
            rel = np.abs(np.expm1(np.asarray(log_e, dtype=np.float64) - exact))
        rel = np.clip(np.nan_to_num(rel, nan=1.0, posinf=1.0), 1e-17, 1.0)
        ax0.semilogy(xs, rel, style, lw=1.2, label=label)
    for edge in (-1.0, 1.0):
        ax0.axvline(edge, color="0.6", lw=0.8)
    ax0.set_xlabel("x (box [-1, 1] between the grey lines, h = 0.5), float64")
    ax0.set_ylabel("relative error of E_y k(x, y), clipped to [1e-17, 1]")
    ax0.set_title("(a) the cross term inside and outside the box")
    ax0.legend(fontsize=7, loc="center left")

    # (b) spread of the estimate against batch size, vs mmd2 against B uniform samples
    rng = np.random.default_rng(1)
    dim, h, scale = 4, 1.0, 0.4
    batches = [16, 64, 256] if quick else [16, 32, 64, 128, 256, 512, 1024]
    reps = 5 if quick else 40
    truth = population_mmd2(scale, dim, h)
    stats = {"closed form (mmd2_uniform_prior)": [], "mmd2 against B uniform samples": []}
    for b in batches:
        free, sampled = [], []
        for _ in range(reps):
            x = scale * rng.standard_normal((b, dim))
            free.append(float(mmd2_uniform_prior(x, bandwidth=h)))
            y = rng.uniform(-1.0, 1.0, (b, dim))
            sampled.append(float(vaemath.mmd2(x, y, bandwidth=h)))
        stats["closed form (mmd2_uniform_prior)"].append((np.mean(free), np.std(free, ddof=1)))
        stats["mmd2 against B uniform samples"].append((np.mean(sampled), np.std(sampled, ddof=1)))
    for label, values in stats.items():
        mean, sd = np.array(values).T
        ax1.fill_between(batches, mean - sd, mean + sd, alpha=0.25)
        ax1.plot(batches, mean, "o-", ms=3, label=f"{label}, mean ± sd")
    ax1.axhline(truth, color="k", ls="--", lw=1, label="population MMD²")
    ax1.set_xscale("log", base=2)
    ax1.set_xlabel("batch size B")
    ax1.set_ylabel("MMD² estimate")
    ax1.set_title(f"(b) q = N(0, {scale}² I_{dim}) against U([-1, 1]^{dim}), h = {h}")
    ax1.legend(fontsize=7)
    target = out_dir / "mmd_uniform.png"
    fig.savefig(target, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return target


# -- main ------------------------------------------------------------------------------------


def main(quick: bool = False, out_dir: Path = OUT, figure: bool = True) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    n = 40 if quick else 2000
    rng = np.random.default_rng(20260601)
    tables: dict[str, dict] = {}
    captions = {
        "erf": r"error in ulps of :math:`\operatorname{erf} z`",
        "erfc": r"error in ulps of :math:`\operatorname{erfc} z`",
        "erfcx": r"error in ulps of :math:`\operatorname{erfcx} z = e^{z^2} \operatorname{erfc} z`",
    }
    regions = special_regions(rng, n)
    for name in ("erf", "erfc", "erfcx"):
        result = measure(
            regions[name], special_impls(name), lambda z, name=name: exact_special(name, z)
        )
        tables[f"mmd_uniform_{name}"] = result
        text = ulp_table(result, captions[name])
        (out_dir / f"mmd_uniform_{name}.rst").write_text(text, encoding="utf-8")
    terms = measure_terms(rng, max(n // 4, 10))
    tables["mmd_uniform_terms"] = terms
    caption = (
        r"error of :math:`\log \mathbb E_y k` (the relative error of the expectation) in units "
        r"of :math:`\varepsilon \max(1, |\log \mathbb E_y k|)` of the dtype"
    )
    text = ulp_table(terms, caption)
    (out_dir / "mmd_uniform_terms.rst").write_text(text, encoding="utf-8")
    if figure:
        make_figure(out_dir, quick)
    record = {
        "points_per_region": n,
        "points_per_region_terms": max(n // 4, 10),
        "mpmath_bits": PREC,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "torch": torch.__version__,
        "jax": jax.__version__,
        "seconds": round(time.perf_counter() - start, 1),
        "tables": tables,
    }
    if not quick:
        (out_dir / "mmd_uniform.json").write_text(
            json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
        )
    return record


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few points, for a smoke test")
    parser.add_argument("--out", type=Path, default=OUT, help="output folder")
    args = parser.parse_args()
    rec = main(args.quick, args.out)
    print(f"wrote {args.out} in {rec['seconds']} s")
