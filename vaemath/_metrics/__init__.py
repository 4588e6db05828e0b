"""Disentanglement metrics: the Mutual Information Gap (two estimators) and active units.

Layout:

* ``_factors.py`` -- label checks, per-factor codes, plug-in entropy and MI (host NumPy);
* ``_mixture.py`` -- the estimators of I(z_j; v_k): Chen et al.'s mixture on the
  ``_estimators`` tile engine, and disentanglement_lib's histogram;
* ``_mig.py`` -- the public :func:`mutual_information_gap` and :func:`active_units`.
"""

from __future__ import annotations

from ._mig import ESTIMATORS, MutualInformationGap, active_units, mutual_information_gap

__all__ = ["ESTIMATORS", "MutualInformationGap", "active_units", "mutual_information_gap"]
