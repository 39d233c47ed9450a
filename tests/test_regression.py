"""The regression competitor (``stage2.objective: regression``): same denoiser, MSE to the window, K copies."""

from __future__ import annotations

import shutil

import pytest
import torch
from tiny import TINY_DEN as DEN
from tiny import tiny_config

from reactdiff_lite.config import DiffusionConfig
from reactdiff_lite.models.diffusion import LatentDiffusion
from reactdiff_lite.models.regression import LatentRegression
from reactdiff_lite.sampling import generate, load_model
from reactdiff_lite.train import train

pytestmark = pytest.mark.usefixtures("one_thread")


def test_same_network_as_the_diffusion_model():
    cfg = DiffusionConfig(denoiser=DEN)
    assert set(LatentRegression(cfg).state_dict()) == set(LatentDiffusion(cfg).state_dict())


def test_one_output_per_condition_whatever_the_sampler_options():
    torch.manual_seed(0)
    model = LatentRegression(DiffusionConfig(denoiser=DEN))
    torch.nn.init.normal_(model.denoiser.out_proj.weight)  # not the zero-initialised output
    speaker = torch.randn(3, 20, 4)
    a = model.sample(speaker, steps=5, guidance=2.0, generator=torch.Generator().manual_seed(1))
    b = model.sample(speaker, steps=50, eta=1.0, generator=torch.Generator().manual_seed(2))
    assert a.shape == (3, 10, 4) and torch.equal(a, b) and a.abs().sum() > 0
    x0 = torch.randn(3, 10, 4)
    torch.testing.assert_close(model.loss(x0, speaker), ((a - x0) ** 2).mean())


def test_it_learns_the_conditional_mean_of_two_appropriate_reactions():
    """Mean collapse: one speaker, two equally likely reactions ±1 -> the prediction goes to 0, their mean."""
    torch.manual_seed(0)
    model = LatentRegression(DiffusionConfig(denoiser=DEN))
    speaker = torch.randn(1, 20, 4).expand(32, -1, -1)
    x0 = torch.where(torch.arange(32)[:, None, None] % 2 == 0, 1.0, -1.0).expand(32, 10, 4)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        optimiser.zero_grad()
        model.loss(x0, speaker).backward()
        optimiser.step()
    with torch.no_grad():
        pred, loss = model.sample(speaker[:1]), float(model.loss(x0, speaker))
    assert pred.abs().max() < 0.05  # the average of +1 and -1, neither reaction
    assert loss == pytest.approx(1.0, abs=0.01)  # the variance it cannot explain


def test_trained_by_the_stage2_loop_and_sampled_as_k_copies(smoke_data, tmp_path):
    runs = tmp_path / "runs"
    train(tiny_config(1, smoke_data, runs / "stage1"))
    best = train(tiny_config(2, smoke_data, runs / "stage2", "stage2.objective=regression"))
    model = load_model(best, "cpu")
    assert isinstance(model.diffusion, LatentRegression) and model.config.stage2.objective == "regression"
    speaker = {
        "emotion": torch.rand(2, 60, 25),
        "tdmm": torch.randn(2, 60, 58),
        "audio": torch.randn(2, 60 * 640) * 0.1,
    }
    out = generate(model, speaker, k=3, seed=0)
    assert out["emotion"].shape == (2, 3, 60, 25)
    assert torch.equal(out["latent"][:, :1].expand(-1, 3, -1, -1), out["latent"])  # K copies
    assert not torch.equal(out["latent"][0], out["latent"][1])  # but it reads the speaker
    assert torch.equal(generate(model, speaker, k=3, seed=7)["latent"], out["latent"])  # no noise at all
    shutil.rmtree(runs / "stage2")
    diffusion = train(tiny_config(2, smoke_data, runs / "stage2"))
    assert isinstance(load_model(diffusion, "cpu").diffusion, LatentDiffusion)
