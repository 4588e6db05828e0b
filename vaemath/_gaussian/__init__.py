"""Gaussian closed forms: diagonal KL and log-density, full-covariance KL.

Layout (each formula in one file, imported by the others):

* ``_expm1mx.py`` -- :math:`h(d) = (e^d - 1 - d)/2`: switch, coefficients, polynomial;
* ``_diag.py`` -- :func:`gaussian_kl`, :func:`gaussian_log_density` and their
  ``xp=`` twins, TwoSum, :math:`\\log 2\\pi` as hi + lo;
* ``_mvn.py`` -- :func:`mvn_kl` and the triangular solves;
* ``_eager.py`` -- native torch / NumPy kernels of the standard-prior KL.

Besides the public functions, the ``xp=`` twins :func:`kl_diag`,
:func:`kl_standard`, :func:`log_density` and :func:`neg_half_log_normaliser`
are exported for the other subpackages (never the public functions, which
would resolve namespaces a second time).
"""

from __future__ import annotations

from ._diag import (
    gaussian_kl,
    gaussian_log_density,
    kl_diag,
    kl_standard,
    log_density,
    neg_half_log_normaliser,
)
from ._mvn import mvn_kl

__all__ = [
    "gaussian_kl",
    "gaussian_log_density",
    "kl_diag",
    "kl_standard",
    "log_density",
    "mvn_kl",
    "neg_half_log_normaliser",
]
