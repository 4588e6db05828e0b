r"""The priors :math:`p(z)` of the reference VAE: Gaussian, uniform box, Gaussian mixture.

* ``gaussian`` (the default): :math:`\mathcal N(m, s^2 I)` (``--prior-mu``,
  ``--prior-scale``). KL in closed form (:func:`vaemath.gaussian_kl`), MMD² from the
  sample-free :func:`vaemath.mmd2_gaussian_prior`.
* ``uniform``: :math:`\mathcal U([l, u]^D)` (``--prior-low``, ``--prior-high``,
  default :math:`[-1, 1]^D`). A Gaussian posterior puts mass outside the box, so
  :math:`\mathrm{KL}(q(z|x)\,\|\,p) = +\infty`, and so is the dimension-wise KL:
  only InfoVAE with :math:`\alpha = 1` (reconstruction + :math:`\lambda\,\mathrm{MMD}^2`,
  Zhao et al.'s MMD-VAE) trains against it, the MMD² from the sample-free
  :func:`vaemath.mmd2_uniform_prior`. MI and TC do not involve the prior and stay finite.
* ``mixture``: :math:`\frac1K \sum_{k<K} \mathcal N(m + a\,\sigma_k e_{\lfloor k/2\rfloor},
  s^2 I)` with :math:`\sigma_k = +1` for even and :math:`-1` for odd :math:`k`: equal
  weights, components at :math:`\pm a` along the first :math:`\lceil K/2\rceil` axes
  (``--prior-components K`` :math:`\le 2D`, ``--prior-offset a``, ``--prior-mu m``,
  ``--prior-scale s``). Its KL has no closed form: the one-sample Monte Carlo term
  :math:`\log q(z|x) - \log p(z)` at the reparameterised :math:`z`, with
  :func:`vaemath.gaussian_mixture_log_density`; the decomposition passes the mixture
  through ``prior_log_weights``, and the MMD² is the two-sample :func:`vaemath.mmd2`
  against as many prior draws (vaemath has no closed form for a mixture).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

import vaemath

__all__ = ["PRIORS", "TRAVERSAL_SDS", "Prior", "prior_problem", "resolve_prior"]

PRIORS = ("gaussian", "uniform", "mixture")
#: Traversals of the Gaussian span its mean +- this many sd; those of the mixture
#: the same quantiles (Phi(-2.5), Phi(2.5)) of its marginals; the uniform its box.
TRAVERSAL_SDS = 2.5


@dataclass(frozen=True)
class Prior:
    """A prior of :data:`PRIORS` and its parameters (those of other kinds are ignored)."""

    kind: str = "gaussian"
    mu: float = 0.0  # gaussian mean m / mixture centre
    scale: float = 1.0  # gaussian sd s / sd of every mixture component
    low: float = -1.0  # uniform box [low, high]^D
    high: float = 1.0
    components: int = 2  # mixture K
    offset: float = 2.0  # mixture: the components sit at m +- offset along the axes

    @classmethod
    def of(cls, config: Any) -> Prior:
        """The prior of a :class:`~vaemath.reference.training.TrainConfig`."""
        return cls(
            config.prior,
            config.prior_mu,
            config.prior_scale,
            config.prior_low,
            config.prior_high,
            config.prior_components,
            config.prior_offset,
        )

    @property
    def logvar(self) -> float:
        """``2 log s``: the log-variance of the Gaussian or of each mixture component."""
        return 2.0 * math.log(self.scale)

    def mixture(self, dim: int, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Component means and log-variances ``(K, D)`` and log weights ``(K,)``."""
        k = self.components
        if not 1 <= k <= 2 * dim:
            msg = f"a mixture prior in D = {dim} has 1 to {2 * dim} components, got {k}"
            raise ValueError(msg)
        dtype, dev = like.dtype, like.device
        index = torch.arange(k, device=dev)
        means = torch.full((k, dim), self.mu, dtype=dtype, device=dev)
        means[index, index // 2] += self.offset * (1 - 2 * (index % 2)).to(dtype)
        logvar = torch.full((k, dim), self.logvar, dtype=dtype, device=dev)
        return means, logvar, torch.zeros((k,), dtype=dtype, device=dev)

    def sd(self, dim: int) -> float:
        """Root-mean-square standard deviation per unit, ``sqrt(trace(Cov) / D)``."""
        if self.kind == "gaussian":
            return self.scale
        if self.kind == "uniform":
            return (self.high - self.low) / math.sqrt(12.0)
        means, _, _ = self.mixture(dim, torch.zeros((), dtype=torch.float64))
        between = float(((means - means.mean(0)) ** 2).sum(1).mean()) / dim
        return math.sqrt(self.scale**2 + between)

    def log_density(self, z: torch.Tensor) -> torch.Tensor:
        """``log p(z)`` per row of ``z`` ``(B, D)`` (Gaussian or mixture)."""
        if self.kind == "mixture":
            return vaemath.gaussian_mixture_log_density(z, *self.mixture(z.shape[1], z))
        if self.kind == "gaussian":
            return vaemath.gaussian_log_density(z, self.mu, self.logvar).sum(1)
        msg = "the uniform prior's log-density is not used: its KL terms are infinite"
        raise ValueError(msg)

    def kl(self, z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """``KL(q(z|x) || p)`` per example ``(B,)``: closed form, Monte Carlo or ``+inf``."""
        if self.kind == "gaussian":
            return vaemath.gaussian_kl(mu, logvar, self.mu, self.logvar).sum(1)
        if self.kind == "uniform":  # +inf, NaN where the posterior is NaN
            return (mu.detach() * 0.0).sum(1) + (logvar.detach() * 0.0).sum(1) + math.inf
        log_qzx = vaemath.gaussian_log_density(z, mu, logvar).sum(1)
        return log_qzx - self.log_density(z)

    def kl_per_unit(self, z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """``KL(q(z_j|x) || p(z_j))`` per example and unit ``(B, D)`` (marginals of p)."""
        if self.kind == "gaussian":
            return vaemath.gaussian_kl(mu, logvar, self.mu, self.logvar)
        if self.kind == "uniform":
            return mu.detach() * 0.0 + logvar.detach() * 0.0 + math.inf
        means, logvars, log_w = self.mixture(z.shape[1], z)
        log_q = vaemath.gaussian_log_density(z, mu, logvar)
        columns = [
            vaemath.gaussian_mixture_log_density(
                z[:, j : j + 1], means[:, j : j + 1], logvars[:, j : j + 1], log_w
            )
            for j in range(z.shape[1])
        ]
        return log_q - torch.stack(columns, 1)

    def decomposition(
        self,
        z: torch.Tensor,
        mu: torch.Tensor,
        logvar: torch.Tensor,
        *,
        dataset_size: int,
        method: str,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Minibatch MI, TC and dimension-wise KL (:func:`vaemath.elbo_decomposition`).

        For the mixture the last term is the dimension-wise KL plus the prior
        dependence, so the three still sum to the Monte Carlo KL; for the uniform
        it is ``+inf`` (MI and TC do not involve the prior).
        """
        if self.kind == "gaussian":
            prior: dict[str, Any] = {"prior_mu": self.mu, "prior_logvar": self.logvar}
        elif self.kind == "mixture":
            means, logvars, log_w = self.mixture(z.shape[1], z)
            prior = {"prior_mu": means, "prior_logvar": logvars, "prior_log_weights": log_w}
        else:
            prior = {}
        parts = vaemath.elbo_decomposition(
            z, mu, logvar, dataset_size=dataset_size, method=method, **prior
        )
        dimkl = parts.dimensionwise_kl
        if self.kind == "mixture":
            dimkl = dimkl + parts.prior_dependence
        elif self.kind == "uniform":
            dimkl = torch.full_like(dimkl, math.inf)
        return parts.mutual_information, parts.total_correlation, dimkl

    def sample_like(self, z: torch.Tensor) -> torch.Tensor:
        """As many prior draws as rows of ``z`` (global torch RNG)."""
        if self.kind == "gaussian":
            return self.mu + self.scale * torch.randn_like(z)
        if self.kind == "uniform":
            return self.low + (self.high - self.low) * torch.rand_like(z)
        means, _, _ = self.mixture(z.shape[1], z)
        pick = torch.randint(self.components, z.shape[:1], device=z.device)
        return means[pick] + self.scale * torch.randn_like(z)

    def mmd2(self, z: torch.Tensor, bandwidth: float) -> torch.Tensor:
        """``MMD²(q(z), p)``: sample-free for the Gaussian and the box, two-sample else."""
        if self.kind == "gaussian":
            return vaemath.mmd2_gaussian_prior(z, self.mu, self.logvar, bandwidth=bandwidth)
        if self.kind == "uniform":
            return vaemath.mmd2_uniform_prior(z, self.low, self.high, bandwidth=bandwidth)
        draws = self.sample_like(z.detach())
        return vaemath.mmd2(z, draws, kernel="rbf", bandwidth=bandwidth)

    def traversal_values(self, dim: int, steps: int) -> np.ndarray:
        """``steps`` values spanning the prior's support (see :data:`TRAVERSAL_SDS`)."""
        if self.kind == "gaussian":
            return self.mu + self.scale * np.linspace(-TRAVERSAL_SDS, TRAVERSAL_SDS, steps)
        if self.kind == "uniform":
            return np.linspace(self.low, self.high, steps)
        tail = 0.5 * math.erfc(TRAVERSAL_SDS / math.sqrt(2.0))
        lo = self._marginal_quantiles(dim, tail).min()
        hi = self._marginal_quantiles(dim, 1.0 - tail).max()
        return np.linspace(lo, hi, steps).round(9)  # no -1e-15 for a centre of 0

    def _marginal_quantiles(self, dim: int, level: float) -> np.ndarray:
        """The ``level`` quantile of each marginal ``p(z_j)`` ``(D,)``, by bisection."""
        means, _, _ = self.mixture(dim, torch.zeros((), dtype=torch.float64))
        lo = means.min(0).values - 10 * self.scale
        hi = means.max(0).values + 10 * self.scale
        for _ in range(100):
            mid = (lo + hi) / 2
            below = torch.special.ndtr((mid - means) / self.scale).mean(0) < level
            lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
        return ((lo + hi) / 2).numpy()

    def describe(self) -> str:
        """A short formula: ``N(0, 1^2)``, ``U[-1, 1]^D``, ``4-component mixture ...``."""
        if self.kind == "gaussian":
            return f"N({self.mu:g}, {self.scale:g}^2)"
        if self.kind == "uniform":
            return f"U[{self.low:g}, {self.high:g}]^D"
        return (
            f"{self.components}-component mixture of N({self.mu:g} +- {self.offset:g} e_j, "
            f"{self.scale:g}^2 I)"
        )

    def traversal_text(self) -> str:
        """What the traversal range is, for the figure's axis label."""
        if self.kind == "gaussian":
            return f"prior mean {self.mu:g} +- {TRAVERSAL_SDS:g} sd"
        if self.kind == "uniform":
            return f"the prior's box [{self.low:g}, {self.high:g}]"
        return "0.6% to 99.4% quantiles of the mixture prior's marginals"


def resolve_prior(prior: Prior | None, prior_mu: float | None, prior_scale: float | None) -> Prior:
    """``prior``, or the Gaussian ``N(prior_mu, prior_scale^2)`` (default ``N(0, 1)``)."""
    if prior is None:
        mu = 0.0 if prior_mu is None else prior_mu
        return Prior("gaussian", mu, 1.0 if prior_scale is None else prior_scale)
    if prior_mu is not None or prior_scale is not None:
        msg = "pass either `prior` or `prior_mu`/`prior_scale`, not both"
        raise ValueError(msg)
    return prior


def prior_problem(prior: Prior, objective: str | None, info_alpha: float, dim: int) -> str | None:
    """What is wrong with ``prior`` (a one-line message naming the flags), or ``None``.

    Checks its parameters in ``D = dim`` and, unless ``objective`` is ``None``,
    that ``objective`` can train against it: the uniform box has an infinite KL
    to every Gaussian posterior, so only InfoVAE with ``alpha = 1`` (KL weight
    ``1 - alpha = 0``) has a finite loss.
    """
    default, kind = Prior(), prior.kind
    box = f"U[{prior.low:g}, {prior.high:g}]^D"
    checks = [
        (kind in PRIORS, f"unknown prior {kind!r} (choose from {', '.join(PRIORS)})"),
        (
            kind == "uniform" or (prior.low, prior.high) == (default.low, default.high),
            "--prior-low/--prior-high apply only to --prior uniform",
        ),
        (
            kind == "mixture"
            or (prior.components, prior.offset) == (default.components, default.offset),
            "--prior-components/--prior-offset apply only to --prior mixture",
        ),
        (
            kind != "mixture" or 1 <= prior.components <= 2 * dim,
            f"--prior-components must be in 1..2D = 1..{2 * dim} (one component at "
            f"+-offset per axis), got {prior.components}",
        ),
        (
            kind != "mixture" or (math.isfinite(prior.offset) and prior.offset > 0),
            f"--prior-offset must be > 0, got {prior.offset}",
        ),
        (
            kind != "uniform" or (prior.mu, prior.scale) == (default.mu, default.scale),
            "--prior-mu/--prior-scale do not apply to --prior uniform (use --prior-low/-high)",
        ),
        (
            kind != "uniform"
            or (math.isfinite(prior.low) and math.isfinite(prior.high) and prior.low < prior.high),
            f"--prior-low must be < --prior-high, both finite, got {prior.low}, {prior.high}",
        ),
    ]
    if objective is not None and kind == "uniform":
        checks += [
            (
                objective == "infovae",
                f"--prior uniform cannot train objective {objective!r}: KL(q(z|x) || {box}) "
                "is infinite for a Gaussian posterior; only infovae with --info-alpha 1 "
                "(reconstruction + lambda MMD^2) trains against it",
            ),
            (
                objective != "infovae" or info_alpha == 1,
                f"--prior uniform with infovae needs --info-alpha 1, got {info_alpha:g}: the "
                f"KL weight 1 - alpha multiplies KL(q(z|x) || {box}) = +inf",
            ),
        ]
    return next((message for ok, message in checks if not ok), None)
