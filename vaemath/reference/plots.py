"""PNG figures (matplotlib, Agg backend): reconstructions, traversals, curves, comparison."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data import Dataset
from .model import VAE
from .objectives import TERMS
from .priors import Prior, resolve_prior

__all__ = [
    "COMPARED",
    "CURVES_NOTE",
    "OBJECTIVE_COLOURS",
    "anchor_index",
    "objective_colour",
    "plot_comparison",
    "plot_curves",
    "plot_reconstructions",
    "plot_traversals",
]

TERM_TITLES = {
    "loss": "training loss",
    "elbo": "ELBO",
    "recon": "reconstruction  -log p(x|z)",
    "kl": "KL(q(z|x) || p(z))",
    "mi": "index-code MI  I(x; z)",
    "tc": "total correlation TC(z)",
    "dimkl": "dimension-wise KL",
    "mmd2": "MMD^2(q(z), p(z))",
}


def _pyplot() -> Any:
    """matplotlib.pyplot on the file-only Agg backend (imported on first use)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    fig.savefig(path, dpi=100, bbox_inches="tight")
    _pyplot().close(fig)


def _examples(dataset: Dataset, count: int) -> np.ndarray:
    return np.linspace(0, len(dataset) - 1, count).round().astype(np.int64)


def _centre(index: int, size: int, pad: int = 1) -> float:
    """Pixel coordinate of the centre of tile ``index`` along one axis of :func:`_mosaic`."""
    return pad + (size + pad) * index + size / 2 - 0.5


def _mosaic(tiles: np.ndarray, pad: int = 1) -> np.ndarray:
    """``(R, C, H, W)`` tiles -> one ``(R*(H+pad)+pad, C*(W+pad)+pad)`` image, grey gaps."""
    rows, cols, h, w = tiles.shape
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad), 0.5, dtype=np.float32)
    for r in range(rows):
        for c in range(cols):
            top, left = pad + r * (h + pad), pad + c * (w + pad)
            out[top : top + h, left : left + w] = tiles[r, c]
    return out


