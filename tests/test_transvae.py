"""The Trans-VAE competitor (``stage2.objective: transvae``): a conditional VAE decoding through the denoiser."""

from __future__ import annotations

import pytest
import torch
from tiny import TINY_DEN as DEN
from tiny import tiny_config

from reactdiff_lite.config import DiffusionConfig
from reactdiff_lite.models.transvae import LatentTransVAE
from reactdiff_lite.sampling import generate, load_model
from reactdiff_lite.train import train

pytestmark = pytest.mark.usefixtures("one_thread")


def test_loss_is_reconstruction_plus_weighted_kl():
    torch.manual_seed(0)
    model = LatentTransVAE(DiffusionConfig(denoiser=DEN))
    x0, speaker = torch.randn(3, 10, 4), torch.randn(3, 20, 4)
    mu, logvar = model.posterior(x0)
    eps = torch.randn(3, 16, generator=torch.Generator().manual_seed(1))
    rec = ((model.decode(mu + (0.5 * logvar).exp() * eps, speaker, None, None) - x0) ** 2).mean()
    kl = -0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(-1).mean()
    got = model.loss(x0, speaker, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(got, rec + 1e-3 * kl)


def test_it_learns_both_appropriate_reactions_not_their_mean():
    """One speaker, two equally likely reactions ±1: each sample is close to one of them, and both occur."""
    torch.manual_seed(0)
    model = LatentTransVAE(DiffusionConfig(denoiser=DEN))
    speaker = torch.randn(1, 20, 4).expand(32, -1, -1)
    x0 = torch.where(torch.arange(32)[:, None, None] % 2 == 0, 1.0, -1.0).expand(32, 10, 4)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(100):
        optimiser.zero_grad()
        model.loss(x0, speaker, generator=torch.Generator().manual_seed(step)).backward()
        optimiser.step()
    samples = model.sample(speaker[:1].expand(64, -1, -1), generator=torch.Generator().manual_seed(0))
    means = samples.mean((1, 2))  # (64,) one number per sampled window
    assert 0.2 < (means > 0).float().mean() < 0.8  # both reactions
    assert (means.abs() > 0.5).float().mean() > 0.9  # and rarely their average
    again = model.sample(speaker[:1].expand(64, -1, -1), generator=torch.Generator().manual_seed(0))
    assert torch.equal(again, samples)


def test_trained_by_the_stage2_loop_and_sampled_with_diversity(smoke_data, tmp_path):
    runs = tmp_path / "runs"
    train(tiny_config(1, smoke_data, runs / "stage1"))
    best = train(tiny_config(2, smoke_data, runs / "stage2", "stage2.objective=transvae"))
    model = load_model(best, "cpu")
    assert isinstance(model.diffusion, LatentTransVAE) and model.config.diffusion.transvae.z_dim == 16
    speaker = {
        "emotion": torch.rand(2, 60, 25),
        "tdmm": torch.randn(2, 60, 58),
        "audio": torch.randn(2, 60 * 640) * 0.1,
    }
    out = generate(model, speaker, k=3, seed=0)
    assert out["emotion"].shape == (2, 3, 60, 25)
    assert not torch.equal(out["latent"][:, 0], out["latent"][:, 1])  # K reactions differ (z ~ N(0, I))
    assert torch.equal(generate(model, speaker, k=3, seed=0)["latent"], out["latent"])
    assert not torch.equal(generate(model, speaker, k=3, seed=1)["latent"], out["latent"])
