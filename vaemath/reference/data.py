"""Built-in datasets with known generative factors: a procedural dSprites, shapes, digits.

Nothing is downloaded.

* ``dsprites``: a procedural replica of DeepMind's dSprites (Matthey et al. 2017) on its
  exact factor grid, 737,280 binary 64x64 images; lazy (:class:`DSpritesImages` renders
  the images a batch asks for and keeps them bit-packed, at most 377 MB).
* ``dsprites-small``: the sub-grid :data:`DSPRITES_SMALL_LEVELS` of the same grid (4,608
  images, held in memory), the demo's default: a small MLP VAE trains on it in seconds
  on a laptop CPU, and its labels are indices into the full grid.
* ``shapes``: smaller dSprites-like 32x32 images, rendered on the fly (a fraction of a
  second).
* ``digits``: scikit-learn's bundled copy of the UCI optical digits (1797 images).

Read images by batch with :meth:`Dataset.batch` (or ``dataset.images[indices]``), which
works alike whether ``images`` is an array or lazy.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .dsprites import (
    DSPRITES_FACTOR_NAMES,
    DSPRITES_FACTOR_SIZES,
    DSPRITES_ORIENTATIONS,
    DSPRITES_POSITIONS,
    DSPRITES_SCALES,
    DSPRITES_SHAPES,
    DSPRITES_SMALL_LEVELS,
    DSpritesImages,
    render_dsprites,
)

__all__ = [
    "DATASETS",
    "DSPRITES_FACTOR_NAMES",
    "DSPRITES_FACTOR_SIZES",
    "DSPRITES_ORIENTATIONS",
    "DSPRITES_POSITIONS",
    "DSPRITES_SCALES",
    "DSPRITES_SHAPES",
    "DSPRITES_SMALL_LEVELS",
    "DSpritesImages",
    "Dataset",
    "load_dataset",
    "make_digits",
    "make_dsprites",
    "make_shapes",
    "render_dsprites",
]

DATASETS = ("dsprites-small", "dsprites", "shapes", "digits")

SHAPE_NAMES = ("square", "ellipse", "triangle")


@dataclass(frozen=True)
class Dataset:
    """Images with the generative factors that made them.

    Attributes
    ----------
    images : ndarray or DSpritesImages, shape ``(N, H, W)``, float32 in ``[0, 1]``
        An array, or (the full dSprites grid) a lazy store with the same
        ``len``/``shape``/``[indices]`` interface; read it with :meth:`batch`.
    factors : ndarray, shape ``(N, K)``, int64
        Index of each factor's value (``0 .. sizes[k] - 1``) for every image.
    factor_names : tuple of str, length ``K``
    factor_sizes : tuple of int, length ``K``
        Number of values of each factor in the grid the labels index; for a
        sub-grid of dSprites that is the full grid (the values present are
        ``info["levels"]``).
    info : dict
        How the data was made; ``info["family"] == "dsprites"`` for both dSprites
        datasets.
    """

    name: str
    images: np.ndarray | DSpritesImages
    factors: np.ndarray
    factor_names: tuple[str, ...]
    factor_sizes: tuple[int, ...]
    info: dict[str, object] = field(default_factory=dict)

    @property
    def image_shape(self) -> tuple[int, int]:
        return (int(self.images.shape[1]), int(self.images.shape[2]))

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def batch(self, indices: Any) -> np.ndarray:
        """Read some images, whatever holds them (an array or a lazy store).

        Parameters
        ----------
        indices : int array, slice or boolean mask
            Which images.

        Returns
        -------
        ndarray, shape ``(B, H, W)``, float32
            A new array (writing to it changes nothing here).
        """
        if isinstance(self.images, DSpritesImages):
            return self.images.batch(indices)
        return np.asarray(self.images[indices], dtype=np.float32)

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        """Iterate over every image in order, by blocks.

        Parameters
        ----------
        batch_size : int
            Images per block (the last one may hold fewer).

        Yields
        ------
        ndarray, shape ``(B, H, W)``, float32
            The next block, from :meth:`batch`.
        """
        for start in range(0, len(self), batch_size):
            yield self.batch(slice(start, start + batch_size))


# -- dSprites -------------------------------------------------------------------------


def _grid(levels: Sequence[Sequence[int]]) -> np.ndarray:
    """Every combination of ``levels`` in dSprites' order (first factor slowest), ``(N, K)``."""
    sizes = tuple(len(values) for values in levels)
    codes = np.indices(sizes, dtype=np.int64).reshape(len(sizes), -1)
    columns = [
        np.asarray(values, dtype=np.int64)[code] for values, code in zip(levels, codes, strict=True)
    ]
    return np.ascontiguousarray(np.stack(columns, axis=1))


