"""The single terms of the minibatch KL decomposition: MI, TC and dimension-wise KL.

Each is the corresponding field of :func:`._minibatch.elbo_decomposition`,
computed with only the log-sum-exps that term needs (Chen et al. 2018; see
``docs/estimators.rst``).
"""

from __future__ import annotations

from .._gaussian import log_density
from .._lib._helpers import Array, numpy_quiet
from ._decomposition import log_q, prepare, prior_log_densities

__all__ = ["dimensionwise_kl", "mutual_information", "total_correlation"]


@numpy_quiet
def mutual_information(
    z: Array,
    mu: Array,
    logvar: Array,
    *,
    dataset_size: int | None = None,
    method: str = "mws",
    prior_log_weights: Array | None = None,
    bias_correction: str | None = None,
) -> Array:
    r"""Minibatch estimate of the index-code mutual information :math:`I(x; z)`.

    Parameters
    ----------
    z : array
        ``(B, D)`` samples, ``z[i] ~ N(mu[i], exp(logvar[i]))``.
    mu, logvar : array
        ``(B, D)`` encoder means and log-variances.
    dataset_size : int, optional
        ``None`` for the batch mixture, or the dataset size ``N >= B``.
    method : {"mws", "mss"}
        Minibatch weighted / stratified sampling.
    bias_correction : {None, "jackknife"}
        ``None`` (default): the plain estimate. ``"jackknife"``: every
        log-density estimate minus the jackknife estimate of its
        :math:`O(1/B)` bias (Notes of :func:`elbo_decomposition`); needs
        ``dataset_size`` and ``B >= 3``, and costs ``D + 1`` extra
        ``(B, B)`` passes.

    Returns
    -------
    array
        0-d estimate, dtype and device of the inputs.

    Raises
    ------
    ValueError
        As :func:`elbo_decomposition`.

    Notes
    -----
    .. math::

        \hat I = \frac1B \sum_i \bigl[\log q(z_i|x_i) - \log \hat q(z_i)\bigr]

    with :math:`\hat q` of :func:`elbo_decomposition`. With
    ``dataset_size=None`` it lies in :math:`[0, \log B]`.

    References
    ----------
    Chen et al. 2018 (see :func:`elbo_decomposition`).

    Examples
    --------
    >>> import numpy as np
    >>> from vaemath import mutual_information
    >>> mu = np.array([[-50.0], [50.0]])
    >>> round(float(mutual_information(mu, mu, np.zeros((2, 1)))), 6)  # log 2
    0.693147
    """
    xp, (z, mu, logvar, *_), weights, jackknife = prepare(
        z, mu, logvar, prior_mu=None, prior_logvar=None, dataset_size=dataset_size,
        method=method, bias_correction=bias_correction,
    )  # fmt: skip
    lq, _ = log_q(z, mu, logvar, weights, xp=xp, jackknife=jackknife, marginals=False)
    log_qzx = xp.sum(log_density(z, mu, logvar, xp=xp), axis=-1)
    return xp.mean(log_qzx - lq)


@numpy_quiet
def total_correlation(
    z: Array,
    mu: Array,
    logvar: Array,
    *,
    dataset_size: int | None = None,
    method: str = "mws",
    prior_log_weights: Array | None = None,
    bias_correction: str | None = None,
) -> Array:
    r"""Minibatch estimate of the total correlation of the aggregate posterior.

    Parameters
    ----------
    z : array
        ``(B, D)`` samples, ``z[i] ~ N(mu[i], exp(logvar[i]))``.
    mu, logvar : array
        ``(B, D)`` encoder means and log-variances.
    dataset_size : int, optional
        ``None`` for the batch mixture, or the dataset size ``N >= B``.
    method : {"mws", "mss"}
        Minibatch weighted / stratified sampling.
    bias_correction : {None, "jackknife"}
        ``None`` (default): the plain estimate. ``"jackknife"``: every
        log-density estimate minus the jackknife estimate of its
        :math:`O(1/B)` bias (Notes of :func:`elbo_decomposition`); needs
        ``dataset_size`` and ``B >= 3``, and costs ``D + 1`` extra
        ``(B, B)`` passes.

    Returns
    -------
    array
        0-d estimate, dtype and device of the inputs.

    Raises
    ------
    ValueError
        As :func:`elbo_decomposition`.

    Notes
    -----
    .. math::

        \widehat{TC} = \frac1B \sum_i \Bigl[\log \hat q(z_i)
        - \sum_d \log \hat q(z_{id})\Bigr]

    References
    ----------
    Chen et al. 2018 (see :func:`elbo_decomposition`).

    Examples
    --------
    >>> import numpy as np
    >>> from vaemath import total_correlation
    >>> mu = np.array([[0.0, 0.0], [3.0, 3.0], [0.0, 3.0], [3.0, 0.0]])
    >>> abs(round(float(total_correlation(mu, mu, np.full((4, 2), -4.0))), 4))
    0.0
    """
    xp, (z, mu, logvar, *_), weights, jackknife = prepare(
        z, mu, logvar, prior_mu=None, prior_logvar=None, dataset_size=dataset_size,
        method=method, bias_correction=bias_correction,
    )  # fmt: skip
    lq, lqd = log_q(z, mu, logvar, weights, xp=xp, jackknife=jackknife)
    return xp.mean(lq - xp.sum(lqd, axis=-1))


