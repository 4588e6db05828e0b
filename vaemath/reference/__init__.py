"""Reference VAEs trained with vaemath: VAE, beta-VAE, beta-TCVAE and InfoVAE.

An optional extra (needs PyTorch, matplotlib and scikit-learn; ``pip install
vaemath[demo]``); the core :mod:`vaemath` never imports it. Run the demo with
``python -m vaemath.reference`` or see ``python -m vaemath.reference --help``.
Every KL / MI / TC / MMD term comes from vaemath's public functions.
"""

from __future__ import annotations

from .cli import main

__all__ = ["main"]
