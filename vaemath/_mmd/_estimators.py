r"""The MMD² estimators: quadratic-time U/V-statistics, linear-time, and against a Gaussian prior.

Each public function resolves the namespace once and calls its ``xp=`` twin
(:func:`quadratic_mmd2`, :func:`linear_mmd2`, :func:`gaussian_prior_mmd2`).
The kernel formula lives in :mod:`._kernels`, the argument checks and the
median heuristic in :mod:`._bandwidth`, the chunked Gram-block sums in
:mod:`._blocks` (see ``docs/mmd.rst``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .._lib._compat import device
from .._lib._helpers import Array, Namespace, broadcast_shapes, check_choice, numpy_quiet, resolve
from ._bandwidth import (
    Bandwidth,
    check_count,
    check_samples,
    fixed_scales,
    parse_scales,
    resolve_scales,
)
from ._blocks import block_sum
from ._kernels import KERNELS, diagonal_sum, gram, pooled_centre, squared_distances

__all__ = [
    "gaussian_prior_mmd2",
    "linear_mmd2",
    "mmd2",
    "mmd2_gaussian_prior",
    "mmd2_linear",
    "quadratic_mmd2",
]


def _minimum_count(unbiased: bool) -> tuple[int, str]:
    return (2, "for the unbiased estimator") if unbiased else (1, "")


def _clamp_biased(value: Array, *, xp: Namespace) -> Array:
    """A V-statistic is an exact MMD² (>= 0): clamp what rounding took below 0."""
    return xp.maximum(value, xp.zeros((), dtype=value.dtype, device=device(value)))


# -- the quadratic-time estimator ---------------------------------------------------------


@numpy_quiet
def mmd2(
    x: Array,
    y: Array,
    *,
    kernel: str | Callable[[Array, Array], Array] = "rbf",
    bandwidth: Bandwidth = 1.0,
    unbiased: bool = True,
) -> Array:
    r"""Squared maximum mean discrepancy between two samples.

    The quadratic-time U-statistic (unbiased) or V-statistic (biased) of
    Gretton et al. (2012), for the RBF or IMQ kernel (single or multi-scale)
    or any kernel given as a callable. No ``(n, m, D)`` array is formed.

    Parameters
    ----------
    x : array of shape ``(n, D)``
        Sample from :math:`P` (e.g. posterior samples ``z``).
    y : array of shape ``(m, D)``
        Sample from :math:`Q` (e.g. prior samples).
    kernel : {"rbf", "imq"} or callable, optional
        ``"rbf"``: :math:`\exp(-\lVert x-y\rVert^2 / (2h^2))`; ``"imq"``:
        :math:`C / (C + \lVert x-y\rVert^2)`; or a callable ``(a, b) -> Gram``
        of shape ``(len(a), len(b))`` (then ``bandwidth`` is ignored).
    bandwidth : float, sequence of float or "median", optional
        :math:`h` for ``"rbf"``, :math:`C` for ``"imq"`` (default 1.0). A
        sequence is the sum of the kernels. A 0-d or 1-d array of the inputs'
        library is a (learnable) bandwidth: it gets its gradient. ``"median"``:
        the median heuristic, see Notes.
    unbiased : bool, optional
        True (default): the U-statistic, unbiased, can be negative. False: the
        V-statistic (biased, :math:`\ge 0`).

    Returns
    -------
    array of shape ``()``
        The estimate, in the floating dtype of the inputs.

    Raises
    ------
    ValueError
        Samples not 2-D, different feature dimensions, a non-positive
        bandwidth, an unknown kernel name, fewer than 2 samples in ``x`` or
        ``y`` for the unbiased estimator (1 for the biased one), or
        ``bandwidth="median"`` when the median is 0 (see Notes).

    See Also
    --------
    mmd2_linear : Linear-time estimator for very large samples.
    mmd2_gaussian_prior : Against a diagonal Gaussian, without prior samples.

    Notes
    -----
    With :math:`k_{xx}, k_{yy}, k_{xy}` the kernel sums over the blocks
    (Gretton et al. 2012, eqs. 3 and 5):

    .. math::

        \widehat{\mathrm{MMD}}^2_u = \frac{1}{n(n-1)}\sum_{i \ne j} k(x_i, x_j)
        + \frac{1}{m(m-1)}\sum_{i \ne j} k(y_i, y_j)
        - \frac{2}{nm}\sum_{i, j} k(x_i, y_j),

    and the V-statistic :math:`\widehat{\mathrm{MMD}}^2_b` keeps the diagonal
    and divides by :math:`n^2, m^2` (it is the exact MMD² between the two
    empirical distributions, hence :math:`\ge 0`; rounding below 0 is clamped).

    Median heuristic: with :math:`M` the median of
    :math:`\lVert z_i - z_j\rVert^2` over the distinct pairs :math:`i < j` of
    the pooled sample :math:`z = (x, y)` (the mean of the two middle values for
    an even number of pairs), ``"rbf"`` uses :math:`h = \sqrt{M}` (the median
    distance, Gretton et al. 2012) and ``"imq"`` uses :math:`C = M`. It costs
    :math:`O((n + m)^2)` memory and a sort, and is treated as a constant: no
    gradient flows through it (detached in torch, ``stop_gradient`` in JAX).
    :math:`M = 0` (at least half of the pairs coincide, e.g. all points equal)
    would be a zero bandwidth: on eager arrays it raises ``ValueError``; under
    ``torch.compile`` or ``jax.jit``, where the value cannot be inspected, the
    estimate is NaN. NaN in the inputs gives NaN, not an error.

    Memory is :math:`O((n + m) D)` plus a cache-sized chunk of each Gram block
    (without autograd); no :math:`(n, m, D)` array is formed.

    References
    ----------
    A. Gretton, K. Borgwardt, M. Rasch, B. Schölkopf, A. Smola, "A kernel
    two-sample test", JMLR 13 (2012).

    Examples
    --------
    >>> import numpy as np
    >>> from vaemath import mmd2
    >>> x = np.array([[0.0], [1.0]])
    >>> y = np.array([[0.0], [2.0]])
    >>> round(float(mmd2(x, y, unbiased=False)), 6)
    0.196735

    The U-statistic of a sample against itself is negative (it excludes the
    diagonal of k(x, x) but not of k(x, y)): 2 exp(-1/2) - (2 + 2 exp(-1/2)) / 2.

    >>> round(float(mmd2(x, x)), 6)
    -0.393469
    """
    xp, (x, y) = resolve({"x": x, "y": y})
    return quadratic_mmd2(x, y, kernel=kernel, bandwidth=bandwidth, unbiased=unbiased, xp=xp)


def _callable_sums(
    kernel: Callable[[Array, Array], Array], x: Array, y: Array, *, xp: Namespace
) -> tuple[Array, Array, Array, Array, Array]:
    """Full and diagonal sums of a user kernel's Gram blocks."""
    blocks = {}
    for name, a, b in (("k(x, x)", x, x), ("k(y, y)", y, y), ("k(x, y)", x, y)):
        g = kernel(a, b)
        if tuple(g.shape) != (a.shape[0], b.shape[0]):
            msg = f"`kernel` must return an (n, m) Gram matrix: {name} has shape {tuple(g.shape)}"
            raise ValueError(msg)
        blocks[name] = g
    kxx, kyy = blocks["k(x, x)"], blocks["k(y, y)"]
    trace_x = xp.sum(kxx * xp.eye(x.shape[0], dtype=kxx.dtype, device=device(kxx)))
    trace_y = xp.sum(kyy * xp.eye(y.shape[0], dtype=kyy.dtype, device=device(kyy)))
    return xp.sum(kxx), trace_x, xp.sum(kyy), trace_y, xp.sum(blocks["k(x, y)"])


