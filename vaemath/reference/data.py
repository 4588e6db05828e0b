"""Built-in datasets: procedurally generated shapes with known factors, and 8x8 digits.

Nothing is downloaded. ``shapes`` is rendered on the fly (a fraction of a second);
``digits`` is scikit-learn's bundled copy of the UCI optical digits (1797 images).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

__all__ = ["DATASETS", "Dataset", "load_dataset", "make_digits", "make_shapes"]

DATASETS = ("shapes", "digits")

SHAPE_NAMES = ("square", "ellipse", "triangle")


@dataclass(frozen=True)
class Dataset:
    """Images with the generative factors that made them.

    Attributes
    ----------
    images : ndarray, shape ``(N, H, W)``, float32 in ``[0, 1]``
    factors : ndarray, shape ``(N, K)``, int64
        Index of each factor's value (``0 .. sizes[k] - 1``) for every image.
    factor_names : tuple of str, length ``K``
    factor_sizes : tuple of int, length ``K``
    """

    name: str
    images: np.ndarray
    factors: np.ndarray
    factor_names: tuple[str, ...]
    factor_sizes: tuple[int, ...]
    info: dict[str, object] = field(default_factory=dict)

    @property
    def image_shape(self) -> tuple[int, int]:
        return (int(self.images.shape[1]), int(self.images.shape[2]))

    def __len__(self) -> int:
        return int(self.images.shape[0])


def _render(shape: int, half: float, cx: float, cy: float, size: int) -> np.ndarray:
    """Binary image of one shape of half-size ``half`` centred at ``(cx, cy)`` (pixels)."""
    # Pixel centres at 0.5, 1.5, ...; y grows downwards.
    coords = np.arange(size, dtype=np.float64) + 0.5
    dx = coords[None, :] - cx
    dy = coords[:, None] - cy
    if shape == 0:  # square
        inside = (np.abs(dx) <= half) & (np.abs(dy) <= half)
    elif shape == 1:  # ellipse, wider than tall, same bounding box as the square
        inside = (dx / half) ** 2 + (dy / (0.7 * half)) ** 2 <= 1.0
    else:  # triangle pointing up, apex at the top of the bounding box
        inside = (dy <= half) & (np.abs(dx) <= (dy + half) / 2.0)
    return inside.astype(np.float32)


def make_shapes(
    *,
    size: int = 32,
    n_scales: int = 4,
    n_positions: int = 12,
    jitter: float = 0.25,
    seed: int = 0,
) -> Dataset:
    """dSprites-like images: every combination of shape x scale x position-x x position-y.

    Parameters
    ----------
    size : int
        Side of the square images, in pixels.
    n_scales, n_positions : int
        Number of scales and of positions along each axis.
    jitter : float
        Uniform sub-pixel jitter (+- ``jitter`` pixels) of each centre, drawn from
        ``seed``; the factor label is the nominal grid value, as in dSprites'
        rasterised positions. ``jitter=0`` gives a seed-independent dataset.
    seed : int
        Seed of the jitter. The dataset is a pure function of the arguments.

    Returns
    -------
    Dataset
        ``len(SHAPE_NAMES) * n_scales * n_positions**2`` images, in the row-major
        order of the factor grid (shape, scale, pos_x, pos_y).
    """
    halves = np.linspace(0.10 * size, 0.20 * size, n_scales)
    margin = halves[-1] + 1.0
    positions = np.linspace(margin, size - margin, n_positions)
    rng = np.random.default_rng(seed)
    sizes = (len(SHAPE_NAMES), n_scales, n_positions, n_positions)
    grid = np.array(list(itertools.product(*(range(s) for s in sizes))), dtype=np.int64)
    offsets = rng.uniform(-jitter, jitter, size=(grid.shape[0], 2)) if jitter > 0 else None
    images = np.empty((grid.shape[0], size, size), dtype=np.float32)
    for i, (shape, scale, px, py) in enumerate(grid):
        cx, cy = positions[px], positions[py]
        if offsets is not None:
            cx, cy = cx + offsets[i, 0], cy + offsets[i, 1]
        images[i] = _render(int(shape), float(halves[scale]), float(cx), float(cy), size)
    return Dataset(
        name="shapes",
        images=images,
        factors=grid,
        factor_names=("shape", "scale", "pos_x", "pos_y"),
        factor_sizes=sizes,
        info={"size": size, "jitter": jitter, "seed": seed},
    )


def make_digits() -> Dataset:
    """scikit-learn's bundled 8x8 digits, scaled to ``[0, 1]``; the factor is the label."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (np.asarray(bunch.images, dtype=np.float32) / 16.0).clip(0.0, 1.0)
    labels = np.asarray(bunch.target, dtype=np.int64)[:, None]
    return Dataset(
        name="digits",
        images=images,
        factors=labels,
        factor_names=("digit",),
        factor_sizes=(10,),
        info={"source": "sklearn.datasets.load_digits"},
    )


def load_dataset(name: str, *, seed: int = 0) -> Dataset:
    """The built-in dataset ``name`` (one of :data:`DATASETS`)."""
    if name == "shapes":
        return make_shapes(seed=seed)
    if name == "digits":
        return make_digits()
    msg = f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}"
    raise ValueError(msg)
