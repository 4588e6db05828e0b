"""vaemath: the closed-form math and estimators of variational autoencoders.

Gaussian KL divergences (standard and arbitrary priors, log-variance form),
minibatch mutual-information / total-correlation estimators, MMD kernels and
disentanglement metrics (Mutual Information Gap, active units),
written once against the Python Array API standard so that the same call works
on NumPy, PyTorch, JAX and any other conforming library.
"""

from __future__ import annotations

from ._discrete import bernoulli_kl, categorical_kl
from ._estimators import (
    ElboDecomposition,
    dataset_decomposition,
    dimensionwise_kl,
    elbo_decomposition,
    gaussian_mixture_log_density,
    log_aggregate_posterior,
    log_marginal_aggregate_posterior,
    mutual_information,
    total_correlation,
)
from ._gaussian import gaussian_kl, gaussian_log_density, mvn_kl
from ._metrics import MutualInformationGap, active_units, mutual_information_gap
from ._mmd import (
    imq_kernel,
    mmd2,
    mmd2_gaussian_prior,
    mmd2_linear,
    mmd2_uniform_prior,
    rbf_kernel,
)

__all__ = [
    "ElboDecomposition",
    "MutualInformationGap",
    "active_units",
    "bernoulli_kl",
    "categorical_kl",
    "dataset_decomposition",
    "dimensionwise_kl",
    "elbo_decomposition",
    "gaussian_kl",
    "gaussian_log_density",
    "gaussian_mixture_log_density",
    "imq_kernel",
    "log_aggregate_posterior",
    "log_marginal_aggregate_posterior",
    "mmd2",
    "mmd2_gaussian_prior",
    "mmd2_linear",
    "mmd2_uniform_prior",
    "mutual_information",
    "mutual_information_gap",
    "mvn_kl",
    "rbf_kernel",
    "total_correlation",
]

__version__ = "0.1.0"
