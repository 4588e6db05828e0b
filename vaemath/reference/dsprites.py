r"""A procedural replica of dSprites (Matthey et al. 2017): its factor grid and renderer.

Pure NumPy, nothing downloaded, no randomness: :func:`render_dsprites` draws any row
of the grid (3 shapes x 6 scales x 40 orientations x 32 x 32 positions, 737,280 binary
64x64 images) with float64 inside-tests on pixel centres, the same bits on every
machine; :class:`DSpritesImages` is a lazy, bit-packed store of any set of rows.
:func:`vaemath.reference.data.make_dsprites` builds datasets from them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "DSPRITES_FACTOR_NAMES",
    "DSPRITES_FACTOR_SIZES",
    "DSPRITES_ORIENTATIONS",
    "DSPRITES_POSITIONS",
    "DSPRITES_SCALES",
    "DSPRITES_SHAPES",
    "DSPRITES_SMALL_LEVELS",
    "DSpritesImages",
    "render_dsprites",
]


def _frozen(values: np.ndarray) -> np.ndarray:
    values.setflags(write=False)
    return values


DSPRITES_SHAPES = ("square", "ellipse", "heart")
DSPRITES_FACTOR_NAMES = ("shape", "scale", "orientation", "pos_x", "pos_y")
DSPRITES_FACTOR_SIZES = (3, 6, 40, 32, 32)
#: dSprites' factor values (its ``latents_values``): 40 orientations over [0, 2 pi]
#: *inclusive*, as in the real dataset, so orientations 0 and 39 give the same image.
DSPRITES_SCALES = _frozen(np.linspace(0.5, 1.0, 6))
DSPRITES_ORIENTATIONS = _frozen(np.linspace(0.0, 2.0 * np.pi, 40))
DSPRITES_POSITIONS = _frozen(np.linspace(0.0, 1.0, 32))

#: The levels (indices into the full grid) of each factor in ``dsprites-small``:
#: 3 shapes x 3 scales x 8 orientations x 8 x 8 positions = 4,608 images.
#: Every factor keeps more than one value over its full range (smallest and largest
#: scale; every 5th orientation, 46 degrees apart, so no two coincide; positions
#: from edge to edge, 5.2-6.5 px apart), so the five factors and Chen et al.'s
#: protocol carry over unchanged, while one epoch of a 256-unit MLP VAE takes about
#: a second on 2 CPU threads.
DSPRITES_SMALL_LEVELS: tuple[tuple[int, ...], ...] = (
    (0, 1, 2),
    (0, 2, 5),
    (0, 5, 10, 15, 20, 25, 30, 35),
    (0, 4, 9, 13, 18, 22, 27, 31),
    (0, 4, 9, 13, 18, 22, 27, 31),
)

_SIZE = 64  # image side (px)
_PIXELS = _SIZE * _SIZE
_RADIUS = 11.0  # farthest point of every shape from its centre at scale 1 (px)
_MARGIN = _RADIUS + 1.0  # the centre at position 0 (and SIZE - MARGIN at position 1)
_TRAVEL = _SIZE - 2.0 * _MARGIN  # so every shape keeps a clear 1 px border
_CHUNK = 512  # images rendered per vectorised step (float64 temporaries: ~17 MB each)


def _quantised(values: np.ndarray) -> np.ndarray:
    """``values`` rounded to multiples of 2**-32.

    cos/sin may differ in the last bit between libms (NumPy's SIMD loops, glibc,
    macOS); rounding to a coarse grid makes the table, and so every pixel, the same
    on every machine. Everything after it is +, -, *, / and comparisons, exact in
    IEEE float64.
    """
    return np.round(values * 2.0**32) / 2.0**32


_ANGLES = np.mod(DSPRITES_ORIENTATIONS, 2.0 * np.pi)  # 2 pi -> exactly 0
_COS = _frozen(_quantised(np.cos(_ANGLES)))
_SIN = _frozen(_quantised(np.sin(_ANGLES)))

# Shapes in units of the scaled radius R = scale * _RADIUS (the farthest point is 1).
_SQUARE_HALF = 1.0 / math.sqrt(2.0)  # half side: the corners at distance 1
_ELLIPSE_AXES = (1.0, 0.5)  # semi-axes along the orientation and across it
# Heart: a square of half-diagonal h standing on a corner, with a disc on each of its
# two upper sides (centre the side's midpoint, radius h / sqrt 2, through its ends).
# The rotation centre is its centroid, a height c * h above the square's centre:
# c = (pi/8 + 1/6) / (1 + pi/4) (two half-discs of area pi h^2/4 whose centroids sit
# 2h / (3 pi) beyond the sides, over the square's area 2 h^2). The lower corner,
# (1 + c) h away, is the farthest point, so h = 1 / (1 + c).
_HEART_C = (math.pi / 8.0 + 1.0 / 6.0) / (1.0 + math.pi / 4.0)
_HEART_H = 1.0 / (1.0 + _HEART_C)
_HEART_R2 = _HEART_H * _HEART_H / 2.0


def _inside(shape: int, p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Whether the points ``(p, q)`` (shape frame, ``q`` up, unit radius) are in ``shape``."""
    if shape == 0:  # square
        return (np.abs(p) <= _SQUARE_HALF) & (np.abs(q) <= _SQUARE_HALF)
    if shape == 1:  # ellipse, long axis along the orientation
        a, b = _ELLIPSE_AXES
        return (p / a) ** 2 + (q / b) ** 2 <= 1.0
    # heart, point down at orientation 0; mirror-symmetric, so one disc serves |p|
    x = np.abs(p)
    y = q + _HEART_C * _HEART_H  # from the square's centre
    half = _HEART_H / 2.0
    return (x + np.abs(y) <= _HEART_H) | ((x - half) ** 2 + (y - half) ** 2 <= _HEART_R2)


