"""The Trans-VAE competitor: a conditional VAE over listener latent windows.

Trans-VAE (the REACT 2023 challenge baseline) encodes the speaker with a transformer and
generates listener reactions from a variational latent; its diversity comes from sampling
that latent. ``LatentTransVAE`` is a small version in this project's pipeline, on the same
windows, latent space, training loop and sampler interface as ReactDiff's stage 2:

- posterior q(z | x_0): a one-block transformer over the listener window x_0 (B, W, Dz),
  mean-pooled to μ, log σ² of one window latent z ∈ R^{d_z};
- decoder: ReactDiff's ``ReactionDenoiser`` used as the speaker transformer (the same
  cross-attention to the speaker context and the previous window), reading the input
  Linear(z) at every frame at the fixed step t = T − 1, and outputting the window;
- prior p(z) = N(0, I); the loss is the negative ELBO with a weighted KL,

      L = ||D(z, c) − x_0||² + β KL(q(z | x_0) || N(0, I)),   z = μ + σ ε.

Sampling draws z ~ N(0, I) per reaction, so K reactions of a speaker differ. The sampler
options of diffusion (steps, η, guidance) do not apply.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reactdiff_lite.config import DiffusionConfig
from reactdiff_lite.models.denoiser import ReactionDenoiser
from reactdiff_lite.models.layers import Attention, FeedForward, sinusoidal_positions
from reactdiff_lite.models.schedulers import randn


class PosteriorEncoder(nn.Module):
    """q(z | x_0): Linear + positions, one pre-norm self-attention block, mean pool -> (μ, log σ²)."""

    def __init__(self, latent_dim: int, dim: int, heads: int, z_dim: int, window: int):
        super().__init__()
        self.proj = nn.Linear(latent_dim, dim)
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(2))
        self.attn, self.ff = Attention(dim, heads), FeedForward(dim, 2.0)
        self.head = nn.Linear(dim, 2 * z_dim)
        self.register_buffer("positions", sinusoidal_positions(window, dim), persistent=False)  # (W, D)

    def forward(self, x0: Tensor) -> tuple[Tensor, Tensor]:
        """x0 (B, W, Dz) -> μ (B, d_z), log σ² (B, d_z)."""
        h = self.proj(x0) + self.positions  # (B, W, D)
        a = self.norms[0](h)
        h = h + self.attn(a, a, a)[0]
        h = h + self.ff(self.norms[1](h))
        mu, logvar = self.head(h.mean(1)).chunk(2, dim=-1)
        return mu, logvar


class LatentTransVAE(nn.Module):
    """Conditional VAE over listener latent windows (``stage2.objective: transvae``).

    Same interface as ``LatentDiffusion`` where the training loop and the sampler meet it:
    ``config``, ``denoiser``, ``loss(x0, speaker, mask, prev, generator=)`` and
    ``sample(speaker, mask, prev, generator=, **options)``.
    """

    def __init__(self, config: DiffusionConfig):
        super().__init__()
        c, v = config.denoiser, config.transvae
        self.config = config
        self.denoiser = ReactionDenoiser(c, config.num_train_steps)  # the speaker-conditioned decoder
        self.posterior = PosteriorEncoder(c.latent_dim, c.dim, c.heads, v.z_dim, c.window)
        self.z_proj = nn.Linear(v.z_dim, c.latent_dim)

    def decode(self, z: Tensor, speaker: Tensor, speaker_mask: Tensor | None, prev: Tensor | None) -> Tensor:
        """The window (B, W, Dz) for window latents z (B, d_z) and the condition."""
        W, B = self.config.denoiser.window, z.shape[0]
        x = self.z_proj(z)[:, None].expand(-1, W, -1)  # (B, W, Dz): z at every frame
        t = torch.full((B,), self.config.num_train_steps - 1, dtype=torch.long, device=z.device)
        return self.denoiser(x, t, speaker, speaker_mask, prev)

    def loss(
        self,
        x0: Tensor,
        speaker: Tensor,
        speaker_mask: Tensor | None = None,
        prev: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Negative ELBO: reconstruction MSE + β KL(q(z | x0) || N(0, I)) (KL summed over z, mean over the batch).

        Args:
            x0: listener window (B, W, Dz); the rest as ``ReactionDenoiser.forward``.
            generator: draws the reparameterisation noise ε.
        """
        mu, logvar = self.posterior(x0)  # (B, d_z) each
        z = mu + (0.5 * logvar).exp() * randn(tuple(mu.shape), generator, mu.device, mu.dtype)
        rec = F.mse_loss(self.decode(z, speaker, speaker_mask, prev), x0)
        kl = -0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(-1).mean()
        return rec + self.config.transvae.kl_weight * kl

    @torch.no_grad()
    def sample(
        self,
        speaker: Tensor,
        speaker_mask: Tensor | None = None,
        prev: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        **options: Any,
    ) -> Tensor:
        """Windows (B, W, Dz) decoded from z ~ N(0, I) drawn with ``generator``; diffusion's
        sampler ``options`` are accepted and ignored."""
        z = randn((speaker.shape[0], self.config.transvae.z_dim), generator, speaker.device, speaker.dtype)
        return self.decode(z, speaker, speaker_mask, prev)
