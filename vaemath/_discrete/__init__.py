"""KL divergences of discrete distributions given by logits: Bernoulli and categorical.

Layout (each formula in one file, imported by the others):

* ``_eft.py`` -- error-free transformations (TwoSum, Dekker's product, a
  double-word quotient);
* ``_series.py`` -- :math:`\\varphi(z) = e^z - 1 - z` with an ``hi + lo``
  argument, the polynomials ``H_1`` and ``G``, and the per-dtype constants;
* ``_bernoulli.py`` -- :func:`bernoulli_kl` and its ``xp=`` twin :func:`kl_bernoulli`;
* ``_categorical.py`` -- :func:`categorical_kl` and its ``xp=`` twin :func:`kl_categorical`.
"""

from __future__ import annotations

from ._bernoulli import bernoulli_kl, kl_bernoulli
from ._categorical import categorical_kl, kl_categorical

__all__ = ["bernoulli_kl", "categorical_kl", "kl_bernoulli", "kl_categorical"]
