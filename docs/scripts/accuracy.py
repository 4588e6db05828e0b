"""Accuracy tables for the docs: errors in ulps against an mpmath reference.

For each function and each input region, draws a few thousand points (fixed
seed), rounds them to the working dtype, evaluates

* vaemath on NumPy and on PyTorch,
* the formula most VAE code writes by hand ("naive"),
* ``torch.distributions`` (``kl_divergence`` / ``log_prob``),

and compares with the exact value of the same (rounded) inputs computed by
mpmath at ``PREC`` bits. The error of one output ``y`` with exact value ``x``
is ``|y - x| / spacing(x)`` where ``spacing`` is the distance between
consecutive floating-point numbers of the output dtype at ``x`` (one ulp).
Reported per region: the maximum and the median.

Writes ``docs/_generated/accuracy_*.rst`` (included by ``docs/accuracy.rst``),
``docs/_generated/accuracy.json`` (all numbers) and
``docs/_generated/kl_cancellation.png``. Run from the repository root::

    python docs/scripts/accuracy.py            # about a minute
    python docs/scripts/accuracy.py --n 200    # quick check
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import mpmath
import numpy as np
import torch
from torch.distributions import MultivariateNormal, Normal, kl_divergence

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ulp_error, ulp_table  # noqa: E402

import vaemath  # noqa: E402

OUT = ROOT / "docs" / "_generated"
PREC = 256  # bits of the mpmath reference
DTYPES = {"float32": (np.float32, torch.float32), "float64": (np.float64, torch.float64)}
LOG_2PI = math.log(2 * math.pi)

Inputs = dict[str, np.ndarray]

# -- input regions ----------------------------------------------------------------------


def _signed_logu(rng: np.random.Generator, lo: float, hi: float, n: int) -> np.ndarray:
    """Random sign times a log-uniform magnitude in [10**lo, 10**hi]."""
    return rng.choice([-1.0, 1.0], n) * 10.0 ** rng.uniform(lo, hi, n)


def kl_regions(rng: np.random.Generator, n: int, prior: str) -> dict[str, Inputs]:
    """Input regions for the diagonal KL; ``prior`` is "standard" or "arbitrary"."""

    def make(d: np.ndarray, dmu: np.ndarray, pmu: np.ndarray, plv: np.ndarray) -> Inputs:
        # Posterior = prior shifted by dmu (in prior standard deviations) and d.
        return {
            "mu": pmu + dmu * np.exp(0.5 * plv),
            "logvar": plv + d,
            "prior_mu": pmu,
            "prior_logvar": plv,
        }

    def prior_params(scale_mu: float, scale_lv: float) -> tuple[np.ndarray, np.ndarray]:
        if prior == "standard":
            return np.zeros(n), np.zeros(n)
        return rng.uniform(-scale_mu, scale_mu, n), rng.uniform(-scale_lv, scale_lv, n)

    regions = {}
    pmu, plv = prior_params(2.0, 5.0)
    regions[r"KL near 0: :math:`|d| \le 10^{-7}`, :math:`|\mu - m|/s \le 10^{-7}`"] = make(
        rng.uniform(-1e-7, 1e-7, n), rng.uniform(-1e-7, 1e-7, n), pmu, plv
    )
    pmu, plv = prior_params(2.0, 5.0)
    regions[r"small d: :math:`10^{-7} \le |d| \le 1`, :math:`\mu = m`"] = make(
        _signed_logu(rng, -7, 0, n), np.zeros(n), pmu, plv
    )
    pmu, plv = prior_params(2.0, 5.0)
    regions[r"ordinary: :math:`|d| \le 5`, :math:`|\mu - m|/s \le 3`"] = make(
        rng.uniform(-5, 5, n), rng.uniform(-3, 3, n), pmu, plv
    )
    if prior == "standard":
        mu, logvar = _signed_logu(rng, -3, 3, n), rng.uniform(-30, 30, n)
        pmu, plv = np.zeros(n), np.zeros(n)
    else:
        mu, logvar = _signed_logu(rng, -3, 3, n), rng.uniform(-30, 30, n)
        pmu, plv = _signed_logu(rng, -3, 3, n), rng.uniform(-30, 30, n)
    regions[r"extremes: :math:`|v|, |w| \le 30`, :math:`|\mu|, |m| \le 10^3`"] = {
        "mu": mu,
        "logvar": logvar,
        "prior_mu": pmu,
        "prior_logvar": plv,
    }
    return regions


def log_density_regions(rng: np.random.Generator, n: int) -> dict[str, Inputs]:
    regions = {}
    mu = rng.uniform(-3, 3, n)
    logvar = rng.uniform(-6, 4, n)
    regions[r"ordinary: :math:`|v| \le 6`, :math:`|z - \mu|/\sigma \le 4`"] = {
        "z": mu + rng.uniform(-4, 4, n) * np.exp(0.5 * logvar),
        "mu": mu,
        "logvar": logvar,
    }
    mu = _signed_logu(rng, -3, 3, n)
    regions[r"extremes: :math:`|v| \le 30`, :math:`|z|, |\mu| \le 10^3`"] = {
        "z": _signed_logu(rng, -3, 3, n),
        "mu": mu,
        "logvar": rng.uniform(-30, 30, n),
    }
    # log N(z; mu, e^v) ~ 0: v ~ -log(2 pi) and z ~ mu, where the sum cancels.
    mu = rng.uniform(-3, 3, n)
    regions[r"result near 0: :math:`v \approx -\log 2\pi`, :math:`z \approx \mu`"] = {
        "z": mu + rng.uniform(-1e-4, 1e-4, n),
        "mu": mu,
        "logvar": -LOG_2PI + rng.uniform(-1e-4, 1e-4, n),
    }
    return regions


def _random_tril(rng: np.random.Generator, n: int, dim: int, diag_log10: float) -> np.ndarray:
    lower = np.tril(rng.normal(0.0, 0.3, (n, dim, dim)), k=-1)
    diag = 10.0 ** rng.uniform(-diag_log10, diag_log10, (n, dim))
    lower[:, np.arange(dim), np.arange(dim)] = diag
    return lower


def mvn_regions(rng: np.random.Generator, n: int, dim: int = 4) -> dict[str, Inputs]:
    regions = {}
    prior_tril = _random_tril(rng, n, dim, 0.3)
    prior_mu = rng.normal(size=(n, dim))
    eps = 1e-7
    regions[r"KL near 0: relative perturbations :math:`\le 10^{-7}`"] = {
        "mu": prior_mu + eps * rng.uniform(-1, 1, (n, dim)),
        "scale_tril": prior_tril * (1.0 + eps * rng.uniform(-1, 1, (n, dim, dim))),
        "prior_mu": prior_mu,
        "prior_scale_tril": prior_tril,
    }
    regions[r"ordinary: diagonals in :math:`[0.5, 2]`"] = {
        "mu": rng.normal(size=(n, dim)),
        "scale_tril": _random_tril(rng, n, dim, 0.3),
        "prior_mu": rng.normal(size=(n, dim)),
        "prior_scale_tril": _random_tril(rng, n, dim, 0.3),
    }
    regions[r"wide scales: diagonals in :math:`[10^{-3}, 10^3]`"] = {
        "mu": rng.normal(size=(n, dim)),
        "scale_tril": _random_tril(rng, n, dim, 3.0),
        "prior_mu": rng.normal(size=(n, dim)),
        "prior_scale_tril": _random_tril(rng, n, dim, 3.0),
    }
    return regions


# -- exact references (mpmath) ----------------------------------------------------------


def _mp(x: float) -> mpmath.mpf:
    return mpmath.mpf(float(x))  # exact: a double is a dyadic rational


def exact_kl(a: Inputs) -> np.ndarray:
    out = []
    with mpmath.workprec(PREC):
        for row in zip(a["mu"], a["logvar"], a["prior_mu"], a["prior_logvar"], strict=True):
            mu, v, m, w = (_mp(x) for x in row)
            d = v - w  # exact at PREC bits
            kl = ((mu - m) ** 2 * mpmath.exp(-w) + mpmath.expm1(d) - d) / 2
            out.append(float(kl))
    return np.array(out)


def exact_log_density(a: Inputs) -> np.ndarray:
    out = []
    with mpmath.workprec(PREC):
        log_2pi = mpmath.log(2 * mpmath.pi)
        for row in zip(a["z"], a["mu"], a["logvar"], strict=True):
            z, mu, v = (_mp(x) for x in row)
            out.append(float(-(log_2pi + v + (z - mu) ** 2 * mpmath.exp(-v)) / 2))
    return np.array(out)


def exact_mvn_kl(a: Inputs) -> np.ndarray:
    """Textbook trace / Mahalanobis / log-det formula, at PREC bits."""
    out = []
    dim = a["mu"].shape[-1]
    with mpmath.workprec(PREC):
        for mu, lower, pmu, plower in zip(
            a["mu"], a["scale_tril"], a["prior_mu"], a["prior_scale_tril"], strict=True
        ):
            low = mpmath.matrix(np.tril(lower).tolist())
            plow = mpmath.matrix(np.tril(plower).tolist())
            cov = low * low.T
            prior_prec = mpmath.inverse(plow * plow.T)
            delta = mpmath.matrix((pmu - mu).tolist())
            trace = sum((prior_prec * cov)[i, i] for i in range(dim))
            maha = (delta.T * prior_prec * delta)[0, 0]
            logdet = sum(
                2 * mpmath.log(abs(plow[i, i])) - 2 * mpmath.log(abs(low[i, i])) for i in range(dim)
            )
            out.append(float((trace + maha - dim + logdet) / 2))
    return np.array(out)


# -- the implementations compared -------------------------------------------------------


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x)


def kl_impls(prior: str) -> dict[str, Callable[[Inputs], np.ndarray]]:
    def vaemath_numpy(a: Inputs) -> np.ndarray:
        if prior == "standard":
            return vaemath.gaussian_kl(a["mu"], a["logvar"])
        return vaemath.gaussian_kl(a["mu"], a["logvar"], a["prior_mu"], a["prior_logvar"])

    def vaemath_torch(a: Inputs) -> np.ndarray:
        mu, lv, pm, plv = (_t(a[k]) for k in ("mu", "logvar", "prior_mu", "prior_logvar"))
        if prior == "standard":
            return vaemath.gaussian_kl(mu, lv).numpy()
        return vaemath.gaussian_kl(mu, lv, pm, plv).numpy()

    def naive(a: Inputs) -> np.ndarray:
        mu, lv, pm, plv = (_t(a[k]) for k in ("mu", "logvar", "prior_mu", "prior_logvar"))
        if prior == "standard":
            return (0.5 * (mu**2 + lv.exp() - 1 - lv)).numpy()
        return (0.5 * (plv - lv + (lv.exp() + (mu - pm) ** 2) / plv.exp() - 1)).numpy()

    def distributions(a: Inputs) -> np.ndarray:
        mu, lv, pm, plv = (_t(a[k]) for k in ("mu", "logvar", "prior_mu", "prior_logvar"))
        if prior == "standard":
            p = Normal(torch.zeros_like(mu), torch.ones_like(mu))
        else:
            p = Normal(pm, torch.exp(0.5 * plv))
        return kl_divergence(Normal(mu, torch.exp(0.5 * lv)), p).numpy()

    naive_name = (
        "naive ``0.5*(mu**2 + exp(lv) - 1 - lv)``"
        if prior == "standard"
        else "naive ``0.5*(plv - lv + (exp(lv) + (mu - pm)**2)/exp(plv) - 1)``"
    )
    return {
        "vaemath.gaussian_kl (NumPy)": vaemath_numpy,
        "vaemath.gaussian_kl (PyTorch)": vaemath_torch,
        naive_name: naive,
        "torch ``kl_divergence(Normal, Normal)``": distributions,
    }


def log_density_impls() -> dict[str, Callable[[Inputs], np.ndarray]]:
    def vaemath_numpy(a: Inputs) -> np.ndarray:
        return vaemath.gaussian_log_density(a["z"], a["mu"], a["logvar"])

    def vaemath_torch(a: Inputs) -> np.ndarray:
        return vaemath.gaussian_log_density(_t(a["z"]), _t(a["mu"]), _t(a["logvar"])).numpy()

    def naive(a: Inputs) -> np.ndarray:
        z, mu, lv = _t(a["z"]), _t(a["mu"]), _t(a["logvar"])
        return (-0.5 * (math.log(2 * math.pi) + lv + (z - mu) ** 2 / lv.exp())).numpy()

    def distributions(a: Inputs) -> np.ndarray:
        z, mu, lv = _t(a["z"]), _t(a["mu"]), _t(a["logvar"])
        return Normal(mu, torch.exp(0.5 * lv)).log_prob(z).numpy()

    return {
        "vaemath.gaussian_log_density (NumPy)": vaemath_numpy,
        "vaemath.gaussian_log_density (PyTorch)": vaemath_torch,
        "naive ``-0.5*(log(2*pi) + lv + (z - mu)**2/exp(lv))``": naive,
        "torch ``Normal(mu, exp(lv/2)).log_prob(z)``": distributions,
    }


def mvn_impls() -> dict[str, Callable[[Inputs], np.ndarray]]:
    keys = ("mu", "scale_tril", "prior_mu", "prior_scale_tril")

    def vaemath_numpy(a: Inputs) -> np.ndarray:
        return vaemath.mvn_kl(*(a[k] for k in keys))

    def vaemath_torch(a: Inputs) -> np.ndarray:
        return vaemath.mvn_kl(*(_t(a[k]) for k in keys)).numpy()

    def naive(a: Inputs) -> np.ndarray:
        mu, low, pmu, plow = (np.tril(a[k]) if "tril" in k else a[k] for k in keys)
        cov = low @ np.swapaxes(low, -1, -2)
        prior_prec = np.linalg.inv(plow @ np.swapaxes(plow, -1, -2))
        delta = (pmu - mu)[..., None]
        trace = np.trace(prior_prec @ cov, axis1=-2, axis2=-1)
        maha = (np.swapaxes(delta, -1, -2) @ prior_prec @ delta)[..., 0, 0]
        logdet = np.linalg.slogdet(plow @ np.swapaxes(plow, -1, -2))[1] - np.linalg.slogdet(cov)[1]
        return 0.5 * (trace + maha - mu.shape[-1] + logdet)

    def distributions(a: Inputs) -> np.ndarray:
        mu, low, pmu, plow = (_t(a[k]) for k in keys)
        q = MultivariateNormal(mu, scale_tril=torch.tril(low))
        p = MultivariateNormal(pmu, scale_tril=torch.tril(plow))
        return kl_divergence(q, p).numpy()

    return {
        "vaemath.mvn_kl (NumPy)": vaemath_numpy,
        "vaemath.mvn_kl (PyTorch)": vaemath_torch,
        "naive NumPy: ``inv``, ``trace``, ``slogdet``": naive,
        "torch ``kl_divergence(MultivariateNormal, ...)``": distributions,
    }


# -- measuring --------------------------------------------------------------------------


def measure(
    regions: dict[str, Inputs],
    impls: dict[str, Callable[[Inputs], np.ndarray]],
    exact_fn: Callable[[Inputs], np.ndarray],
) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """``result[impl][region][dtype] = {"max": ..., "median": ...}``."""
    result: dict[str, dict[str, dict[str, dict[str, float]]]] = {name: {} for name in impls}
    for region, inputs in regions.items():
        for dtype_name, (np_dtype, _) in DTYPES.items():
            rounded = {k: v.astype(np_dtype) for k, v in inputs.items()}
            exact = exact_fn({k: v.astype(np.float64) for k, v in rounded.items()})
            for name, fn in impls.items():
                with np.errstate(all="ignore"):
                    err = ulp_error(fn(rounded), exact, np_dtype)
                stats = {"max": float(np.max(err)), "median": float(np.median(err))}
                result[name].setdefault(region, {})[dtype_name] = stats
    return result


def cancellation_figure(out_dir: Path) -> Path:
    """Error in ulps of the variance term of the standard-prior KL as d -> 0."""
    d = np.concatenate([-np.geomspace(3.0, 1e-9, 400), np.geomspace(1e-9, 3.0, 400)])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True, constrained_layout=True)
    for ax, (dtype_name, (np_dtype, _)) in zip(axes, DTYPES.items(), strict=True):
        a = {"mu": np.zeros_like(d), "logvar": d.astype(np_dtype).astype(np.float64)}
        a["prior_mu"] = np.zeros_like(d)
        a["prior_logvar"] = np.zeros_like(d)
        exact = exact_kl(a)
        rounded = {k: v.astype(np_dtype) for k, v in a.items()}
        for name, fn in kl_impls("standard").items():
            if "PyTorch" in name:
                continue
            err = np.maximum(ulp_error(fn(rounded), exact, np_dtype), 0.1)
            label = name.replace("``", "")
            ax.plot(np.abs(d), err, ".", ms=2.5, label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.axhline(4.0, color="k", lw=0.7, ls="--")
        ax.set_title(f"{dtype_name}, $\\mu = 0$, prior N(0, 1)")
        ax.set_xlabel(r"$|v|$ (log-variance; both signs)")
    axes[0].set_ylabel("error in ulps (clipped below at 0.1)")
    axes[0].legend(fontsize=8, loc="upper right", markerscale=4)
    target = out_dir / "kl_cancellation.png"
    fig.savefig(target, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return target


def main(n: int = 2000, out_dir: Path = OUT, figure: bool = True) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    rng = np.random.default_rng(20260125)
    tables = {
        "accuracy_kl_standard": (
            measure(kl_regions(rng, n, "standard"), kl_impls("standard"), exact_kl),
            r"error in ulps of :math:`\mathrm{KL}(\mathcal N(\mu, e^v) \,\|\, \mathcal N(0, 1))`",
        ),
        "accuracy_kl_prior": (
            measure(kl_regions(rng, n, "arbitrary"), kl_impls("arbitrary"), exact_kl),
            r"error in ulps of :math:`\mathrm{KL}(\mathcal N(\mu, e^v) \,\|\, \mathcal N(m, e^w))`",
        ),
        "accuracy_log_density": (
            measure(log_density_regions(rng, n), log_density_impls(), exact_log_density),
            r"error in ulps of :math:`\log \mathcal N(z; \mu, e^v)`",
        ),
        "accuracy_mvn_kl": (
            measure(mvn_regions(rng, max(n // 4, 10)), mvn_impls(), exact_mvn_kl),
            "KL between 4-dimensional full-covariance Gaussians: error in ulps",
        ),
    }
    for stem, (result, caption) in tables.items():
        (out_dir / f"{stem}.rst").write_text(ulp_table(result, caption), encoding="utf-8")
    if figure:
        cancellation_figure(out_dir)
    record = {
        "points_per_region": n,
        "points_per_region_mvn_kl": max(n // 4, 10),
        "mpmath_bits": PREC,
        "numpy": np.__version__,
        "torch": torch.__version__,
        "seconds": round(time.perf_counter() - start, 1),
        "tables": {stem: result for stem, (result, _) in tables.items()},
    }
    (out_dir / "accuracy.json").write_text(
        json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return record


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="points per region")
    parser.add_argument("--out", type=Path, default=OUT, help="output folder")
    args = parser.parse_args()
    rec = main(args.n, args.out)
    print(f"wrote {args.out} in {rec['seconds']} s")
