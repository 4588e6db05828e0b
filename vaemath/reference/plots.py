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

__all__ = ["plot_comparison", "plot_curves", "plot_reconstructions", "plot_traversals"]

TERM_TITLES = {
    "loss": "training loss",
    "elbo": "ELBO",
    "recon": "reconstruction  -log p(x|z)",
    "kl": "KL(q(z|x) || p(z))",
    "mi": "index-code MI  I(x; z)",
    "tc": "total correlation",
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


@torch.no_grad()
def plot_traversals(
    model: VAE,
    dataset: Dataset,
    path: Path,
    *,
    kl_per_unit: Sequence[float],
    prior_mu: float,
    prior_scale: float,
    steps: int = 9,
) -> None:
    """One row per latent (sorted by KL): decode the posterior mean of one image with
    that latent swept over ``prior_mu +- 2.5 prior_scale``."""
    model.eval()
    x = torch.from_numpy(dataset.images[len(dataset) // 2 : len(dataset) // 2 + 1])
    base, _ = model.encode(x)
    order = np.argsort(-np.asarray(kl_per_unit))
    values = prior_mu + prior_scale * np.linspace(-2.5, 2.5, steps)
    rows = []
    for j in order:
        z = base.repeat(steps, 1)
        z[:, j] = torch.as_tensor(values, dtype=z.dtype)
        rows.append(torch.sigmoid(model.decode(z)).numpy())
    dims = len(rows)
    fig, ax = _pyplot().subplots(figsize=(0.7 * steps + 1.2, 0.7 * dims + 0.5))
    ax.imshow(_mosaic(np.stack(rows)), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    h = dataset.image_shape[0] + 1
    ax.set_yticks(
        [h * (r + 0.5) for r in range(dims)],
        [f"z{j}  KL {kl_per_unit[j]:.2f}" for j in order],
        fontsize=7,
    )
    ax.set_xticks([h * (c + 0.5) for c in range(steps)], [f"{v:.2g}" for v in values], fontsize=7)
    ax.set_title("latent traversals (rows sorted by KL, prior mean +- 2.5 sd)", fontsize=9)
    _save(fig, path)


def plot_curves(history: list[dict[str, float]], path: Path, *, title: str) -> None:
    """Every logged term (epoch means) against the epoch."""
    epochs = [row["epoch"] for row in history]
    cols = 4
    rows = math.ceil(len(TERMS) / cols)
    fig, axes = _pyplot().subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    for ax, term in zip(axes.flat, TERMS, strict=False):
        ax.plot(epochs, [row[term] for row in history], marker=".", lw=1)
        ax.set_title(TERM_TITLES[term], fontsize=8)
        ax.set_xlabel("epoch", fontsize=7)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(TERMS) :]:
        ax.set_axis_off()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


COMPARED = (
    ("recon", "reconstruction (nats)"),
    ("kl", "KL (nats)"),
    ("mi", "MI (nats)"),
    ("tc", "total correlation (nats)"),
    ("dimkl", "dimension-wise KL (nats)"),
    ("active_units", "active units"),
    ("mig", "MIG"),
)


def plot_comparison(results: dict[str, dict[str, Any]], path: Path, *, title: str) -> None:
    """One panel per metric, one bar per objective."""
    names = list(results)
    cols = 4
    rows = math.ceil(len(COMPARED) / cols)
    fig, axes = _pyplot().subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    colours = _pyplot().rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (key, label) in zip(axes.flat, COMPARED, strict=False):
        heights = [float(results[n][key]) for n in names]
        ax.bar(names, heights, color=colours[: len(names)])
        for i, h in enumerate(heights):
            ax.annotate(f"{h:.3g}", (i, h), ha="center", va="bottom", fontsize=7)
        ax.set_title(label, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(COMPARED) :]:
        ax.set_axis_off()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)
