"""The regression competitor: ReactDiff's stage-2 denoiser trained to output the listener window.

Diffusion is motivated by the one-to-many nature of facial reactions: many reactions are
appropriate to one speaker. A network trained with a squared error to *predict* the
listener's latent window learns the conditional mean E[z | c], the average of every
appropriate reaction, which is smooth and has no diversity. ``LatentRegression`` is that
control, with everything else kept: the same ``ReactionDenoiser`` (so the same speaker
context, previous-window memory, width and depth), the same windows, the same latent
space and the same training loop. It reads the input the diffusion model reads at the
first sampling step with the noise replaced by its mean, x_T = 0 at t = T − 1, and is
trained with

    L = E ||f(0, T − 1, c) − z_0||²

One output per condition: its K reactions of a speaker are K copies (FRDiv = 0), and the
sampler options (steps, η, guidance, noise) do not apply. No condition dropout: there is no
guidance to train for.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reactdiff_lite.config import DiffusionConfig
from reactdiff_lite.models.denoiser import ReactionDenoiser


class LatentRegression(nn.Module):
    """The stage-2 denoiser as a direct predictor of the listener window (``stage2.objective: regression``).

    Same interface as ``LatentDiffusion`` where the training loop and the sampler meet it:
    ``config``, ``denoiser``, ``loss(x0, speaker, mask, prev, generator=)`` and
    ``sample(speaker, mask, prev, **options)``.
    """

    def __init__(self, config: DiffusionConfig):
        super().__init__()
        self.config = config
        self.denoiser = ReactionDenoiser(config.denoiser, config.num_train_steps)

    def predict(self, speaker: Tensor, speaker_mask: Tensor | None = None, prev: Tensor | None = None) -> Tensor:
        """The predicted listener window (B, W, Dz) for speaker context (B, S, Dz), mask (B, S), prev (B, P, Dz)."""
        c = self.config.denoiser
        B = speaker.shape[0]
        x = torch.zeros(B, c.window, c.latent_dim, device=speaker.device, dtype=speaker.dtype)  # the mean of x_T
        t = torch.full((B,), self.config.num_train_steps - 1, dtype=torch.long, device=speaker.device)
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
        """Mean squared error of the prediction against the listener window x0 (B, W, Dz); nothing is random."""
        return F.mse_loss(self.predict(speaker, speaker_mask, prev), x0)

    @torch.no_grad()
    def sample(
        self, speaker: Tensor, speaker_mask: Tensor | None = None, prev: Tensor | None = None, **options: Any
    ) -> Tensor:
        """The prediction (B, W, Dz); the sampler ``options`` of ``LatentDiffusion.sample`` are accepted and ignored."""
        return self.predict(speaker, speaker_mask, prev)
