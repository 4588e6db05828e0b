r"""Small-batch bias of the MI / TC estimators, with and without a bias correction.

Writes ``docs/_generated/bias_correction.rst`` (included by ``docs/estimators.rst``,
section "Bias at small batches"). Run from the repository root (about a minute)::

    python docs/scripts/bias_correction.py

Setup: the dataset and linear-Gaussian encoder of ``minibatch_bias.py``
(N = 50,000, D = 3, closed-form truth), with the encoder's s = 0.5 and a
sharper s = 0.25 (larger MI, larger bias). For each batch size, ``REPEATS``
batches are drawn without replacement, and on each batch every estimator
(batch mixture, MWS, MSS) is evaluated with three corrections of each
log-density estimate :math:`\ell_i = \log \sum_j w_{ij} q(z_i|x_j)` (and of
each per-dimension :math:`\ell_{id}`):

* none: the library's default;
* delta: :math:`\ell_i + \widehat{\mathrm{Var}}(\hat q_i) / (2 \hat q_i^2)`, the
  delta method for the log of an unbiased mean, with the variance of the
  weighted sum of the other components estimated from their sample variance
  :math:`s_i^2` (sampling without replacement from the N - 1 other points):
  :math:`\widehat{\mathrm{Var}} = s_i^2 (\sum_{j \ne i} w_{ij}^2 - c^2/(N-1))`,
  :math:`c = \sum_{j \ne i} w_{ij}`; for the batch mixture the others are
  i.i.d. (:math:`N \to \infty`). This formula lives here only: it is not
  offered by the library;
* jackknife: the library's ``bias_correction="jackknife"``
  (``vaemath/_estimators/_bias.py``); for the batch mixture, which the library
  refuses, the same private routine with the batch-mixture weights.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy.special import logsumexp

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from estimator_bias import linear_gaussian_truth  # noqa: E402
from minibatch_bias import BATCHES, ESTIMATORS, A, N, draw_batch, encoded_dataset  # noqa: E402

import vaemath  # noqa: E402
from vaemath._estimators._bias import jackknife_shifts, log_term_matrices  # noqa: E402
from vaemath._estimators._weights import LogWeights, log_weights  # noqa: E402

OUT = ROOT / "docs" / "_generated"
ENCODERS = {0.5: BATCHES, 0.25: (64, 256)}  # posterior sd s: batch sizes
REPEATS = {64: 400, 128: 200, 256: 100, 512: 40, 1024: 20}
CORRECTIONS = ("none", "delta", "jackknife")
TERMS = ("mutual_information", "total_correlation", "dimensionwise_kl")
LABELS = {"mutual_information": "MI", "total_correlation": "TC", "dimensionwise_kl": "DWKL"}


def other_sums(log_q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``log sum_j q_ij`` and ``log sum_j q_ij^2`` over the others ``j != i``, from ``log q_ij``."""
    others = np.where(np.eye(log_q.shape[0], dtype=bool), -np.inf, log_q)
    return logsumexp(others, axis=1), logsumexp(2 * others, axis=1)


def delta_shift(
    sums: tuple[np.ndarray, np.ndarray], ell: np.ndarray, weights: LogWeights, n_data: float
) -> np.ndarray:
    """``(B,)`` delta-method shifts ``Var / (2 q^2)`` of one density, from :func:`other_sums`."""
    log_s1, log_s2 = sums
    n = log_s1.shape[0] - 1
    rel_var = (np.exp(log_s2 - 2 * ell) - np.exp(2 * log_s1 - 2 * ell) / n) / (n - 1)
    w_other = math.exp(weights.log_other)
    if weights.log_next is None:
        sum_w2, c = n * w_other**2, n * w_other
    else:
        w_next = math.exp(weights.log_next)
        sum_w2, c = (n - 1) * w_other**2 + w_next**2, (n - 1) * w_other + w_next
    return 0.5 * rel_var * (sum_w2 - c**2 / (n_data - 1))


def batch_terms(
    z: np.ndarray, mu: np.ndarray, logvar: np.ndarray, truth: dict[str, float]
) -> dict[tuple[str, str, str], float]:
    """Errors (estimate minus truth) of every estimator, correction and term on one batch."""
    b = z.shape[0]
    sums = [other_sums(m) for m in log_term_matrices(z, mu, logvar, LogWeights(0.0), xp=np)]
    errors = {}
    for e, options in ESTIMATORS.items():
        ds = options["dataset_size"]
        method = options.get("method", "mws")
        weights = log_weights(b, ds, method)
        plain = vaemath.elbo_decomposition(z, mu, logvar, **options)
        values = {"none": {t: float(getattr(plain, t)) for t in TERMS}}
        ell, ell_d = vaemath.log_aggregate_posterior(
            z, mu, logvar, **options, return_marginals=True
        )
        n_data = math.inf if ds is None else ds
        shift = delta_shift(sums[0], ell, weights, n_data)
        shift_d = np.stack(
            [delta_shift(m, ell_d[:, d], weights, n_data) for d, m in enumerate(sums[1:])], axis=1
        )
        if ds is None:
            jk, jk_d = jackknife_shifts(z, mu, logvar, weights, fpc=1.0, xp=np)
            values["jackknife"] = shifted(values["none"], jk, jk_d)
        else:
            r = vaemath.elbo_decomposition(z, mu, logvar, **options, bias_correction="jackknife")
            values["jackknife"] = {t: float(getattr(r, t)) for t in TERMS}
        values["delta"] = shifted(values["none"], shift, shift_d)
        for c in CORRECTIONS:
            for t in TERMS:
                errors[e, c, t] = values[c][t] - truth[t]
    return errors