def make_dsprites(
    levels: Sequence[Sequence[int]] | None = None, *, lazy: bool | None = None
) -> Dataset:
    """A procedural dSprites on its factor grid, or on a sub-grid of it.

    Parameters
    ----------
    levels : sequence of 5 sequences of int, optional
        For each factor of :data:`DSPRITES_FACTOR_NAMES`, the indices (into the
        full grid) to keep, e.g. :data:`DSPRITES_SMALL_LEVELS`; default every
        value: the 737,280 images of dSprites.
    lazy : bool, optional
        Keep the images in a :class:`DSpritesImages` (rendered on demand) rather
        than a float32 array; default: lazy above 100,000 images.

    Returns
    -------
    Dataset
        Images in dSprites' order (shape slowest, then scale, orientation, pos_x,
        pos_y fastest, like its ``latents_classes``); ``factors`` are indices into
        the *full* grid (``pos_x`` in ``0 .. 31`` for a sub-grid too), so metrics
        on a sub-grid compare with the full grid.

    Examples
    --------
    >>> data = make_dsprites(((0, 2), (5,), (0,), (0, 31), (0, 31)))
    >>> len(data), data.factors[-1].tolist(), data.images.dtype
    (8, [2, 5, 0, 31, 31], dtype('float32'))
    """
    if levels is None:
        levels = tuple(tuple(range(size)) for size in DSPRITES_FACTOR_SIZES)
    levels = tuple(tuple(int(v) for v in values) for values in levels)
    if len(levels) != len(DSPRITES_FACTOR_SIZES):
        msg = f"`levels` must give 5 factors' levels, got {len(levels)}"
        raise ValueError(msg)
    named = zip(DSPRITES_FACTOR_NAMES, levels, DSPRITES_FACTOR_SIZES, strict=True)
    for name, values, size in named:
        if (
            not values
            or values != tuple(sorted(set(values)))
            or not 0 <= values[0] <= values[-1] < size
        ):
            msg = f"levels of {name!r} must be increasing indices in 0 .. {size - 1}, got {values}"
            raise ValueError(msg)
    factors = _grid(levels)
    full = all(len(v) == s for v, s in zip(levels, DSPRITES_FACTOR_SIZES, strict=True))
    if lazy is None:
        lazy = factors.shape[0] > 100_000
    images: np.ndarray | DSpritesImages = (
        DSpritesImages(factors) if lazy else render_dsprites(factors).astype(np.float32)
    )
    return Dataset(
        name="dsprites" if full else "dsprites-subset",
        images=images,
        factors=factors,
        factor_names=DSPRITES_FACTOR_NAMES,
        factor_sizes=DSPRITES_FACTOR_SIZES,
        info={
            "family": "dsprites",
            "source": "procedural replica of dSprites (Matthey et al. 2017), no download",
            "levels": [list(values) for values in levels],
            "lazy": lazy,
        },
    )


# -- smaller shapes and digits ----------------------------------------------------------


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
    """Load a built-in dataset.

    Parameters
    ----------
    name : str
        One of :data:`DATASETS`: ``dsprites-small`` (the demo's default, the
        sub-grid :data:`DSPRITES_SMALL_LEVELS` of dSprites, in memory),
        ``dsprites`` (the full grid, lazy), ``shapes`` or ``digits``.
    seed : int
        Seed of ``shapes``' jitter; the other datasets have no randomness.

    Returns
    -------
    Dataset
        The images and their factors.

    Raises
    ------
    ValueError
        An unknown ``name``.
    """
    if name == "dsprites-small":
        return dataclasses.replace(make_dsprites(DSPRITES_SMALL_LEVELS), name=name)
    if name == "dsprites":
        return make_dsprites()
    if name == "shapes":
        return make_shapes(seed=seed)
    if name == "digits":
        return make_digits()
    msg = f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}"
    raise ValueError(msg)
