"""Cost of ``mutual_information_gap`` against what it is compared with.

Groups (one per library and size), float32, dSprites-like factors
(3, 6, 40, 32, 32 values), ``D = 10``:

* ``mixture``, ``N = 20,000``, every point a query: vaemath's estimator against one
  ``dataset_decomposition`` of the same encodings (the contract: at most about
  1.5 times), and against the chunked estimator of the beta-TCVAE code (each
  chunk of queries against all components as a ``(N, D, chunk)`` tensor,
  log-sum-exp over ``N``), written here in torch;
* ``mixture``, dSprites size (``N = 737,280``, ``num_queries=10_000``): vaemath
  alone (the contract: under 2 minutes on two cores);
* ``histogram``, dSprites size: vaemath against disentanglement_lib's loop over
  scikit-learn's ``mutual_info_score``.

Each case runs once (``rounds=1``): they take seconds to minutes. The two
``N = 20,000`` vaemath cases run one untimed round first (``warmup_rounds=1``): they
take the fused ``torch.compile`` kernels, and compiling them (once per process and
shape) is not what the contract measures.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import vaemath

torch = pytest.importorskip("torch")

SIZES = (3, 6, 40, 32, 32)
DIM = 10
SMALL = 20_000
DSPRITES = 737_280


def _factors(n: int) -> np.ndarray:
    """The first ``n`` rows of the dSprites grid in its own order (shape slowest)."""
    grid = np.indices(SIZES).reshape(len(SIZES), -1).T
    if n == grid.shape[0]:
        return grid
    return grid[np.random.default_rng(1).choice(grid.shape[0], n, replace=False)]


def _encodings(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    mu = rng.standard_normal((n, DIM)).astype(np.float32)
    logvar = (rng.uniform(-4.0, 0.0, (n, DIM))).astype(np.float32)
    return mu, logvar


def _library(mu, logvar, library):
    if library == "torch":
        return torch.from_numpy(mu), torch.from_numpy(logvar)
    return mu, logvar


def chen_style(mu, logvar, factors, chunk: int = 10) -> np.ndarray:
    """beta-TCVAE's estimator: (N, D, chunk) log-densities per chunk of query samples."""
    n, d = mu.shape
    g = torch.Generator().manual_seed(0)
    z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=g)
    log_2pi = math.log(2 * math.pi)

    def entropies(queries, comps_mu, comps_lv):
        total = torch.zeros(d)
        for s in range(0, queries.shape[0], chunk):
            q = queries[s : s + chunk].T[None]  # (1, D, c)
            dens = -0.5 * (
                log_2pi
                + comps_lv[..., None]
                + (q - comps_mu[..., None]) ** 2 * torch.exp(-comps_lv[..., None])
            )
            total += -(torch.logsumexp(dens, dim=0) - math.log(comps_mu.shape[0])).sum(1)
        return total / queries.shape[0]

    marginal = entropies(z, mu, logvar)
    info = np.zeros((d, factors.shape[1]))
    for k in range(factors.shape[1]):
        cond = torch.zeros(d)
        for a in np.unique(factors[:, k]):
            rows = torch.from_numpy(np.flatnonzero(factors[:, k] == a))
            cond += entropies(z[rows], mu[rows], logvar[rows]) * rows.shape[0] / n
        info[:, k] = (marginal - cond).numpy()
    return info


def disentanglement_lib_histogram(mu: np.ndarray, factors: np.ndarray, bins: int = 20):
    from sklearn.metrics import mutual_info_score

    means = mu.astype(np.float64).T
    binned = [np.digitize(m, np.histogram(m, bins)[1][:-1]) for m in means]
    return np.array([[mutual_info_score(f, b) for f in factors.T] for b in binned])


@pytest.mark.parametrize("library", ["numpy", "torch"])
@pytest.mark.parametrize("impl", ["vaemath", "dataset_decomposition", "beta-tcvae"])
def test_mixture(benchmark, tag, library, impl):
    tag("mutual_information_gap", library, "mixture", f"{SMALL}x{DIM}", impl, heavy=True)
    if impl == "beta-tcvae" and library != "torch":
        pytest.skip("the beta-TCVAE code is torch")
    mu, logvar = _library(*_encodings(SMALL), library)
    factors = _factors(SMALL)
    with torch.no_grad():
        # one untimed round first: both take compiled kernels, whose one-time compiling
        # would otherwise fall on whichever library runs first
        if impl == "vaemath":
            benchmark.pedantic(
                vaemath.mutual_information_gap,
                args=(mu, logvar, factors),
                rounds=1,
                warmup_rounds=1,
            )
        elif impl == "dataset_decomposition":
            benchmark.pedantic(
                vaemath.dataset_decomposition, args=(mu, logvar), rounds=1, warmup_rounds=1
            )
        else:
            benchmark.pedantic(chen_style, args=(mu, logvar, factors), rounds=1)


@pytest.mark.parametrize("library", ["numpy", "torch"])
def test_mixture_dsprites_size(benchmark, tag, library):
    tag(
        "mutual_information_gap",
        library,
        "mixture, num_queries=10000",
        f"{DSPRITES}x{DIM}",
        "vaemath",
        heavy=True,
    )
    mu, logvar = _library(*_encodings(DSPRITES), library)
    benchmark.pedantic(
        vaemath.mutual_information_gap,
        args=(mu, logvar, _factors(DSPRITES)),
        kwargs={"num_queries": 10_000},
        rounds=1,
    )


@pytest.mark.parametrize("impl", ["vaemath", "disentanglement_lib"])
def test_histogram_dsprites_size(benchmark, tag, impl):
    pytest.importorskip("sklearn")
    tag("mutual_information_gap", "numpy", "histogram", f"{DSPRITES}x{DIM}", impl, heavy=True)
    mu, _ = _encodings(DSPRITES)
    factors = _factors(DSPRITES)
    if impl == "vaemath":
        benchmark.pedantic(
            vaemath.mutual_information_gap,
            args=(mu, mu, factors),
            kwargs={"estimator": "histogram"},
            rounds=1,
        )
    else:
        benchmark.pedantic(disentanglement_lib_histogram, args=(mu, factors), rounds=1)


def test_alternatives_agree():
    """The alternatives estimate the same quantities (plain test, not timed)."""
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(0)
    factors = _factors(3000)
    mu = (factors[:, :2] @ rng.standard_normal((2, DIM))).astype(np.float32)
    mu += 0.3 * rng.standard_normal(mu.shape).astype(np.float32)
    logvar = np.full_like(mu, -3.0)
    ours = vaemath.mutual_information_gap(mu, mu, factors, estimator="histogram")
    np.testing.assert_allclose(
        ours.mutual_information, disentanglement_lib_histogram(mu, factors), rtol=1e-5, atol=1e-7
    )
    mixture = vaemath.mutual_information_gap(
        mu.astype(np.float64), logvar.astype(np.float64), factors
    )
    chen = chen_style(torch.from_numpy(mu).double(), torch.from_numpy(logvar).double(), factors)
    # different Monte Carlo samples: agreement to a few standard errors
    np.testing.assert_allclose(mixture.mutual_information, chen, atol=0.05)
