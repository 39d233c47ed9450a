"""The bridge from stage 1 to stage 2: latents of whole clips, and a trained two-stage model.

Stage 2 of ReactDiff runs diffusion in the normalised latent space of the frozen stage-1
autoencoder (``docs/architecture.md``)::

    c = norm(E(speaker))       speaker latents (N, T, Dz), encoded in aligned chunks
    ŷ = D(denorm(z))           emotion (…, T, 25) and 3DMM (…, T, 58) from generated latents

``encode_latents`` is the one place that turns clips into latents (training caches them,
sampling and evaluation encode the test speakers with it); ``ReactionModel`` holds the
trained pair and ``load_model`` rebuilds it from a stage-2 checkpoint.

With ``stage2.speaker_encoder: trainable`` the speaker condition comes from E', a copy of
E trained by the diffusion loss (``c = norm(E'(speaker))``, same chunks); the listener
latents stay those of the frozen E. In training, E' encodes the chunks around each window
from cached inputs (``speaker_inputs``: the audio replaced by its log-mel/MFCC features)
with ``encode_chunks``; in sampling, ``ReactionModel.encode`` uses it on whole clips.

``stage2_model`` builds the stage-2 generator a config asks for (``stage2.objective``): the
latent diffusion model, or the regression or Trans-VAE competitor on the same denoiser.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from reactdiff_lite.config import TrainConfig, from_dict
from reactdiff_lite.data.cache import shuffle_audio
from reactdiff_lite.metrics import binarize_au
from reactdiff_lite.models import checkpoint as ckpt
from reactdiff_lite.models.autoencoder import LatentEncoder, ReactionAutoencoder
from reactdiff_lite.models.diffusion import LatentDiffusion
from reactdiff_lite.models.regression import LatentRegression
from reactdiff_lite.models.transvae import LatentTransVAE
from reactdiff_lite.utils import resolve_device
from reactdiff_lite.windows import PersonSource, lookahead_frames, person_window, rows_and_frames, take_windows

if TYPE_CHECKING:
    from reactdiff_lite.data.cache import SplitData


def model_modalities(autoencoder: LatentEncoder) -> tuple[str, ...]:
    """The person keys the autoencoder reads (and the 3DMM it reconstructs)."""
    enc = autoencoder.cfg.encoder
    wanted = {
        "emotion": True,
        "tdmm": enc.tdmm or autoencoder.cfg.tdmm_weight > 0,
        "audio": enc.audio,
        "frames": enc.video,
    }
    return tuple(key for key, on in wanted.items() if on)


@torch.no_grad()
def encode_latents(
    autoencoder: LatentEncoder,
    source: PersonSource,
    chunk: int,
    batch_size: int = 64,
    normalize: bool = True,
    device: torch.device | None = None,
) -> Tensor:
    """Latents of whole clips, encoded in aligned chunks of ``chunk`` frames.

    The autoencoder was trained on windows of ``chunk`` frames, so clips are encoded the same
    way: frames ``[c·chunk, (c+1)·chunk)`` together. A latent never depends on frames of a
    later chunk, which keeps online generation causal at the window level; a causal
    autoencoder (``autoencoder.causal``) makes latent t depend on frames ≤ t only.

    Args:
        autoencoder: the frozen stage-1 model, or a trained speaker encoder (put in eval mode here).
        source: a person dict of (N, T, …) tensors, or a ``SplitData`` (then one latent per clip).
        chunk: frames per encoded chunk. batch_size: clips per forward pass.
        normalize: apply the autoencoder's ``LatentNormalizer`` (stage 2's latent space).
        device: where to run (default: the autoencoder's device).
    Returns:
        (N, T, Dz) float32 on CPU (N = clips of a SplitData).
    """
    autoencoder.eval()
    device = device or next(autoencoder.parameters()).device
    N, T = rows_and_frames(source)
    pieces = []
    for start in range(0, T, chunk):
        length = min(chunk, T - start)
        rows = []
        for first in range(0, N, batch_size):
            window = take_windows(source, torch.arange(first, min(first + batch_size, N)), start, length)
            rows.append(autoencoder.encode({k: v.to(device) for k, v in window.items()}))
        pieces.append(torch.cat(rows).float().cpu())  # (N, chunk, Dz)
    z = torch.cat(pieces, dim=1)  # (N, T, Dz)
    if not normalize:
        return z
    return autoencoder.normalizer.normalize(z.to(autoencoder.normalizer.shift.device)).cpu()


def _audio(source: PersonSource, rows: Tensor, start: int, length: int) -> Tensor:
    """Frames ``[start, start + length)`` of the audio of some rows, (b, 640 length) float32."""
    if isinstance(source, Mapping):
        return person_window({"audio": source["audio"][rows]}, start, length)["audio"].float()
    return source.clip_tensor("audio", rows, start, start + length)


@torch.no_grad()
def speaker_inputs(encoder: LatentEncoder, source: PersonSource, chunk: int, batch_size: int = 64) -> dict[str, Tensor]:
    """What a trainable speaker encoder reads, per clip, with the audio replaced by its features.

    ``AudioFeatures`` has no weights, so its output can be cached: log-mel and MFCC are
    computed on each aligned chunk's waveform, exactly as ``encode_latents`` computes them
    from the raw audio of the same chunk (the STFT pads at chunk edges).

    Args:
        encoder: the stage-1 encoder path (its config says which modalities it reads).
        source: a person dict of (N, T, …) tensors, or a ``SplitData`` (one row per clip).
        chunk: frames per encoded chunk. batch_size: rows per audio-feature pass.
    Returns:
        per row (N, T, …) on CPU: ``emotion``, ``tdmm`` and ``frames`` (uint8) when read,
        ``log_mel`` (N, T, n_mels) and ``mfcc`` (N, T, n_mfcc) when audio is on.
    """
    enc = encoder.cfg.encoder
    N, T = rows_and_frames(source)
    keys = ["emotion"] + ["tdmm"] * enc.tdmm + ["frames"] * enc.video
    rows = torch.arange(N)
    out = {k: source[k] if isinstance(source, Mapping) else source.clip_tensor(k, rows) for k in keys}
    if enc.audio:
        device, pieces = encoder.tdmm_mean.device, []
        for start in range(0, T, chunk):
            length, feats = min(chunk, T - start), []
            for first in range(0, N, batch_size):
                part = rows[first : first + batch_size]
                audio = _audio(source, part, start, length)  # (b, 640 L)
                feats.append(torch.cat(encoder.encoders.audio_features(audio.to(device)), dim=-1).cpu())
            pieces.append(torch.cat(feats))  # (N, L, n_mels + n_mfcc)
        both = torch.cat(pieces, dim=1)  # (N, T, n_mels + n_mfcc)
        out["log_mel"], out["mfcc"] = both[..., : enc.n_mels], both[..., enc.n_mels :]
    return out


def encode_chunks(encoder: LatentEncoder, inputs: Mapping[str, Tensor], valid: Tensor, length: Tensor) -> Tensor:
    """Normalised latents of the aligned chunks around some windows, with gradients.

    Args:
        encoder: the trainable speaker encoder.
        inputs: person keys of ``speaker_inputs``, each (B, K, C, …): K chunks of C frames per window.
        valid: (B, K) bool, chunks to encode (inside the clip and needed). length: (B, K)
            frames of each chunk inside the clip (C except for a short last chunk).
    Returns:
        (B, K, C, Dz); zeros for invalid chunks and for frames past a short chunk.
    """
    B, K, C = next(iter(inputs.values())).shape[:3]
    z = torch.zeros(B, K, C, encoder.cfg.latent_dim, device=valid.device)
    for L in sorted(set(length[valid].tolist())):  # one forward pass per chunk length
        sel = valid & (length == L)  # (B, K)
        z[sel, :L] = encoder({k: v[sel][:, :L] for k, v in inputs.items()}).float()  # (n, L, Dz)
    return z


Stage2Model = LatentDiffusion | LatentRegression | LatentTransVAE  # what stage 2 trains, by ``stage2.objective``
STAGE2_MODELS = {"diffusion": LatentDiffusion, "regression": LatentRegression, "transvae": LatentTransVAE}


def stage2_model(cfg: TrainConfig) -> Stage2Model:
    """The untrained stage-2 generator of a (resolved) stage-2 config: ``LatentDiffusion``,
    ``LatentRegression`` or ``LatentTransVAE``, each stored under the checkpoint name ``diffusion``."""
    return STAGE2_MODELS[cfg.stage2.objective](cfg.diffusion)


@dataclass
class ReactionModel:
    """A trained ReactDiff: frozen autoencoder + latent diffusion + the stage-2 config, and
    the trained speaker encoder when ``stage2.speaker_encoder`` is ``trainable``."""

    autoencoder: ReactionAutoencoder
    diffusion: Stage2Model  # the stage-2 generator (``stage2_model``), whatever its objective
    config: TrainConfig  # stage 2, with the autoencoder's config and the sampling defaults
    device: torch.device
    speaker_encoder: LatentEncoder | None = None  # None: the speaker is encoded by the frozen autoencoder

    @property
    def window(self) -> int:
        return self.diffusion.config.denoiser.window

    @property
    def encode_chunk(self) -> int:
        """Frames per encoded speaker chunk: the stage-1 training window."""
        return self.config.stage2.encode_chunk

    def lookahead(self, online: bool) -> int:
        """Speaker frames after a listener frame that it may depend on (``windows.lookahead_frames``):
        0 for the frame-causal online model."""
        den = self.diffusion.config.denoiser
        after = 0 if online else den.context_after
        return lookahead_frames(den.window, after, self.encode_chunk, self.autoencoder.cfg.causal, den.causal)

    def encode(self, person: PersonSource, batch_size: int = 64) -> Tensor:
        """Speaker-condition latents (N, T, Dz) on CPU of a person batch or of every clip of a split.

        The trained speaker encoder's when there is one, else the frozen autoencoder's
        (then they are also the listener latent space).
        """
        encoder = self.autoencoder if self.speaker_encoder is None else self.speaker_encoder
        return encode_latents(encoder, person, self.encode_chunk, batch_size, device=self.device)

    def speaker_latents(self, split: SplitData) -> Tensor:
        """Normalised latents (N, T, Dz) of every item's speaker (each clip encoded once; with
        the audio shuffled across clips when the model was trained so, ``data.shuffle_audio``)."""
        if self.config.data.shuffle_audio:
            split = shuffle_audio(split)
        return self.encode(split)[split.speaker_index]

    @torch.no_grad()
    def decode(self, latent: Tensor, batch_size: int = 256) -> dict[str, Tensor]:
        """Normalised latents (..., T, Dz) -> ``emotion`` (..., T, 25) and ``tdmm`` (..., T, 58) on CPU.

        With ``sample.binarize_au`` the AU occurrence probabilities become 0/1 (p > 0.5),
        like the AU columns of the data.
        """
        lead, (T, Dz) = latent.shape[:-2], latent.shape[-2:]
        flat = latent.reshape(-1, T, Dz)
        ae = self.autoencoder
        outs = [
            ae.decode(ae.normalizer.denormalize(flat[i : i + batch_size].to(self.device)))
            for i in range(0, flat.shape[0], batch_size)
        ]
        emotion = torch.cat([o["emotion"] for o in outs]).float().cpu()  # (B, T, 25)
        tdmm = torch.cat([o["tdmm"] for o in outs]).float().cpu()  # (B, T, 58)
        if self.config.sample.binarize_au:
            emotion = binarize_au(emotion)
        return {"emotion": emotion.reshape(*lead, T, -1), "tdmm": tdmm.reshape(*lead, T, -1)}


def read_training_config(path: str | Path, payload: Mapping) -> TrainConfig:
    """The ``TrainConfig`` a training checkpoint was written with (``config.stage_dict``)."""
    if "stage" not in payload["config"]:
        raise ckpt.CheckpointError(
            f"checkpoint {path} holds no training config: it was not written by "
            "reactdiff_lite.train; pass a best.pt/last.pt of a training run"
        )
    return from_dict(TrainConfig, payload["config"], f"checkpoint {path}:")


def load_model(checkpoint: str | Path, device: str | torch.device = "auto") -> ReactionModel:
    """A stage-2 checkpoint (``best.pt`` or ``last.pt`` of a stage-2 run) -> ``ReactionModel``.

    The checkpoint embeds the frozen autoencoder (and the trained speaker encoder), so
    nothing else is read. Every network is in eval mode on ``device``, the trained ones with
    their EMA weights.
    """
    payload = ckpt.read_checkpoint(checkpoint)
    cfg = read_training_config(checkpoint, payload)
    if cfg.stage != 2:
        raise ckpt.CheckpointError(
            f"checkpoint {checkpoint} is a stage-{cfg.stage} checkpoint; sampling needs the "
            "best.pt of a stage-2 run (python -m reactdiff_lite train --config "
            "configs/stage2_default.yaml)"
        )
    autoencoder, diffusion = ReactionAutoencoder(cfg.autoencoder), stage2_model(cfg)
    parts = {"autoencoder": autoencoder, "diffusion": diffusion}
    speaker = None
    if cfg.stage2.speaker_encoder == "trainable":
        parts["speaker_encoder"] = speaker = LatentEncoder(cfg.autoencoder)
    for name, module in parts.items():
        weights = f"{name}_ema" if f"{name}_ema" in payload["modules"] else name  # last.pt holds both
        ckpt.load_modules(checkpoint, {weights: module}, payload)
    device = resolve_device(device)
    speaker = None if speaker is None else speaker.to(device).eval()
    return ReactionModel(autoencoder.to(device).eval(), diffusion.to(device).eval(), cfg, device, speaker)