def quadratic_mmd2(
    x: Array,
    y: Array,
    *,
    kernel: str | Callable[[Array, Array], Array],
    bandwidth: Bandwidth,
    unbiased: bool,
    xp: Namespace,
) -> Array:
    """:func:`mmd2` on arrays of one floating dtype of namespace ``xp``."""
    check_samples({"x": x, "y": y})
    n, m = x.shape[0], y.shape[0]
    minimum, why = _minimum_count(unbiased)
    check_count("x", n, minimum, why)
    check_count("y", m, minimum, why)
    if callable(kernel):
        sxx, tx, syy, ty, sxy = _callable_sums(kernel, x, y, xp=xp)
    else:
        kind = check_choice("kernel", kernel, KERNELS)
        scales = parse_scales(bandwidth)
        xc, yc = pooled_centre(x, y, xp=xp)
        values = resolve_scales(
            scales,
            kind,
            lambda: xp.concat([xc, yc], axis=0),
            distances=squared_distances,
            xp=xp,
        )
        sxx = block_sum(xc, xc, kind=kind, scales=values, symmetric=True, xp=xp)
        syy = block_sum(yc, yc, kind=kind, scales=values, symmetric=True, xp=xp)
        sxy = block_sum(xc, yc, kind=kind, scales=values, symmetric=False, xp=xp)
        tx, ty = diagonal_sum(n, values), diagonal_sum(m, values)
    cross = sxy * (2.0 / (n * m))
    if unbiased:
        return (sxx - tx) / (n * (n - 1)) + (syy - ty) / (m * (m - 1)) - cross
    return _clamp_biased(sxx / (n * n) + syy / (m * m) - cross, xp=xp)


