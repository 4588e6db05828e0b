"""A small fully connected VAE with a Bernoulli decoder (PyTorch)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["VAE"]


class VAE(nn.Module):
    """MLP encoder ``x -> (mu, logvar)`` and decoder ``z -> logits`` of a diagonal-Gaussian VAE.

    Parameters
    ----------
    image_shape : (int, int)
        Height and width of the (single-channel) images.
    latent_dim : int
        Number of latent units ``D``.
    hidden : int
        Width of the two hidden layers of the encoder and of the decoder.
    """

    def __init__(self, image_shape: tuple[int, int], latent_dim: int, hidden: int) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.latent_dim = latent_dim
        pixels = image_shape[0] * image_shape[1]
        self.encoder = nn.Sequential(
            nn.Flatten(),
            nn.Linear(pixels, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 2 * latent_dim),
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, hidden),
            nn.Tanh(),
            nn.Linear(hidden, hidden),
            nn.Tanh(),
            nn.Linear(hidden, pixels),
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and log-variance, each ``(B, D)``."""
        h = self.encoder(x)
        mu, logvar = h[:, : self.latent_dim], h[:, self.latent_dim :]
        # Keep the variance in a range where exp() is safe in float32.
        return mu, logvar.clamp(-12.0, 6.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits, ``(B, H, W)``."""
        return self.decoder(z).reshape(z.shape[0], *self.image_shape)

    @staticmethod
    def sample(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """Reparameterised draw ``z = mu + exp(logvar / 2) * eps`` (global torch RNG)."""
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
