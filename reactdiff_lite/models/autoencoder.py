"""Stage 1 of ReactDiff: a reaction autoencoder between behaviour and a per-frame latent.

ReactDiff (Li et al., arXiv 2505.14151, Sec. 3.2) first learns a latent space of facial
behaviour, then runs diffusion in it (stage 2, ``reactdiff_lite.models.diffusion``)::

    encoder  E: person (emotion 25, 3DMM 58, audio, frames) --encoders + MMT--> z (B, T, Dz)
    decoder  D: z --per-frame MLP--> emotion (B, T, 25), 3DMM (B, T, 58)

The decoder's outputs respect the ranges of the data: AU occurrence probabilities
``sigmoid``, valence/arousal ``tanh`` in [-1, 1], the 8 expression probabilities a
``softmax``, and 3DMM in the data's units (the network predicts it standardised with
per-dimension statistics kept as buffers). It works frame by frame: the MMT already put
temporal context into each z_t, and a per-frame decoder makes window seams harmless.

Reconstruction loss, one term per kind of target (weights in ``AutoencoderConfig``)::

    L = w_au BCE(AU logits, AU) + w_va MSE(VA) + w_fe CE(FE target, softmax(FE logits))
        + w_3dmm MSE((3DMM - mu) / sigma) [+ w_kl KL(N(m, s^2) || N(0, I))]

**Autoencoder, not VAE, by default.** The official code calls its stage 1 a "VAE" but has
no KL term: it is a deterministic autoencoder, and so is ours by default
(``variational=False``). Diffusion needs a latent that decodes sharply and has a known
scale; sharpness comes from the plain autoencoder, the scale from ``LatentNormalizer``.
``variational=True`` adds a reparameterised posterior and the KL term (averaged per
latent dimension, weighted by ``kl_weight``) for a smoother latent at some reconstruction
cost; ``encode`` still returns the posterior mean, so it stays deterministic.

**Latent normalisation.** Stage 2 works on ``normalize(z)``; its samples are decoded after
``denormalize``. The official min-max code has an operator-precedence bug (a missing pair
of parentheses), so its ``undo(normalize(z)) != z``. Ours is one affine map and its exact
inverse: ``n = (z - shift) / scale``, ``z = n * scale + shift`` (tested to float precision).

Usage::

    model = ReactionAutoencoder(AutoencoderConfig())
    model.fit_tdmm_statistics(train_tdmm)            # before training, (N, T, 58)
    loss, parts = model.loss(person)                 # train
    model.normalizer.fit(model.encode(person))       # after training, on training latents
    save_checkpoint("ae.pt", model, cfg, step=1000)
    model, cfg, extra = load_checkpoint("ae.pt")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reactdiff_lite.config import AutoencoderConfig, to_dict
from reactdiff_lite.models import checkpoint as ckpt
from reactdiff_lite.models.encoders import ModalityEncoders
from reactdiff_lite.models.mmt import MultiModalityTransformer
from reactdiff_lite.schema import AU, EMOTION_DIM, FE, TDMM_DIM, VA

MODULE_NAME = "autoencoder"  # the name the model's state dict is stored under in checkpoints


class LatentNormalizer(nn.Module):
    """Per-dimension affine normalisation of latents, fit on training latents.

    ``normalize(z) = (z - shift) / scale`` and ``denormalize(n) = n * scale + shift``, an
    exact inverse pair. Modes: ``"standard"`` (shift = mean, scale = std: unit variance,
    what diffusion noise expects) and ``"minmax"`` (shift = (max + min) / 2,
    scale = (max - min) / 2: training latents land in [-1, 1]). Written with the
    parentheses the official min-max code lacks. Dimensions with zero spread keep scale 1.
    """

    def __init__(self, dim: int, mode: str = "standard"):
        super().__init__()
        if mode not in ("standard", "minmax"):
            raise ValueError(f"LatentNormalizer mode {mode!r}, expected 'standard' or 'minmax'")
        self.mode = mode
        self.register_buffer("shift", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))
        self.register_buffer("fitted", torch.tensor(False))

    @torch.no_grad()
    def fit(self, z: Tensor) -> LatentNormalizer:
        """Fit the statistics on training latents ``z`` (..., Dz), over all leading axes."""
        flat = z.detach().reshape(-1, z.shape[-1]).double()  # (N, Dz), float64 statistics
        if self.mode == "standard":
            shift, scale = flat.mean(0), flat.std(0, unbiased=False)
        else:
            lo, hi = flat.min(0).values, flat.max(0).values
            shift, scale = (hi + lo) / 2, (hi - lo) / 2
        self.shift.copy_(shift.float())
        self.scale.copy_(torch.where(scale > 1e-6, scale, torch.ones_like(scale)).float())
        self.fitted.fill_(True)
        return self

    def _check(self) -> None:
        if not bool(self.fitted):
            raise RuntimeError("LatentNormalizer is not fit: call .fit(latents) on training latents first")

    def normalize(self, z: Tensor) -> Tensor:
        self._check()
        return (z - self.shift) / self.scale  # (..., Dz)

    def denormalize(self, n: Tensor) -> Tensor:
        self._check()
        return n * self.scale + self.shift  # (..., Dz)


class LatentEncoder(nn.Module):
    """The encoder path of stage 1: person behaviour -> per-frame latent (B, T, Dz).

    Modality encoders + MMT + latent head, with the 3DMM standardisation and the
    ``LatentNormalizer`` as buffers. ``ReactionAutoencoder`` adds the decoder; stage 2's
    trainable speaker encoder (``stage2.speaker_encoder: trainable``) is a ``LatentEncoder``
    copied from the stage-1 autoencoder (``from_autoencoder``), so at initialisation it
    gives exactly the frozen speaker latents.
    """

    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        self.cfg = cfg
        d, dz = cfg.encoder.dim, cfg.latent_dim
        self.encoders = ModalityEncoders(cfg.encoder, cfg.causal)
        self.mmt = MultiModalityTransformer(cfg.mmt, cfg.encoder, cfg.causal)
        self.to_latent = nn.Linear(d, 2 * dz if cfg.variational else dz)  # mean (and log-variance)
        self.register_buffer("tdmm_mean", torch.zeros(TDMM_DIM))
        self.register_buffer("tdmm_std", torch.ones(TDMM_DIM))
        self.normalizer = LatentNormalizer(dz, cfg.latent_norm)

    @classmethod
    def from_autoencoder(cls, autoencoder: LatentEncoder) -> LatentEncoder:
        """A trainable copy of ``autoencoder``'s encoder path (weights, 3DMM and latent statistics)."""
        encoder = cls(autoencoder.cfg).to(autoencoder.tdmm_mean.device)
        own = encoder.state_dict()
        encoder.load_state_dict({k: v for k, v in autoencoder.state_dict().items() if k in own}, strict=True)
        return encoder.requires_grad_(True)

    @torch.no_grad()
    def fit_tdmm_statistics(self, tdmm: Tensor) -> None:
        """Set the 3DMM standardisation from training data ``tdmm`` (..., 58)."""
        flat = tdmm.reshape(-1, TDMM_DIM).double()  # float64 statistics
        std = flat.std(0, unbiased=False)
        self.tdmm_mean.copy_(flat.mean(0).float())
        self.tdmm_std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)).float())

    def _standardise_tdmm(self, tdmm: Tensor) -> Tensor:
        return (tdmm.float() - self.tdmm_mean) / self.tdmm_std  # (B, T, 58)

    def posterior(self, person: dict[str, Tensor]) -> tuple[Tensor, Tensor | None]:
        """Encoder output: the latent mean (B, T, Dz) and log-variance (B, T, Dz), or None
        when not variational."""
        if self.cfg.encoder.tdmm and "tdmm" in person:
            person = {**person, "tdmm": self._standardise_tdmm(person["tdmm"])}
        h = self.mmt(self.encoders(person))  # (B, T, D)
        out = self.to_latent(h)  # (B, T, Dz or 2 Dz)
        if self.cfg.variational:
            mean, logvar = out.chunk(2, dim=-1)
            return mean, logvar
        return out, None

    def encode(self, person: dict[str, Tensor]) -> Tensor:
        """Deterministic latent (B, T, Dz): the posterior mean when variational."""
        return self.posterior(person)[0]

    def forward(self, person: dict[str, Tensor]) -> Tensor:
        """Normalised latent (B, T, Dz): stage 2's latent space."""
        return self.normalizer.normalize(self.encode(person))


