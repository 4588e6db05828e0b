"""MMD kernels and estimators.

Layout (each formula and check in one file, imported by the others):

* ``_kernels.py`` -- the RBF / IMQ formula (reduced distance, in-place torch /
  NumPy variants beside the generic one), distances, :func:`rbf_kernel`,
  :func:`imq_kernel`;
* ``_bandwidth.py`` -- sample and bandwidth checks, the median heuristic;
* ``_blocks.py`` -- the chunked Gram-block sums of the estimators;
* ``_estimators.py`` -- :func:`mmd2`, :func:`mmd2_linear`,
  :func:`mmd2_gaussian_prior` and their ``xp=`` twins;
* ``_uniform.py`` -- :func:`mmd2_uniform_prior` (against a uniform box, erf
  from ``vaemath._lib._special``) and its ``xp=`` twin.
"""

from __future__ import annotations

from ._estimators import mmd2, mmd2_gaussian_prior, mmd2_linear
from ._kernels import imq_kernel, rbf_kernel
from ._uniform import mmd2_uniform_prior

__all__ = [
    "imq_kernel",
    "mmd2",
    "mmd2_gaussian_prior",
    "mmd2_linear",
    "mmd2_uniform_prior",
    "rbf_kernel",
]
