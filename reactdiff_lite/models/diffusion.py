"""Stage 2 of ReactDiff: latent diffusion over listener reaction windows.

ReactDiff (Li et al., arXiv 2505.14151) generates a listener's latent reaction window by
window, with a DDPM-trained denoiser conditioned on the speaker's latent, sampled with DDIM.
``LatentDiffusion`` joins a noise schedule and the sampling loops (``models.schedulers``,
where the equations are) with the network (``models.denoiser``), and adds the training
objective with condition dropout for classifier-free guidance:

    L = E_{t, ε, keep} ||f(x_t, t, c · keep) − target||²,   x_t = sqrt(ᾱ_t) x_0 + sqrt(1 − ᾱ_t) ε

(or the absolute error with ``loss: l1``, as the official code).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reactdiff_lite.config import DiffusionConfig, Sampler, Spacing, to_dict
from reactdiff_lite.models import checkpoint as ckpt
from reactdiff_lite.models.denoiser import ReactionDenoiser
from reactdiff_lite.models.schedulers import (
    ModelFn,
    Trajectory,
    guided,
    make_schedule,
    make_timesteps,
    prediction_target,
    q_sample,
    randn,
    sample_loop,
    sample_trajectory,
)


class LatentDiffusion(nn.Module):
    """Schedule + denoiser + prediction type + condition dropout: stage 2 of ReactDiff."""

    def __init__(self, config: DiffusionConfig):
        super().__init__()
        if not 0 <= config.cond_drop_prob < 1:
            raise ValueError(f"cond_drop_prob must be in [0, 1), got {config.cond_drop_prob}")
        self.config = config
        self.schedule = make_schedule(config.schedule, config.num_train_steps)
        self.denoiser = ReactionDenoiser(config.denoiser, config.num_train_steps)

    def loss(
        self,
        x0: Tensor,
        speaker: Tensor,
        speaker_mask: Tensor | None = None,
        prev: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """The DDPM objective E_{t, ε, keep} ||f(x_t, t, c·keep) − target||² (or |·| with ``loss: l1``), one draw.

        Args:
            x0: clean listener latent window (B, W, Dz); the rest as ``ReactionDenoiser.forward``.
            generator: draws t ~ U{0 … T−1}, ε ~ N(0, I) and keep ~ Bernoulli(1 − cond_drop_prob).
        """
        B, dev = x0.shape[0], x0.device
        where = generator.device if generator is not None else dev
        t = torch.randint(0, self.schedule.num_steps, (B,), generator=generator, device=where).to(dev)  # (B,)
        noise = randn(tuple(x0.shape), generator, dev, x0.dtype)  # (B, W, Dz)
        keep = (torch.rand(B, generator=generator, device=where) >= self.config.cond_drop_prob).to(dev)  # (B,)
        x_t = q_sample(self.schedule, x0, t, noise)
        output = self.denoiser(x_t, t, speaker, speaker_mask, prev, keep)
        target = prediction_target(self.schedule, x0, t, noise, self.config.prediction)
        return (F.l1_loss if self.config.loss == "l1" else F.mse_loss)(output, target)

    def model_fn(
        self, speaker: Tensor, speaker_mask: Tensor | None = None, prev: Tensor | None = None, guidance: float = 1.0
    ) -> ModelFn:
        """The denoiser as f(x_t, t) for the samplers, conditioned and guided."""

        def cond(x: Tensor, t: Tensor, keep: Tensor) -> Tensor:
            reps = x.shape[0] // speaker.shape[0]  # 2 under guidance: the batch is [x, x]
            speaker_, mask_, prev_ = (
                None if z is None else torch.cat([z] * reps) for z in (speaker, speaker_mask, prev)
            )
            return self.denoiser(x, t, speaker_, mask_, prev_, keep)

        return guided(cond, guidance)

    def _run(
        self,
        speaker: Tensor,
        speaker_mask: Tensor | None,
        prev: Tensor | None,
        steps: int,
        eta: float,
        guidance: float,
        spacing: Spacing,
        sampler: Sampler,
        generator: torch.Generator | None,
        x_T: Tensor | None,
    ) -> tuple[ModelFn, Tensor, Tensor, dict]:
        c = self.config.denoiser
        shape = (speaker.shape[0], c.window, c.latent_dim)
        x_T = randn(shape, generator, speaker.device, speaker.dtype) if x_T is None else x_T  # (B, W, Dz)
        timesteps = make_timesteps(self.schedule.num_steps, steps, spacing)
        options = dict(
            sampler=sampler, eta=eta, prediction=self.config.prediction, clip=self.config.clip_x0, generator=generator
        )
        return self.model_fn(speaker, speaker_mask, prev, guidance), x_T, timesteps, options

    @torch.no_grad()
    def sample(
        self,
        speaker: Tensor,
        speaker_mask: Tensor | None = None,
        prev: Tensor | None = None,
        *,
        steps: int = 50,
        eta: float = 0.0,
        guidance: float = 1.0,
        spacing: Spacing = "trailing",
        sampler: Sampler = "ddim",
        generator: torch.Generator | None = None,
        x_T: Tensor | None = None,
        trajectory: bool = False,
    ) -> Tensor | Trajectory:
        """Generate listener latent windows (B, W, Dz) for speaker latents (B, S, Dz).

        Args:
            steps: sampling steps (T with sampler="ddpm" is the original ancestral sampler).
            eta: DDIM noise (0 deterministic). guidance: s in ε_u + s (ε_c − ε_u); 1 = conditional.
            spacing: timestep spacing; "trailing" starts at t = T − 1, the level x_T ~ N(0, I)
                actually matches (Lin et al. 2023), so it is our default.
            generator: draws x_T (unless given) and the per-step noise.
            trajectory: return the whole :class:`Trajectory` (every x_t and x̂0), not only x_0.
        """
        model_fn, x_T, timesteps, options = self._run(
            speaker, speaker_mask, prev, steps, eta, guidance, spacing, sampler, generator, x_T
        )
        loop = sample_trajectory if trajectory else sample_loop
        return loop(model_fn, self.schedule, x_T, timesteps, **options)

    def sample_trajectory(
        self, speaker: Tensor, speaker_mask: Tensor | None = None, prev: Tensor | None = None, **options: Any
    ) -> Trajectory:
        """As :meth:`sample` (same keyword options), keeping every intermediate x_t and x̂0 (for pictures)."""
        return self.sample(speaker, speaker_mask, prev, trajectory=True, **options)


# ----------------------------------------------------------------------------- checkpoints

MODULE_NAME = "diffusion"  # the name the model's state dict and config are stored under


def save_checkpoint(path: str | Path, model: LatentDiffusion, **extra: Any) -> Path:
    """Save the diffusion model's weights and config atomically (``models.checkpoint`` format).

    The schedule is rebuilt from the config, so the weights and config are the whole model.
    A stage-2 file can hold this beside the autoencoder: ``checkpoint.save_checkpoint(path,
    {"autoencoder": ae, "diffusion": model}, {"autoencoder": ..., "diffusion": to_dict(model.config)})``.

    Args:
        path: the ``.pt`` file. model: the model. extra: plain values to keep (step, metrics, ...).
    """
    return ckpt.save_checkpoint(path, {MODULE_NAME: model}, {MODULE_NAME: to_dict(model.config)}, **extra)


def load_checkpoint(
    path: str | Path, config: DiffusionConfig | None = None, map_location: str | torch.device = "cpu"
) -> tuple[LatentDiffusion, DiffusionConfig, dict]:
    """Rebuild a ``LatentDiffusion`` from a checkpoint; returns ``(model in eval mode, config, extra)``.

    Args:
        path: a file holding a ``"diffusion"`` module and config (``save_checkpoint``, or stage 2).
        config: build from this config instead of the stored one; weights that do not fit it
            raise ``CheckpointError`` naming the file.
        map_location: device for the loaded tensors.
    """
    return ckpt.load_model(path, MODULE_NAME, DiffusionConfig, LatentDiffusion, config, map_location)
