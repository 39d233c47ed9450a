"""Tiny model settings shared by the training, sampling and CLI tests (seconds per run)."""

from __future__ import annotations

from pathlib import Path

from reactdiff_lite.config import DenoiserConfig, TrainConfig, load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TINY_AE = [
    "autoencoder.latent_dim=8",
    "autoencoder.decoder_hidden=16",
    "autoencoder.encoder.dim=16",
    "autoencoder.encoder.n_mels=16",
    "autoencoder.mmt.heads=2",
]
# A stage-2 network for model-level tests of the competitors (regression, Trans-VAE).
TINY_DEN = DenoiserConfig(latent_dim=4, window=10, context_before=5, context_after=5, dim=16, depth=1, heads=2)
TINY_DIFF = ["diffusion.denoiser.dim=16", "diffusion.denoiser.depth=1", "diffusion.denoiser.heads=2"]


def tiny_config(stage: int, world: Path, out: Path, *extra: str, preset: str = "smoke") -> TrainConfig:
    """The ``preset`` config of ``stage`` (smoke by default) with tiny widths, 6 steps, checkpoints every 3."""
    common = [
        f"data.root={world}",
        f"run.out={out}",
        "run.progress=false",
        "run.log_every=1",
        "optim.steps=6",
        "optim.batch_size=8",
        "run.eval_every=3",
        "run.ckpt_every=3",
    ]
    return load_config(
        CONFIGS / f"stage{stage}_{preset}.yaml", [*common, *(TINY_AE if stage == 1 else TINY_DIFF), *extra]
    )
