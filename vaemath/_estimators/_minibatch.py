"""Minibatch estimators of the ELBO's KL decomposition (Chen et al. 2018).

Public names: :func:`elbo_decomposition` and the per-sample
:func:`log_aggregate_posterior` and :func:`log_marginal_aggregate_posterior`;
the single terms (:func:`mutual_information`, ...) are in :mod:`._terms`.
See ``docs/estimators.rst`` for the derivations.
"""

from __future__ import annotations

from .._gaussian import log_density
from .._lib._helpers import Array, numpy_quiet
from ._decomposition import ElboDecomposition, decompose, log_q, prepare, prior_log_densities

__all__ = [
    "elbo_decomposition",
    "log_aggregate_posterior",
    "log_marginal_aggregate_posterior",
]


@numpy_quiet
def log_aggregate_posterior(
    z: Array,
    mu: Array,
    logvar: Array,
    *,
    dataset_size: int | None = None,
    method: str = "mws",
    return_marginals: bool = False,
    bias_correction: str | None = None,
) -> Array | tuple[Array, Array]:
    r"""Per-sample estimates of :math:`\log q(z_i)`, ``q`` the aggregate posterior.

    Parameters
    ----------
    z : array
        ``(B, D)`` samples, ``z[i] ~ N(mu[i], exp(logvar[i]))``.
    mu, logvar : array
        ``(B, D)`` encoder means and log-variances.
    dataset_size : int, optional
        ``None`` for the batch mixture, or the size ``N >= B`` of the dataset.
    method : {"mws", "mss"}
        Minibatch weighted / stratified sampling weights.
    return_marginals : bool
        Also return the ``(B, D)`` estimates of
        :func:`log_marginal_aggregate_posterior`, from the same pass over the
        tiles (one call instead of two).
    bias_correction : {None, "jackknife"}
        ``None`` (default): the plain estimate. ``"jackknife"``: every
        log-density estimate minus the jackknife estimate of its
        :math:`O(1/B)` bias (Notes of :func:`elbo_decomposition`); needs
        ``dataset_size`` and ``B >= 3``, and costs ``D + 1`` extra
        ``(B, B)`` passes.

    Returns
    -------
    array or tuple of arrays
        ``(B,)`` estimates, dtype and device of the inputs; with
        ``return_marginals``, the pair ``(log q(z_i), log q(z_id))``.

    Raises
    ------
    ValueError
        Shapes that are not a common ``(B, D)``, an unknown method, or
        ``dataset_size`` below ``B`` (or ``B < 2`` with a ``dataset_size``);
        an unknown ``bias_correction``, or one without ``dataset_size`` or
        with ``B < 3``.

    Notes
    -----
    .. math::

        \log \hat q(z_i) = \log \sum_{j=1}^B w_{ij}
        \prod_d \mathcal N(z_{id}; \mu_{jd}, e^{v_{jd}}),

    computed as a max-shifted log-sum-exp in ``(b, B)`` tiles (never a
    ``(B, B, D)`` array). Weights: :math:`w_{ij} = 1/B` for
    ``dataset_size=None``; otherwise :math:`w_{ii} = 1/N` and the others
    described in :func:`elbo_decomposition`.

    References
    ----------
    R. T. Q. Chen, X. Li, R. Grosse, D. Duvenaud, "Isolating Sources of
    Disentanglement in Variational Autoencoders", NeurIPS 2018, appendix C.

    Examples
    --------
    >>> import numpy as np
    >>> from vaemath import log_aggregate_posterior
    >>> mu = np.array([[0.0], [2.0]])
    >>> logvar = np.zeros((2, 1))
    >>> log_aggregate_posterior(mu, mu, logvar).round(4)
    array([-1.4852, -1.4852])
    """
    xp, (z, mu, logvar, *_), weights, jackknife = prepare(
        z, mu, logvar, prior_mu=None, prior_logvar=None, dataset_size=dataset_size,
        method=method, bias_correction=bias_correction,
    )  # fmt: skip
    lq, lqd = log_q(z, mu, logvar, weights, xp=xp, jackknife=jackknife, marginals=return_marginals)
    return (lq, lqd) if return_marginals else lq