# -- the linear-time estimator ------------------------------------------------------------


@numpy_quiet
def mmd2_linear(
    x: Array,
    y: Array,
    *,
    kernel: str = "rbf",
    bandwidth: float | Sequence[float] = 1.0,
) -> Array:
    r"""Linear-time unbiased estimate of MMD² (Gretton et al. 2012, Lemma 14).

    Averages the kernel statistic over disjoint pairs of samples: one pass,
    :math:`O(nD)` time and memory, for batches too large for :func:`mmd2`.

    Parameters
    ----------
    x, y : array of shape ``(n, D)``
        Samples of equal size :math:`n \ge 2`.
    kernel : {"rbf", "imq"}, optional
        As in :func:`mmd2`.
    bandwidth : float or sequence of float, optional
        As in :func:`mmd2` (no median heuristic: that would be quadratic).

    Returns
    -------
    array of shape ``()``
        The estimate (unbiased, can be negative).

    Raises
    ------
    ValueError
        Samples not 2-D or of different shapes, fewer than 2 samples, a
        non-positive bandwidth, an unknown kernel name.

    See Also
    --------
    mmd2 : The quadratic-time estimators (lower variance).

    Notes
    -----
    With :math:`p = \lfloor n/2 \rfloor` disjoint pairs
    :math:`(x_{2i-1}, x_{2i}), (y_{2i-1}, y_{2i})`:

    .. math::

        \widehat{\mathrm{MMD}}^2_l = \frac1p \sum_{i=1}^{p}
        k(x_{2i-1}, x_{2i}) + k(y_{2i-1}, y_{2i})
        - k(x_{2i-1}, y_{2i}) - k(x_{2i}, y_{2i-1}).

    :math:`O(nD)` time and memory, at the price of a much larger variance
    than :func:`mmd2`. Shuffle the samples first if their order is not random.

    Examples
    --------
    >>> import numpy as np
    >>> from vaemath import mmd2_linear
    >>> x = np.array([[0.0], [1.0], [2.0], [3.0]])
    >>> round(float(mmd2_linear(x, x)), 6)
    0.0
    >>> round(float(mmd2_linear(x, x + 1.0)), 6)  # 2 exp(-1/2) - exp(-2) - 1
    0.077726
    """
    xp, (x, y) = resolve({"x": x, "y": y})
    return linear_mmd2(x, y, kernel=kernel, bandwidth=bandwidth, xp=xp)