def render_dsprites(factors: np.ndarray) -> np.ndarray:
    r"""Render rows of the dSprites factor grid as binary 64x64 images.

    Parameters
    ----------
    factors : ndarray, shape ``(B, 5)``
        Integer indices ``(shape, scale, orientation, pos_x, pos_y)`` into
        :data:`DSPRITES_SHAPES`, :data:`DSPRITES_SCALES`,
        :data:`DSPRITES_ORIENTATIONS` and :data:`DSPRITES_POSITIONS` (twice).

    Returns
    -------
    ndarray, shape ``(B, 64, 64)``, bool
        Pixel ``(i, j)`` (row ``i`` from the top) is on when its centre
        ``(j + 0.5, i + 0.5)`` lies in the shape.

    Notes
    -----
    A shape of scale :math:`s` has its farthest point :math:`R = 11 s` px from its
    centre, which sits at :math:`12 + 40\,v` px for a position value
    :math:`v \in [0, 1]` (``pos_y`` counts down from the top), so every shape keeps
    a clear one-pixel border. Orientation :math:`\theta` turns it counter-clockwise
    (as seen) about that centre: the pixel offset :math:`(d_x, d_y)` (``d_y`` up)
    maps to the shape frame :math:`p = (c\,d_x + s\,d_y)/R`,
    :math:`q = (c\,d_y - s\,d_x)/R`, with :math:`c, s` the cosine and sine rounded to
    multiples of :math:`2^{-32}`. The inside-tests are polynomial (square
    :math:`|p|, |q| \le 1/\sqrt2`; ellipse :math:`p^2 + 4 q^2 \le 1`; heart a square
    on its corner with two discs), all in float64, so the bits are the same on every
    machine. Rendered ``_CHUNK`` images at a time (memory ~100 MB at most).

    Examples
    --------
    >>> import numpy as np
    >>> img = render_dsprites(np.array([[0, 5, 0, 0, 31]]))  # largest square, bottom left
    >>> img.shape, int(img.sum()), bool(img[0, 0].any() or img[0, -1].any())
    ((1, 64, 64), 256, False)
    """
    factors = np.asarray(factors)
    if factors.ndim != 2 or factors.shape[1] != len(DSPRITES_FACTOR_SIZES):
        msg = f"`factors` must have shape (B, 5), got {factors.shape}"
        raise ValueError(msg)
    out = np.zeros((factors.shape[0], _SIZE, _SIZE), dtype=bool)
    centres = np.arange(_SIZE, dtype=np.float64) + 0.5
    for start in range(0, factors.shape[0], _CHUNK):
        rows = factors[start : start + _CHUNK]
        shape, scale, orientation, pos_x, pos_y = rows.T
        radius = DSPRITES_SCALES[scale] * _RADIUS
        cx = _MARGIN + DSPRITES_POSITIONS[pos_x] * _TRAVEL
        cy = _MARGIN + DSPRITES_POSITIONS[pos_y] * _TRAVEL
        # Offsets from the centre in units of R: columns (B, 1, W), rows (B, H, 1), y up.
        dx = ((centres[None, :] - cx[:, None]) / radius[:, None])[:, None, :]
        dy = ((cy[:, None] - centres[None, :]) / radius[:, None])[:, :, None]
        c = _COS[orientation][:, None, None]
        s = _SIN[orientation][:, None, None]
        for k in range(len(DSPRITES_SHAPES)):
            pick = np.flatnonzero(shape == k)
            if pick.size:
                p = c[pick] * dx[pick] + s[pick] * dy[pick]
                q = c[pick] * dy[pick] - s[pick] * dx[pick]
                out[start + pick] = _inside(k, p, q)
    return out