class ReactionAutoencoder(LatentEncoder):
    """Stage-1 autoencoder: person behaviour <-> per-frame latent (see the module docstring).

    ``forward(person, generator)`` is ``loss(person, generator)``, so the model can be
    wrapped in ``DistributedDataParallel`` and trained with ``model(person)``.
    """

    def __init__(self, cfg: AutoencoderConfig):
        super().__init__(cfg)
        dz, h = cfg.latent_dim, cfg.decoder_hidden
        self.decoder = nn.Sequential(
            nn.Linear(dz, h), nn.GELU(), nn.Linear(h, h), nn.GELU(), nn.Linear(h, EMOTION_DIM + TDMM_DIM)
        )

    def decode_raw(self, z: Tensor) -> dict[str, Tensor]:
        """Unsquashed decoder heads: ``au`` logits (B, T, 15), ``va`` (B, T, 2) in [-1, 1],
        ``fe`` logits (B, T, 8), ``tdmm`` standardised (B, T, 58)."""
        out = self.decoder(z)  # (B, T, 83)
        emo, tdmm = out[..., :EMOTION_DIM], out[..., EMOTION_DIM:]
        return {"au": emo[..., AU], "va": torch.tanh(emo[..., VA]), "fe": emo[..., FE], "tdmm": tdmm}

    def decode(self, z: Tensor) -> dict[str, Tensor]:
        """Latent (B, T, Dz) -> ``emotion`` (B, T, 25) in REACT column order and ``tdmm``
        (B, T, 58) in data units."""
        raw = self.decode_raw(z)
        emotion = torch.cat([torch.sigmoid(raw["au"]), raw["va"], torch.softmax(raw["fe"], dim=-1)], dim=-1)
        return {"emotion": emotion, "tdmm": raw["tdmm"] * self.tdmm_std + self.tdmm_mean}

    def reconstruct(self, person: dict[str, Tensor]) -> dict[str, Tensor]:
        """``decode(encode(person))``."""
        return self.decode(self.encode(person))

    def loss(
        self, person: dict[str, Tensor], generator: torch.Generator | None = None
    ) -> tuple[Tensor, dict[str, float]]:
        """Reconstruction loss (+ KL when variational) of one batch.

        Args:
            person: behaviour dict (see ``ModalityEncoders.forward``); ``tdmm`` is needed
                when ``tdmm_weight > 0``.
            generator: draws the reparameterisation noise when variational.
        Returns: the scalar loss and its terms as floats (``au_bce, va_mse, fe_ce,
            tdmm_mse``, ``kl`` when variational, and ``total``).
        """
        mean, logvar = self.posterior(person)
        z = mean
        if logvar is not None:  # z = m + exp(logvar / 2) * eps
            eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            z = mean + torch.exp(0.5 * logvar) * eps
        raw = self.decode_raw(z)
        target = person["emotion"].float()  # (B, T, 25)
        terms = {
            "au_bce": F.binary_cross_entropy_with_logits(raw["au"], target[..., AU]),
            "va_mse": F.mse_loss(raw["va"], target[..., VA]),
            "fe_ce": -(target[..., FE] * F.log_softmax(raw["fe"], dim=-1)).sum(-1).mean(),
        }
        weights = {"au_bce": self.cfg.au_weight, "va_mse": self.cfg.va_weight, "fe_ce": self.cfg.fe_weight}
        if self.cfg.tdmm_weight > 0:
            if "tdmm" not in person:
                raise ValueError(f"person dict has no 'tdmm' but tdmm_weight={self.cfg.tdmm_weight} > 0")
            terms["tdmm_mse"] = F.mse_loss(raw["tdmm"], self._standardise_tdmm(person["tdmm"]))
            weights["tdmm_mse"] = self.cfg.tdmm_weight
        if logvar is not None:  # KL(N(m, s^2) || N(0, 1)), per dimension
            terms["kl"] = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()
            weights["kl"] = self.cfg.kl_weight
        total = sum(weights[k] * v for k, v in terms.items())
        parts = {k: float(v.detach()) for k, v in terms.items()} | {"total": float(total.detach())}
        return total, parts

    def forward(
        self, person: dict[str, Tensor], generator: torch.Generator | None = None
    ) -> tuple[Tensor, dict[str, float]]:
        return self.loss(person, generator)