def linear_mmd2(
    x: Array,
    y: Array,
    *,
    kernel: str,
    bandwidth: float | Sequence[float],
    xp: Namespace,
) -> Array:
    """:func:`mmd2_linear` on arrays of one floating dtype of namespace ``xp``."""
    check_samples({"x": x, "y": y})
    kind = check_choice("kernel", kernel, KERNELS)
    if x.shape[0] != y.shape[0]:
        msg = f"`x` and `y` must have the same number of samples, got {x.shape[0]} and {y.shape[0]}"
        raise ValueError(msg)
    check_count("x", x.shape[0], 2, "for the linear estimator")
    scales = fixed_scales(bandwidth, "bandwidth")
    p = x.shape[0] // 2
    x1, x2 = x[0 : 2 * p : 2, :], x[1 : 2 * p : 2, :]
    y1, y2 = y[0 : 2 * p : 2, :], y[1 : 2 * p : 2, :]

    def k(a: Array, b: Array) -> Array:
        diff = a - b
        return gram(xp.sum(diff * diff, axis=1), kind, scales, xp=xp)

    return xp.mean(k(x1, x2) + k(y1, y2) - k(x1, y2) - k(x2, y1))


# -- against a diagonal Gaussian prior ----------------------------------------------------


@numpy_quiet
def mmd2_gaussian_prior(
    x: Array,
    prior_mu: Array | float = 0.0,
    prior_logvar: Array | float = 0.0,
    *,
    bandwidth: Bandwidth = 1.0,
    unbiased: bool = True,
) -> Array:
    r"""MMD² between a sample and a diagonal Gaussian, with no prior samples (RBF kernel).

    The InfoVAE / WAE regulariser against the prior :math:`\mathcal N(m,
    \mathrm{diag}(s^2))`: the expectations over the prior are computed in
    closed form, only the sample-sample term is estimated.

    Parameters
    ----------
    x : array of shape ``(n, D)``
        Sample, e.g. encoder samples ``z`` of a minibatch.
    prior_mu, prior_logvar : array of shape ``(D,)`` or float, optional
        Mean :math:`m` and log-variance of the prior
        :math:`p = \mathcal N(m, \mathrm{diag}(s^2))`, :math:`s^2 =`
        ``exp(prior_logvar)`` (default: standard normal). Broadcast to ``(D,)``.
    bandwidth : float, sequence of float or "median", optional
        RBF bandwidth :math:`h` (default 1.0); a sequence sums the kernels;
        ``"median"`` applies the median heuristic of :func:`mmd2` to ``x``
        alone (a constant, no gradient).
    unbiased : bool, optional
        True (default): the :math:`x`-:math:`x` term is the U-statistic over
        :math:`i \ne j` (the whole estimate is unbiased, can be negative).
        False: the V-statistic (then the value is the exact MMD² between the
        empirical distribution of ``x`` and :math:`p`, :math:`\ge 0`).

    Returns
    -------
    array of shape ``()``
        The estimate, in the floating dtype of the inputs.

    Raises
    ------
    ValueError
        ``x`` not 2-D, prior shapes that do not broadcast to ``(D,)``, a
        non-positive bandwidth, fewer than 2 samples for ``unbiased=True``,
        or ``bandwidth="median"`` with a zero median (as in :func:`mmd2`).

    See Also
    --------
    mmd2 : The two-sample estimators, e.g. against prior samples.

    Notes
    -----
    :math:`\mathrm{MMD}^2 = \mathbb E\,k(x, x') - 2\,\mathbb E\,k(x, y) +
    \mathbb E\,k(y, y')` with :math:`y, y' \sim p`. For the Gaussian kernel the
    expectations over :math:`p` factorise over dimensions into 1-D Gaussian
    integrals:

    .. math::

        \mathbb E_{y \sim p}\, k(x, y) = \prod_{d=1}^{D}
        \frac{h}{\sqrt{h^2 + s_d^2}}
        \exp\Bigl(-\frac{(x_d - m_d)^2}{2 (h^2 + s_d^2)}\Bigr),
        \qquad
        \mathbb E_{y, y' \sim p}\, k(y, y') = \prod_{d=1}^{D}
        \frac{h}{\sqrt{h^2 + 2 s_d^2}},

    so only the :math:`x`-:math:`x` term is estimated:

    .. math::

        \widehat{\mathrm{MMD}}^2 = \frac{1}{n(n-1)} \sum_{i \ne j} k(x_i, x_j)
        - \frac{2}{n} \sum_i \mathbb E_{y}\, k(x_i, y)
        + \mathbb E_{y, y'}\, k(y, y').

    The products are evaluated as exponentials of sums of logs, with
    :math:`\log(h / \sqrt{h^2 + s^2}) = -\tfrac12 \operatorname{log1p}(s^2 / h^2)`.
    Dropping the sampling noise of the prior terms lowers the variance
    compared with :func:`mmd2` against prior samples.

    Examples
    --------
    >>> import numpy as np
    >>> from vaemath import mmd2_gaussian_prior
    >>> z = np.array([[0.0, 0.0]])
    >>> round(float(mmd2_gaussian_prior(z, unbiased=False)), 6)  # 1 - 2/2 + 1/3
    0.333333
    """
    xp, (x, prior_mu, prior_logvar) = resolve(
        {"x": x, "prior_mu": prior_mu, "prior_logvar": prior_logvar}
    )
    return gaussian_prior_mmd2(
        x, prior_mu, prior_logvar, bandwidth=bandwidth, unbiased=unbiased, xp=xp
    )