def shifted(plain: dict[str, float], shift: np.ndarray, shift_d: np.ndarray) -> dict[str, float]:
    """The three terms after adding ``shift`` to every ``ell_i`` and ``shift_d`` to ``ell_id``."""
    sum_d = shift_d.sum(axis=1)
    return {
        "mutual_information": plain["mutual_information"] - float(shift.mean()),
        "total_correlation": plain["total_correlation"] + float((shift - sum_d).mean()),
        "dimensionwise_kl": plain["dimensionwise_kl"] + float(sum_d.mean()),
    }


def study(s: float, batches: tuple[int, ...], seed: int) -> tuple[dict, dict[str, float]]:
    """``{(B, estimator, correction, term): (bias, sd, se)}`` and the truth for encoder ``s``."""
    rng = np.random.default_rng(seed)
    mu_all = encoded_dataset(rng)
    truth = linear_gaussian_truth(A, s)
    stats = {}
    for b in batches:
        runs = [batch_terms(*draw_batch(rng, mu_all, b, s), truth) for _ in range(REPEATS[b])]
        for key in runs[0]:
            v = np.array([r[key] for r in runs])
            sd = v.std(ddof=1)
            stats[(b, *key)] = (v.mean(), sd, sd / math.sqrt(len(v)))
    return stats, truth


def criterion(stats: dict, b: int = 64) -> list[str]:
    """Whether each correction halves |bias| at ``b`` for MWS/MSS MI and TC within 1.5x the sd."""
    lines = []
    for c in CORRECTIONS[1:]:
        worst_bias, worst_sd = 0.0, 0.0
        for e in ("MWS", "MSS"):
            for t in ("mutual_information", "total_correlation"):
                bias0, sd0, _ = stats[b, e, "none", t]
                bias1, sd1, _ = stats[b, e, c, t]
                worst_bias = max(worst_bias, abs(bias1) / abs(bias0))
                worst_sd = max(worst_sd, sd1 / sd0)
        met = worst_bias <= 0.5 and worst_sd <= 1.5
        lines.append(
            f"{c}: absolute bias at most {worst_bias:.2f} x, sd at most {worst_sd:.2f} x the "
            f"uncorrected ({'meets' if met else 'fails'} the criterion)"
        )
    return lines


def table(stats: dict, truth: dict[str, float], s: float, batches: tuple[int, ...]) -> list[str]:
    caption = (
        f"s = {s}: bias (mean estimate minus the closed form) and sd over the batches "
        f"({', '.join(f'{REPEATS[b]} at B = {b}' for b in batches)}; standard error of a "
        f"bias: sd / sqrt(batches)), nats; truth "
        + ", ".join(f"{LABELS[t]} = {truth[t]:.3f}" for t in TERMS)
    )
    lines = [f".. list-table:: {caption}", "   :header-rows: 1", "", "   * - B"]
    lines += ["     - estimator", "     - correction"]
    for t in TERMS:
        lines += [f"     - {LABELS[t]} bias", f"     - {LABELS[t]} sd"]
    for b in batches:
        for e in ESTIMATORS:
            for c in CORRECTIONS:
                lines += [f"   * - {b}", f"     - {e}", f"     - {c}"]
                for t in TERMS:
                    bias, sd, _ = stats[b, e, c, t]
                    lines += [f"     - {bias:+.3f}", f"     - {sd:.3f}"]
    return [*lines, ""]


def cost(b: int = 1024, repeats: int = 5) -> str:
    """Run time of the jackknifed ``elbo_decomposition`` relative to the plain one."""
    rng = np.random.default_rng(2)
    z, mu, logvar = draw_batch(rng, encoded_dataset(rng), b)
    times = {}
    for c in (None, "jackknife"):
        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            vaemath.elbo_decomposition(z, mu, logvar, dataset_size=N, bias_correction=c)
            runs.append(time.perf_counter() - t0)
        times[c] = float(np.median(runs))
    return (
        f"Cost at B = {b}, D = {A.shape[0]} (NumPy, median of {repeats}): "
        f"{times[None] * 1e3:.1f} ms plain, {times['jackknife'] * 1e3:.1f} ms with "
        f'``bias_correction="jackknife"`` ({times["jackknife"] / times[None]:.1f} x).'
    )


def main(out_dir: Path = OUT) -> Path:
    start = time.perf_counter()
    lines = [".. Generated by docs/scripts/bias_correction.py; do not edit.", ""]
    summary = []
    for k, (s, batches) in enumerate(ENCODERS.items()):
        stats, truth = study(s, batches, seed=k)
        lines += table(stats, truth, s, batches)
        summary += [f"* s = {s}, {line}." for line in criterion(stats)]
    lines += [
        "Criterion at B = 64 (MWS and MSS, MI and TC: the correction must halve the absolute bias "
        "and keep the sd within 1.5 x):",
        "",
        *summary,
        "",
        cost(),
        "",
        f"(Script run time {time.perf_counter() - start:.0f} s.)",
        "",
    ]
    path = out_dir / "bias_correction.rst"
    path.write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