@torch.no_grad()
def plot_reconstructions(model: VAE, dataset: Dataset, path: Path, *, count: int = 12) -> None:
    """Top row: data; bottom row: the decoder's mean at the posterior mean."""
    model.eval()
    index = _examples(dataset, count)
    x = torch.from_numpy(dataset.images[index])
    mu, _ = model.encode(x)
    recon = torch.sigmoid(model.decode(mu)).numpy()
    mosaic = _mosaic(np.stack([dataset.images[index], recon]))
    fig, ax = _pyplot().subplots(figsize=(0.8 * count, 1.9))
    ax.imshow(mosaic, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    h = dataset.image_shape[0] + 1
    ax.set_yticks([h / 2, 1.5 * h], ["data", "reconstruction"], fontsize=8)
    ax.set_xticks([])
    _save(fig, path)


def anchor_index(dataset: Dataset) -> int:
    """The image traversals start from: every factor nearest the middle of its range.

    A mid-sized shape near the centre (on the shape data), so that the traversals
    are readable; ties go to the first such image.
    """
    factors = np.asarray(dataset.factors, dtype=np.float64)
    lo, hi = factors.min(0), factors.max(0)
    spread = np.where(hi > lo, hi - lo, 1.0)
    distance = (((factors - (lo + hi) / 2) / spread) ** 2).sum(1)
    return int(np.argmin(distance))


@torch.no_grad()
def plot_traversals(
    model: VAE,
    dataset: Dataset,
    path: Path,
    *,
    kl_per_unit: Sequence[float],
    prior_mu: float | None = None,
    prior_scale: float | None = None,
    steps: int = 9,
    prior: Prior | None = None,
    score_name: str = "KL",
) -> None:
    """One row per latent (sorted by KL): decode the posterior mean of one image with
    that latent swept over the prior's support.

    The prior is ``prior`` or the Gaussian ``N(prior_mu, prior_scale^2)``; the
    sweep is :meth:`Prior.traversal_values`: ``prior_mu +- 2.5 prior_scale`` for
    the Gaussian, the box for the uniform, the 0.6% to 99.4% quantiles of the
    marginals for the mixture. ``kl_per_unit`` orders the rows and labels them as
    ``score_name`` (``"Var[mu]"`` for the uniform prior, whose KL is infinite).
    The anchor image (and its reconstruction at the posterior mean) sits in its own
    column on the left, at the same scale as the traversal images.
    """
    prior = resolve_prior(prior, prior_mu, prior_scale)
    model.eval()
    middle = anchor_index(dataset)
    anchor = np.asarray(dataset.images[middle : middle + 1], dtype=np.float32)
    x = torch.from_numpy(anchor)
    base, _ = model.encode(x)
    recon = torch.sigmoid(model.decode(base)).numpy()
    order = np.argsort(-np.asarray(kl_per_unit))
    dims = len(order)
    values = prior.traversal_values(dims, steps)
    rows = max(dims, 2)
    h, w = dataset.image_shape
    traversal = np.full((rows, steps, h, w), 0.5, dtype=np.float32)
    for r, j in enumerate(order):
        z = base.repeat(steps, 1)
        z[:, j] = torch.as_tensor(values, dtype=z.dtype)
        traversal[r] = torch.sigmoid(model.decode(z)).numpy()
    column = np.full((rows, 1, h, w), 0.5, dtype=np.float32)
    column[0, 0], column[1, 0] = anchor[0], recon[0]
    left, right = _mosaic(column), _mosaic(traversal)
    gap = np.ones((left.shape[0], 4), dtype=np.float32)
    fig, ax = _pyplot().subplots(figsize=(0.7 * (steps + 1) + 2.4, 0.7 * rows + 0.9))
    ax.imshow(np.hstack([left, gap, right]), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    offset = left.shape[1] + gap.shape[1]
    ax.set_yticks([_centre(0, h), _centre(1, h)], ["anchor image", "its recon."])
    ax.tick_params(axis="y", labelsize=7, length=0)
    centres = [offset + _centre(c, w) for c in range(steps)]
    ax.set_xticks(centres, [f"{v:.2g}" for v in values], fontsize=7)
    ax.set_xlabel(f"value of the swept latent ({prior.traversal_text()})", fontsize=7)
    for r, j in enumerate(order):
        ax.text(
            offset + right.shape[1] + 1,
            _centre(r, h),
            f"z{j}  {score_name} {kl_per_unit[j]:.2f}",
            fontsize=7,
            va="center",
            ha="left",
        )
    ax.set_title(f"latent traversals of the anchor image (rows sorted by {score_name})", fontsize=9)
    _save(fig, path)


_MINIBATCH = {"mi", "tc", "dimkl"}
TERM_UNITS = {"loss": "nats (weighted sum)", "mmd2": "MMD² (no unit)"}
CURVES_NOTE = (
    "All curves are epoch means of minibatch values. MI, TC and dimension-wise KL are "
    "minibatch estimates ({method} estimator of log q(z), Chen et al. 2018): the estimate\n"
    "of log q(z) from one minibatch is biased and each term is estimated separately, so "
    "unlike the true quantities the estimates are not constrained to be >= 0 and can be\n"
    "negative. The full-dataset values are in metrics.json. Y-limits are set from epochs "
    ">= 2 (epoch 1 is marked when off scale)."
)


def _robust_limits(ax: Any, values: Sequence[float]) -> None:
    """Y-limits from epochs >= 2, so a large epoch-1 value does not flatten the curve."""
    tail = [v for v in values[1:] if math.isfinite(v)]
    if len(tail) < 2 or not math.isfinite(values[0]):
        return
    lo, hi = min(tail), max(tail)
    if lo <= values[0] <= hi:
        return
    pad = 0.08 * ((hi - lo) or abs(hi) or 1.0)
    ax.set_ylim(lo - pad, hi + pad)
    ax.text(
        0.98,
        0.95 if values[0] > hi else 0.05,
        f"epoch 1: {values[0]:.3g} (off scale)",
        transform=ax.transAxes,
        ha="right",
        va="top" if values[0] > hi else "bottom",
        fontsize=6,
        color="0.35",
    )


def plot_curves(
    history: list[dict[str, float]], path: Path, *, title: str, method: str = "mws"
) -> None:
    """Every logged term (epoch means of minibatch values) against the epoch.

    MI, TC and dimension-wise KL are labelled as minibatch estimates, with a note
    on why they can be negative; y-limits come from epochs >= 2.
    """
    epochs = [row["epoch"] for row in history]
    cols = 4
    rows = math.ceil(len(TERMS) / cols)
    fig, axes = _pyplot().subplots(rows, cols, figsize=(3.3 * cols, 2.5 * rows), squeeze=False)
    for ax, term in zip(axes.flat, TERMS, strict=False):
        values = [float(row[term]) for row in history]
        label = TERM_TITLES[term]
        if not any(math.isfinite(v) for v in values):  # the KL terms of a uniform prior
            same = len({str(v) for v in values}) == 1
            text = f"{values[0]:g} at every epoch" if same else "no finite value"
            ax.text(0.5, 0.5, text, ha="center", fontsize=8, transform=ax.transAxes)
            ax.set_title(label, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        ax.plot(epochs, values, marker=".", lw=1)
        if term in _MINIBATCH:
            label += "\n(minibatch estimate)"
            ax.axhline(0.0, color="0.6", lw=0.6, ls="--")
        ax.set_title(label, fontsize=8)
        ax.set_xlabel("epoch", fontsize=7)
        ax.xaxis.set_major_locator(_pyplot().MaxNLocator(integer=True))
        ax.set_ylabel(TERM_UNITS.get(term, "nats"), fontsize=7)
        ax.tick_params(labelsize=7)
        _robust_limits(ax, values)
    for ax in list(axes.flat)[len(TERMS) :]:
        ax.set_axis_off()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.text(0.01, 0.01, CURVES_NOTE.format(method=method.upper()), fontsize=7, va="bottom")
    _save(fig, path)


# One colour per objective, whatever subset is compared (matplotlib's tab10 order).
OBJECTIVE_COLOURS = {
    "elbo": "#1f77b4",
    "beta": "#ff7f0e",
    "betatc": "#2ca02c",
    "infovae": "#d62728",
}
OTHER_COLOUR = "#7f7f7f"

COMPARED = (
    ("elbo", "ELBO (nats)"),
    ("recon", "reconstruction (nats)"),
    ("kl", "KL (nats)"),
    ("mi", "MI (nats)"),
    ("tc", "total correlation (nats)"),
    ("dimkl", "dimension-wise KL (nats)"),
    ("active_units", "active units"),
    ("mig", "MIG (Chen et al.)"),
    ("mig_histogram", "MIG (histogram)"),
)


def objective_colour(name: str) -> str:
    """The fixed colour of objective ``name`` in every comparison figure."""
    return OBJECTIVE_COLOURS.get(name, OTHER_COLOUR)


def _bar_panel(ax: Any, names: list[str], stats: list[dict[str, Any]], key: str) -> None:
    means = [s["mean"] for s in stats]
    sds = [s["sd"] or 0.0 for s in stats]
    x = np.arange(len(names))
    ax.bar(
        x,
        means,
        yerr=sds,
        capsize=3,
        color=[objective_colour(n) for n in names],
        error_kw={"elinewidth": 1, "ecolor": "black"},
    )
    lows, highs = [], []
    for i, s in enumerate(stats):
        values = s["values"]
        spread = np.linspace(-0.15, 0.15, len(values)) if len(values) > 1 else [0.0]
        ax.scatter(i + np.asarray(spread), values, s=6, color="black", zorder=3, lw=0)
        lows.append(min(means[i] - sds[i], *values))
        highs.append(max(means[i] + sds[i], *values))
    lo, hi = min(0.0, *lows), max(0.0, *highs)
    if lo == hi:  # every value 0
        hi = 1.0
    span = hi - lo
    ax.set_ylim(lo - (0.2 * span if lo < 0 else 0.0), hi + (0.2 * span if hi > 0 else 0.0))
    for i, m in enumerate(means):
        up = m >= 0
        ax.annotate(
            f"{m:.3g}",
            (i, highs[i] if up else lows[i]),
            xytext=(0, 2 if up else -2),
            textcoords="offset points",
            ha="center",
            va="bottom" if up else "top",
            fontsize=7,
        )
    ax.set_xticks(x, names)
    if key == "active_units":
        ax.yaxis.set_major_locator(_pyplot().MaxNLocator(integer=True))


def _finite(stats: dict[str, Any], key: str) -> bool:
    """Whether ``stats`` has a finite mean of ``key`` (KL terms of a uniform prior: inf)."""
    return key in stats and math.isfinite(stats[key]["mean"])


def plot_comparison(summary: dict[str, dict[str, Any]], path: Path, *, title: str) -> None:
    """One panel per metric, one bar per objective: mean over seeds, error bar ± 1 sd.

    Parameters
    ----------
    summary : dict
        By objective, by metric key: ``{"mean", "sd", "values"}`` (``sd`` ``None``
        for one seed), as :func:`vaemath.reference.report.summarise` returns.
    path : Path
        The PNG to write.
    title : str
        The figure title.
    """
    panels = [(k, t) for k, t in COMPARED if any(_finite(s, k) for s in summary.values())]
    cols = 3
    rows = math.ceil(len(panels) / cols)
    fig, axes = _pyplot().subplots(rows, cols, figsize=(3.4 * cols, 2.7 * rows), squeeze=False)
    for ax, (key, label) in zip(axes.flat, panels, strict=False):
        names = [n for n, s in summary.items() if _finite(s, key)]
        _bar_panel(ax, names, [summary[n][key] for n in names], key)
        ax.set_title(label, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_axis_off()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.text(
        0.01,
        0.005,
        "bars: mean over seeds; error bars: ± 1 sample sd; dots: the individual seeds",
        fontsize=7,
    )
    _save(fig, path)