def gaussian_prior_mmd2(
    x: Array,
    prior_mu: Array,
    prior_logvar: Array,
    *,
    bandwidth: Bandwidth,
    unbiased: bool,
    xp: Namespace,
) -> Array:
    """:func:`mmd2_gaussian_prior` on arrays of one floating dtype of namespace ``xp``."""
    dim = check_samples({"x": x})
    shape = broadcast_shapes(
        {
            "x[0]": (dim,),
            "prior_mu": tuple(prior_mu.shape),
            "prior_logvar": tuple(prior_logvar.shape),
        }
    )
    if shape != (dim,):
        msg = (
            f"`prior_mu` {tuple(prior_mu.shape)} and `prior_logvar` {tuple(prior_logvar.shape)} "
            f"must broadcast to the latent shape ({dim},)"
        )
        raise ValueError(msg)
    n = x.shape[0]
    minimum, why = _minimum_count(unbiased)
    check_count("x", n, minimum, why)
    scales = parse_scales(bandwidth)
    mu = xp.broadcast_to(prior_mu, (dim,))
    var = xp.broadcast_to(xp.exp(prior_logvar), (dim,))
    # Centre everything on the prior mean: x - m enters the cross term anyway,
    # and the Gram trick for k(x, x) cancels less.
    xc = x - mu
    values = resolve_scales(scales, "rbf", lambda: xc, distances=squared_distances, xp=xp)
    sxx = block_sum(xc, xc, kind="rbf", scales=values, symmetric=True, xp=xp)
    xx_term = (sxx - diagonal_sum(n, values)) / (n * (n - 1)) if unbiased else sxx / (n * n)
    cross_term = xp.zeros((), dtype=x.dtype, device=device(x))
    prior_term = xp.zeros((), dtype=x.dtype, device=device(x))
    for h in values:
        h2 = h * h
        # log E_y k(x_i, y) = sum_d [-log1p(s_d^2 / h^2) / 2 - (x_id - m_d)^2 / (2 (h^2 + s_d^2))]
        log_norm = -0.5 * xp.sum(xp.log1p(var / h2))
        mahalanobis = xp.sum((xc * xc) / (h2 + var), axis=1)
        cross_term = cross_term + xp.mean(xp.exp(log_norm - 0.5 * mahalanobis))
        prior_term = prior_term + xp.exp(-0.5 * xp.sum(xp.log1p((2.0 * var) / h2)))
    value = xx_term - 2.0 * cross_term + prior_term
    return value if unbiased else _clamp_biased(value, xp=xp)