def _rows(key: Any, n: int) -> np.ndarray:
    """Indices ``key`` (int, slice, integer or boolean array) as int64 rows of ``0 .. n-1``."""
    if isinstance(key, slice):
        return np.arange(*key.indices(n), dtype=np.int64)
    index = np.asarray(key)
    if index.dtype == np.bool_:
        if index.shape != (n,):
            msg = f"a boolean index must have shape ({n},), got {index.shape}"
            raise IndexError(msg)
        return np.flatnonzero(index)
    if not np.issubdtype(index.dtype, np.integer):
        msg = f"image indices must be integers, a slice or a boolean mask, got {index.dtype}"
        raise IndexError(msg)
    index = index.astype(np.int64)
    if index.size and (index.min() < -n or index.max() >= n):
        msg = f"image index out of range for {n} images"
        raise IndexError(msg)
    return np.where(index < 0, index + n, index)


class DSpritesImages:
    """Lazy ``(N, 64, 64)`` float32 images of rows of the dSprites factor grid.

    Nothing is rendered up front: :meth:`batch` renders the images it is asked
    for and, with ``cache``, keeps them bit-packed (512 bytes an image, 377 MB for
    the full grid, allocated zeroed so the OS commits pages only as they fill), so
    each image is rendered once.

    Parameters
    ----------
    factors : ndarray, shape ``(N, 5)``
        Grid indices of the images (see :func:`render_dsprites`).
    cache : bool
        Keep rendered images (bit-packed); ``False``: render every request.

    Examples
    --------
    >>> import numpy as np
    >>> grid = np.indices(DSPRITES_FACTOR_SIZES).reshape(5, -1).T
    >>> images = DSpritesImages(grid)
    >>> images.shape, images[[0, 737279]].dtype, images.nbytes < 2**30
    ((737280, 64, 64), dtype('float32'), True)
    """

    ndim = 3
    dtype = np.dtype(np.float32)

    def __init__(self, factors: np.ndarray, *, cache: bool = True) -> None:
        factors = np.ascontiguousarray(factors, dtype=np.int64)
        if factors.ndim != 2 or factors.shape[1] != len(DSPRITES_FACTOR_SIZES):
            msg = f"`factors` must have shape (N, 5), got {factors.shape}"
            raise ValueError(msg)
        factors.setflags(write=False)
        self.factors = factors
        n = factors.shape[0]
        self.shape = (n, _SIZE, _SIZE)
        self._packed = np.zeros((n, _PIXELS // 8), dtype=np.uint8) if cache else None
        self._ready = np.zeros(n, dtype=bool) if cache else None

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"DSpritesImages(shape={self.shape}, rendered={self.rendered})"

    @property
    def rendered(self) -> int:
        """How many images the cache holds (0 without a cache)."""
        return 0 if self._ready is None else int(np.count_nonzero(self._ready))

    @property
    def nbytes(self) -> int:
        """Bytes this store holds (labels, packed cache and its flags), not ``N*H*W*4``."""
        held = self.factors.nbytes
        if self._packed is not None and self._ready is not None:
            held += self._packed.nbytes + self._ready.nbytes
        return held

    def batch(self, indices: Any) -> np.ndarray:
        """Render (or read from the cache) some images.

        Parameters
        ----------
        indices : int array, slice or boolean mask
            Which images (negative integers count from the end).

        Returns
        -------
        ndarray, shape ``(B, 64, 64)``, float32
            Zeros and ones.

        Raises
        ------
        IndexError
            An index out of range, a non-integer array, or a mask of the wrong length.
        """
        rows = _rows(indices, len(self))
        if self._packed is None or self._ready is None:
            return render_dsprites(self.factors[rows]).astype(np.float32)
        missing = np.unique(rows[~self._ready[rows]])
        if missing.size:
            bits = render_dsprites(self.factors[missing]).reshape(missing.size, _PIXELS)
            self._packed[missing] = np.packbits(bits, axis=1)
            self._ready[missing] = True
        pixels = np.unpackbits(self._packed[rows], axis=1, count=_PIXELS)
        return pixels.reshape(rows.size, _SIZE, _SIZE).astype(np.float32)

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self.batch(np.array([key]))[0]
        return self.batch(key)
