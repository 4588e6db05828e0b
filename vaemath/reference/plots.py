"""PNG figures (matplotlib, Agg backend): reconstructions, traversals, curves, comparison."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
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


def _save(fig: Any, path: Path) -> None:
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def _examples(dataset: Dataset, count: int) -> np.ndarray:
    return np.linspace(0, len(dataset) - 1, count).round().astype(np.int64)


@torch.no_grad()
def plot_reconstructions(model: VAE, dataset: Dataset, path: Path, *, count: int = 10) -> None:
    """Top row: data; bottom row: the decoder's mean at the posterior mean."""
    model.eval()
    index = _examples(dataset, count)
    x = torch.from_numpy(dataset.images[index])
    mu, _ = model.encode(x)
    recon = torch.sigmoid(model.decode(mu)).numpy()
    fig, axes = plt.subplots(2, count, figsize=(1.1 * count, 2.5))
    for i in range(count):
        for row, image in enumerate((dataset.images[index[i]], recon[i])):
            axes[row, i].imshow(image, cmap="gray", vmin=0, vmax=1)
            axes[row, i].set_axis_off()
    axes[0, 0].set_title("data", fontsize=8, loc="left")
    axes[1, 0].set_title("reconstruction", fontsize=8, loc="left")
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
    dims = base.shape[1]
    fig, axes = plt.subplots(dims, steps, figsize=(0.9 * steps + 1.2, 0.9 * dims), squeeze=False)
    for row, j in enumerate(order):
        z = base.repeat(steps, 1)
        z[:, j] = torch.as_tensor(values, dtype=z.dtype)
        images = torch.sigmoid(model.decode(z)).numpy()
        for c in range(steps):
            axes[row, c].imshow(images[c], cmap="gray", vmin=0, vmax=1)
            axes[row, c].set_xticks([])
            axes[row, c].set_yticks([])
        axes[row, 0].set_ylabel(f"z{j}\nKL {kl_per_unit[j]:.2f}", fontsize=7, rotation=0, ha="right")
    fig.suptitle(
        f"latent traversals, {values[0]:.2f} .. {values[-1]:.2f} (prior mean +- 2.5 sd)",
        fontsize=9,
    )
    _save(fig, path)


def plot_curves(history: list[dict[str, float]], path: Path, *, title: str) -> None:
    """Every logged term (epoch means) against the epoch."""
    epochs = [row["epoch"] for row in history]
    cols = 4
    rows = math.ceil(len(TERMS) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
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
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
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