@numpy_quiet
def log_marginal_aggregate_posterior(
    z: Array,
    mu: Array,
    logvar: Array,
    *,
    dataset_size: int | None = None,
    method: str = "mws",
    bias_correction: str | None = None,
) -> Array:
    r"""Per-sample, per-dimension estimates of :math:`\log q(z_{id})`.

    Parameters
    ----------
    z : array
        ``(B, D)`` samples, ``z[i] ~ N(mu[i], exp(logvar[i]))``.
    mu, logvar : array
        ``(B, D)`` encoder means and log-variances.
    dataset_size : int, optional
        ``None`` for the batch mixture, or the size ``N >= B`` of the dataset.
    method : {"mws", "mss"}
        Minibatch weighted / stratified sampling weights.
    bias_correction : {None, "jackknife"}
        ``None`` (default): the plain estimate. ``"jackknife"``: every
        log-density estimate minus the jackknife estimate of its
        :math:`O(1/B)` bias (Notes of :func:`elbo_decomposition`); needs
        ``dataset_size`` and ``B >= 3``, and costs ``D + 1`` extra
        ``(B, B)`` passes.

    Returns
    -------
    array
        ``(B, D)`` estimates, dtype and device of the inputs.

    Raises
    ------
    ValueError
        As :func:`log_aggregate_posterior`.

    Notes
    -----
    .. math::

        \log \hat q(z_{id}) = \log \sum_{j=1}^B w_{ij}\,
        \mathcal N(z_{id}; \mu_{jd}, e^{v_{jd}}),

    with the weights of :func:`log_aggregate_posterior`, computed one latent
    dimension (or a few) and a block of rows at a time.

    References
    ----------
    Chen et al. 2018, appendix C (see :func:`log_aggregate_posterior`).

    Examples
    --------
    >>> import numpy as np
    >>> from vaemath import log_marginal_aggregate_posterior
    >>> mu = np.array([[0.0, 0.0], [2.0, 0.0]])
    >>> log_marginal_aggregate_posterior(mu, mu, np.zeros((2, 2))).round(4)
    array([[-1.4852, -0.9189],
           [-1.4852, -0.9189]])
    """
    xp, (z, mu, logvar, *_), weights, jackknife = prepare(
        z, mu, logvar, prior_mu=None, prior_logvar=None, dataset_size=dataset_size,
        method=method, bias_correction=bias_correction,
    )  # fmt: skip
    return log_q(z, mu, logvar, weights, xp=xp, jackknife=jackknife, joint=False)[1]