def save_checkpoint(path: str | Path, model: ReactionAutoencoder, cfg: AutoencoderConfig, **extra: Any) -> Path:
    """Save the autoencoder (weights, 3DMM and latent statistics) and its config atomically.

    Args:
        path: the ``.pt`` file.
        model: the autoencoder.
        cfg: its config, stored as a plain dict.
        extra: plain values to keep beside them (step, metrics, ...).
    """
    return ckpt.save_checkpoint(path, {MODULE_NAME: model}, {MODULE_NAME: to_dict(cfg)}, **extra)


def load_checkpoint(
    path: str | Path, cfg: AutoencoderConfig | None = None, map_location: str | torch.device = "cpu"
) -> tuple[ReactionAutoencoder, AutoencoderConfig, dict]:
    """Rebuild an autoencoder from a checkpoint; returns ``(model in eval mode, cfg, extra)``.

    Args:
        path: a file written by ``save_checkpoint`` (or a stage-2 checkpoint that holds
            an ``"autoencoder"`` module and config).
        cfg: build from this config instead of the stored one; a checkpoint that does not
            fit it raises ``CheckpointError`` naming the file.
        map_location: device for the loaded tensors.
    """
    return ckpt.load_model(path, MODULE_NAME, AutoencoderConfig, ReactionAutoencoder, cfg, map_location)
