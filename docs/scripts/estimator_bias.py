"""Figures of bias and spread against batch size, for the estimator and MMD pages.

Writes ``docs/_generated/estimator_bias.png`` and ``docs/_generated/mmd_bias.png``.
Run from the repository root (about a minute)::

    python docs/scripts/estimator_bias.py

Ground truths are closed forms, computed here independently of vaemath:

* estimators: a linear-Gaussian encoder, x ~ N(0, I_D), q(z|x) = N(A x, s^2 I).
  Then q(z) = N(0, S) with S = A A^T + s^2 I, so
  I(x; z) = 1/2 log det S - D/2 log s^2, TC = 1/2 (sum_d log S_dd - log det S),
  dimension-wise KL to N(0, I) = sum_d 1/2 (S_dd - 1 - log S_dd). The batch is an
  i.i.d. sample (``dataset_size=None``).
* MMD: x ~ N(0, I_D), y ~ N(delta, I_D), RBF kernel of bandwidth h:
  MMD^2 = 2 c - 2 c exp(-|delta|^2 / (2 (h^2 + 2))), c = (h^2 / (h^2 + 2))^(D/2).
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import vaemath  # noqa: E402

OUT = ROOT / "docs" / "_generated"
BATCHES = [16, 32, 64, 128, 256, 512, 1024, 2048]
REPEATS = 40


def linear_gaussian_truth(a: np.ndarray, s: float) -> dict[str, float]:
    d = a.shape[0]
    cov = a @ a.T + s**2 * np.eye(d)
    logdet = np.linalg.slogdet(cov)[1]
    diag = np.diag(cov)
    return {
        "mutual_information": 0.5 * logdet - 0.5 * d * np.log(s**2),
        "total_correlation": 0.5 * (np.log(diag).sum() - logdet),
        "dimensionwise_kl": float(np.sum(0.5 * (diag - 1 - np.log(diag)))),
    }


def estimator_figure(out_dir: Path) -> Path:
    rng = np.random.default_rng(0)
    d, s = 3, 0.5
    a = np.array([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.0, 0.5, 0.9]])
    truth = linear_gaussian_truth(a, s)
    names = list(truth)
    stats = {n: np.zeros((len(BATCHES), 2)) for n in names}
    for k, b in enumerate(BATCHES):
        values = {n: [] for n in names}
        for _ in range(REPEATS):
            x = rng.standard_normal((b, d))
            mu = x @ a.T
            logvar = np.full((b, d), np.log(s**2))
            z = mu + s * rng.standard_normal((b, d))
            r = vaemath.elbo_decomposition(z, mu, logvar)
            for n in names:
                values[n].append(float(getattr(r, n)))
        for n in names:
            stats[n][k] = np.mean(values[n]), np.std(values[n], ddof=1)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), constrained_layout=True)
    titles = {
        "mutual_information": "mutual information",
        "total_correlation": "total correlation",
        "dimensionwise_kl": "dimension-wise KL",
    }
    for ax, n in zip(axes, names, strict=True):
        mean, sd = stats[n][:, 0], stats[n][:, 1]
        ax.fill_between(BATCHES, mean - sd, mean + sd, alpha=0.25, label="±1 sd over batches")
        ax.plot(BATCHES, mean, "o-", label="mean estimate")
        ax.axhline(truth[n], color="k", ls="--", label="closed form")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size B")
        ax.set_title(f"{titles[n]} (nats)")
    axes[0].legend(fontsize=8)
    fig.suptitle(
        f"elbo_decomposition on a linear-Gaussian encoder (D = {d}, {REPEATS} batches per B)"
    )
    path = out_dir / "estimator_bias.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def mmd_figure(out_dir: Path) -> Path:
    rng = np.random.default_rng(1)
    d, h = 4, 1.0
    delta = np.full(d, 0.5)
    c = (h**2 / (h**2 + 2)) ** (d / 2)
    truth = 2 * c - 2 * c * np.exp(-float(delta @ delta) / (2 * (h**2 + 2)))
    kinds = {
        "mmd2, unbiased": lambda x, y: vaemath.mmd2(x, y, bandwidth=h),
        "mmd2, biased": lambda x, y: vaemath.mmd2(x, y, bandwidth=h, unbiased=False),
        "mmd2_gaussian_prior": lambda x, y: vaemath.mmd2_gaussian_prior(x, delta, 0.0, bandwidth=h),
    }
    stats = {k: np.zeros((len(BATCHES), 2)) for k in kinds}
    for i, b in enumerate(BATCHES):
        values = {k: [] for k in kinds}
        for _ in range(REPEATS):
            x = rng.standard_normal((b, d))
            y = delta + rng.standard_normal((b, d))
            for k, fn in kinds.items():
                values[k].append(float(fn(x, y)))
        for k in kinds:
            stats[k][i] = np.mean(values[k]), np.std(values[k], ddof=1)
    fig, ax = plt.subplots(figsize=(7, 4), constrained_layout=True)
    for k in kinds:
        mean, sd = stats[k][:, 0], stats[k][:, 1]
        ax.fill_between(BATCHES, mean - sd, mean + sd, alpha=0.2)
        ax.plot(BATCHES, mean, "o-", label=k)
    ax.axhline(truth, color="k", ls="--", label="closed form")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size B (n = m = B)")
    ax.set_ylabel("MMD²")
    ax.set_title(
        f"MMD² of N(0, I) vs N(0.5·1, I), D = {d}, RBF h = {h}: mean ± 1 sd over {REPEATS} draws"
    )
    ax.legend(fontsize=8)
    path = out_dir / "mmd_bias.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(out_dir: Path = OUT) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    return [estimator_figure(out_dir), mmd_figure(out_dir)]


if __name__ == "__main__":
    for p in main():
        print(f"wrote {p}")