@numpy_quiet
def elbo_decomposition(
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
) -> ElboDecomposition:
    r"""Minibatch estimate of MI, total correlation and dimension-wise KL at once.

    Parameters
    ----------
    z : array
        ``(B, D)`` samples, ``z[i] ~ q(z | x_i) = N(mu[i], exp(logvar[i]))``.
    mu, logvar : array
        ``(B, D)`` encoder means and log-variances.
    prior_mu, prior_logvar : array or float
        Diagonal Gaussian prior, broadcastable to ``(B, D)`` (default N(0, I)).
    dataset_size : int, optional
        ``None`` (default): ``q(z)`` is the mixture over the batch. ``N``: the
        target is the aggregate posterior of a dataset of ``N >= B`` points.
    method : {"mws", "mss"}
        Minibatch weighted or stratified sampling. Identical when
        ``dataset_size`` is ``None``.
    bias_correction : {None, "jackknife"}
        ``None`` (default): the plain estimate. ``"jackknife"``: every
        log-density estimate minus the jackknife estimate of its
        :math:`O(1/B)` bias (Notes of :func:`elbo_decomposition`); needs
        ``dataset_size`` and ``B >= 3``, and costs ``D + 1`` extra
        ``(B, B)`` passes.

    Returns
    -------
    ElboDecomposition
        0-d ``mutual_information``, ``total_correlation`` and
        ``dimensionwise_kl`` (differentiable on torch; the shared log-density
        work is done once), and their sum ``kl``.

    Raises
    ------
    ValueError
        Shapes that are not a common ``(B, D)`` (or a prior that does not
        broadcast to it), an unknown method, ``dataset_size < B``, or ``B < 2``
        with a ``dataset_size``; an unknown ``bias_correction``, or one without
        ``dataset_size`` or with ``B < 3``.
    TypeError
        Mixed array libraries, non-numeric arrays, a non-integer ``dataset_size``.

    Notes
    -----
    With :math:`\ell_i = \log \hat q(z_i)`, :math:`\ell_{id} = \log \hat q(z_{id})`:

    .. math::

        \hat I = \frac1B \sum_i [\log q(z_i|x_i) - \ell_i], \quad
        \widehat{TC} = \frac1B \sum_i [\ell_i - \textstyle\sum_d \ell_{id}], \quad
        \widehat{DWKL} = \frac1B \sum_i \textstyle\sum_d [\ell_{id} - \log p(z_{id})],

    so :math:`\hat I + \widehat{TC} + \widehat{DWKL}` is exactly
    :math:`\frac1B \sum_i [\log q(z_i|x_i) - \log p(z_i)]`. The estimates are
    :math:`\hat q(z_i) = \sum_j w_{ij} q(z_i|x_j)` with weights summing to one:

    * ``dataset_size=None``: :math:`w_{ij} = 1/B`.
    * MWS: :math:`w_{ii} = 1/N`, :math:`w_{ij} = \frac{N-1}{N(B-1)}` for
      :math:`j \ne i`.
    * MSS: :math:`w_{ii} = 1/N`, :math:`w_{i,i+1} = \frac{N-B+1}{N(B-1)}`
      (cyclically), :math:`w_{ij} = \frac1{B-1}` otherwise.

    Both are unbiased estimates of :math:`q(z_i) = \frac1N\sum_n q(z_i|x_n)` when
    the other samples are drawn uniformly from the other points. The paper's
    MWS normaliser :math:`\log(BN)` gives values lower by between
    :math:`\log B` and :math:`\log\frac{B(N-1)}{B-1}` per log-density, which
    raises the reported TC by :math:`\sum_d \delta_d - \delta`, each shift
    :math:`\delta` in that range: about :math:`(D-1)\log N` where other points
    dominate every density (broad posteriors), :math:`D \log N - \log B` where
    only the joint is dominated by the own component, and :math:`(D-1)\log B`
    only where every marginal is too (``docs/estimators.rst``).

    With ``dataset_size`` the :math:`\hat q` are unbiased but their logarithms
    are not: :math:`E[\ell_i] < \log q(z_i)` by about
    :math:`\mathrm{Var}(\hat q(z_i)) / (2 q(z_i)^2) = O(1/B)` (Jensen), so
    :math:`\hat I` is biased up and :math:`\widehat{TC}` down at small ``B``.
    ``bias_correction="jackknife"`` replaces every :math:`\ell_i` (and
    :math:`\ell_{id}`) by

    .. math::

        \ell_i^J = \ell_i - f\,\frac{n-1}{n} \sum_{k \ne i}
        \bigl(\ell_i^{(-k)} - \ell_i\bigr), \qquad
        \ell_i^{(-k)} = \log\Bigl(w_{ii} q(z_i|x_i) + \frac{c}{c - w_{ik}}
        \sum_{j \ne i,k} w_{ij} q(z_i|x_j)\Bigr),

    with :math:`n = B - 1` other components, their mass
    :math:`c = (N-1)/N` and :math:`f = (N-B)/(N-1)` (sampling without
    replacement; a batch of the whole dataset is exact and left alone). It
    removes the :math:`O(1/B)` term: on the linear-Gaussian encoder of
    ``docs/estimators.rst`` it cuts the bias at ``B = 64`` several-fold for
    a small rise in spread (measured table there). The batch mixture
    (``dataset_size=None``) is biased mainly through its own component, and
    the jackknife would enlarge that bias, so it is refused there.
    Memory is :math:`O(B^2 + BD)`, forward and backward (torch: a custom
    autograd function recomputes tiles instead of storing ``(B, B, D)``).

    References
    ----------
    R. T. Q. Chen, X. Li, R. Grosse, D. Duvenaud, "Isolating Sources of
    Disentanglement in Variational Autoencoders", NeurIPS 2018, appendix C.
    S. Nowozin, "Debiasing Evidence Approximations: On Importance-weighted
    Autoencoders and Jackknife Variational Inference", ICLR 2018 (the jackknife
    for the log of a mean).

    Examples
    --------
    >>> import numpy as np
    >>> from vaemath import elbo_decomposition
    >>> rng = np.random.default_rng(0)
    >>> mu = rng.normal(size=(64, 3))
    >>> logvar = np.full((64, 3), -2.0)
    >>> z = mu + np.exp(0.5 * logvar) * rng.normal(size=(64, 3))
    >>> terms = elbo_decomposition(z, mu, logvar, dataset_size=1000, method="mss")
    >>> total = np.mean(np.sum(
    ...     -0.5 * (logvar + (z - mu) ** 2 / np.exp(logvar)) + 0.5 * z**2, axis=1))
    >>> bool(np.isclose(terms.kl, total))
    True

    The jackknife moves nats between the terms (it raises every log-density
    estimate), so the total is unchanged:

    >>> fixed = elbo_decomposition(
    ...     z, mu, logvar, dataset_size=1000, method="mss", bias_correction="jackknife")
    >>> bool(fixed.mutual_information < terms.mutual_information)
    True
    >>> bool(np.isclose(fixed.kl, terms.kl))
    True
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
    lq, lqd = log_q(z, mu, logvar, weights, xp=xp, jackknife=jackknife)
    log_qzx = xp.sum(log_density(z, mu, logvar, xp=xp), axis=-1)
    log_pz, sum_log_pzd = prior_log_densities(z, prior_mu, prior_logvar, prior_log_weights, xp=xp)
    mixture = prior_log_weights is not None
    return decompose(log_qzx, log_pz, lq, lqd, xp=xp, sum_log_pzd=sum_log_pzd if mixture else None)