@numpy_quiet
def dimensionwise_kl(
    z: Array,
    mu: Array,
    logvar: Array,
    prior_mu: Array | float = 0.0,
    prior_logvar: Array | float = 0.0,
    *,
    dataset_size: int | None = None,
    method: str = "mws",
    prior_log_weights: Array | None = None,
    bias_correction: str | None = None,
) -> Array:
    r"""Minibatch estimate of the dimension-wise KL :math:`\sum_d KL(q(z_d) \| p(z_d))`.

    Parameters
    ----------
    z : array
        ``(B, D)`` samples, ``z[i] ~ N(mu[i], exp(logvar[i]))``.
    mu, logvar : array
        ``(B, D)`` encoder means and log-variances.
    prior_mu, prior_logvar : array or float
        Diagonal Gaussian prior, broadcastable to ``(B, D)`` (default N(0, I)).
    dataset_size : int, optional
        ``None`` for the batch mixture, or the dataset size ``N >= B``.
    method : {"mws", "mss"}
        Minibatch weighted / stratified sampling.
    bias_correction : {None, "jackknife"}
        ``None`` (default): the plain estimate. ``"jackknife"``: every
        log-density estimate minus the jackknife estimate of its
        :math:`O(1/B)` bias (Notes of :func:`elbo_decomposition`); needs
        ``dataset_size`` and ``B >= 3``, and costs ``D + 1`` extra
        ``(B, B)`` passes.

    Returns
    -------
    array
        0-d estimate, dtype and device of the inputs.

    Raises
    ------
    ValueError
        As :func:`elbo_decomposition`.

    Notes
    -----
    .. math::

        \widehat{DWKL} = \frac1B \sum_i \sum_d
        \bigl[\log \hat q(z_{id}) - \log \mathcal N(z_{id}; \mu^p_d, e^{v^p_d})\bigr]

    References
    ----------
    Chen et al. 2018 (see :func:`elbo_decomposition`).

    Examples
    --------
    >>> import numpy as np
    >>> from vaemath import dimensionwise_kl
    >>> mu = np.zeros((3, 2))
    >>> round(float(dimensionwise_kl(mu, mu, np.zeros((3, 2)))), 6)
    0.0
    """
    xp, (z, mu, logvar, prior_mu, prior_logvar, prior_log_weights), weights, jackknife = prepare(
        z,
        mu,
        logvar,
        prior_mu=prior_mu,
        prior_logvar=prior_logvar,
        dataset_size=dataset_size,
        method=method,
        prior_log_weights=prior_log_weights,
        bias_correction=bias_correction,
    )
    _, lqd = log_q(z, mu, logvar, weights, xp=xp, jackknife=jackknife, joint=False)
    if prior_log_weights is not None:
        _, sum_log_pzd = prior_log_densities(z, prior_mu, prior_logvar, prior_log_weights, xp=xp)
        return xp.mean(xp.sum(lqd, axis=-1) - sum_log_pzd)
    log_pz = xp.broadcast_to(log_density(z, prior_mu, prior_logvar, xp=xp), tuple(z.shape))
    return xp.mean(xp.sum(lqd - log_pz, axis=-1))
