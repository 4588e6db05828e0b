"""Estimators of the ELBO's KL decomposition: minibatch (MWS / MSS) and whole-dataset.

Layout (each piece in one file, imported by the others):

* ``_weights.py`` -- :data:`METHODS` and the MWS / MSS log mixture weights;
* ``_elementwise.py`` -- the engines' floored ``exp``, flushed softmax, log-sum-exp;
* ``_tiles.py`` -- the tiled log-sum-exp engine (forward and backward), the only one;
  :func:`log_marginals` is its entry for other subpackages (the MIG of ``_metrics``);
* ``_groups.py`` -- bound-shifted per-dimension sums by component group (the MIG's);
* ``_compiled.py`` -- its fused ``torch.compile`` kernels (torch CPU, large problems;
  eager fallback); ``_compiled_groups.py`` -- the same for ``_groups.py``'s sums;
* ``_torch.py`` -- its torch ``autograd.Function`` adapter (bounded-memory backward);
* ``_bias.py`` -- the opt-in jackknife bias correction of the minibatch estimators;
* ``_decomposition.py`` -- :class:`ElboDecomposition`, input checks, engine dispatch;
* ``_mixture.py`` -- :func:`gaussian_mixture_log_density` and the mixture-prior densities;
* ``_minibatch.py`` -- the public minibatch estimators: :func:`elbo_decomposition`
  and the per-sample log-densities;
* ``_terms.py`` -- the single terms (MI, TC, dimension-wise KL) on their own;
* ``_dataset.py`` -- :func:`dataset_decomposition`, exact over a whole encoded dataset;
* ``_dask.py`` -- its chunk-aware dask graph (query block x component block tasks).
"""

from __future__ import annotations

from ._dataset import check_num_queries, dataset_decomposition, query_points, sample_queries
from ._decomposition import ElboDecomposition
from ._groups import bound_margin, fused_block_factors, groups_in_tiles, log_sums_by_group
from ._minibatch import (
    elbo_decomposition,
    log_aggregate_posterior,
    log_marginal_aggregate_posterior,
)
from ._mixture import gaussian_mixture_log_density
from ._terms import dimensionwise_kl, mutual_information, total_correlation
from ._tiles import log_marginals
from ._weights import METHODS

__all__ = [
    "METHODS",
    "ElboDecomposition",
    "check_num_queries",
    "dataset_decomposition",
    "dimensionwise_kl",
    "elbo_decomposition",
    "fused_block_factors",
    "gaussian_mixture_log_density",
    "groups_in_tiles",
    "log_aggregate_posterior",
    "log_marginal_aggregate_posterior",
    "bound_margin",
    "log_marginals",
    "log_sums_by_group",
    "mutual_information",
    "query_points",
    "sample_queries",
    "total_correlation",
]
