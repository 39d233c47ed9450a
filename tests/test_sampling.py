"""Sampling: shapes and ranges, seeds, options, online causality, the `sample` CLI.

A tiny two-stage model is trained once on the smoke world (a few seconds); the tests
check properties that hold for any weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from reactdiff_lite.cli import main
from reactdiff_lite.data.cache import load_split
from reactdiff_lite.latents import model_modalities
from reactdiff_lite.sampling import generate, load_model
from reactdiff_lite.schema import AU, FE, VA
from reactdiff_lite.train import load_config, train
from reactdiff_lite.windows import window_condition

ROOT = Path(__file__).resolve().parents[1]
W = 50


@pytest.fixture(scope="module")
def trained(smoke_data, tmp_path_factory):
    world = smoke_data
    runs = tmp_path_factory.mktemp("runs")
    common = [f"data.root={world}", "run.progress=false", "optim.steps=4", "optim.batch_size=8"]
    train(
        load_config(
            ROOT / "configs/stage1_smoke.yaml",
            common
            + [
                f"run.out={runs / 'stage1'}",
                "autoencoder.latent_dim=8",
                "autoencoder.encoder.dim=16",
                "autoencoder.decoder_hidden=16",
                "autoencoder.encoder.n_mels=16",
                "autoencoder.mmt.heads=2",
            ],
        )
    )
    best = train(
        load_config(
            ROOT / "configs/stage2_smoke.yaml",
            common
            + [
                f"run.out={runs / 'stage2'}",
                "diffusion.denoiser.dim=16",
                "diffusion.denoiser.depth=1",
                "diffusion.denoiser.heads=2",
            ],
        )
    )
    return world, best


@pytest.fixture(scope="module")
def trained_speaker(trained):
    """The same stage 1, and a stage 2 with a trainable speaker encoder beside the frozen one."""
    world, best = trained
    runs = Path(best).parent.parent
    common = [f"data.root={world}", "run.progress=false", "optim.steps=4", "optim.batch_size=8"]
    tiny = ["diffusion.denoiser.dim=16", "diffusion.denoiser.depth=1", "diffusion.denoiser.heads=2"]
    mode = ["stage2.speaker_encoder=trainable", f"run.out={runs / 'stage2_trainable'}"]
    return world, train(load_config(ROOT / "configs/stage2_smoke.yaml", common + tiny + mode))


@pytest.fixture(scope="module")
def model(trained):
    return load_model(trained[1], "cpu")


@pytest.fixture(scope="module")
def speaker_model(trained_speaker):
    model = load_model(trained_speaker[1], "cpu")
    assert model.speaker_encoder is not None
    return model


@pytest.fixture(scope="module")
def speakers(trained, model):
    split = load_split(trained[0], "test", modalities=model_modalities(model.autoencoder))
    person = split.person("speaker")
    return {k: v[:3] for k, v in person.items()}  # 3 speakers, 150 frames (3 windows)


def test_shapes_and_ranges(model, speakers):
    out = generate(model, speakers, k=4, steps=3)
    N, T = speakers["emotion"].shape[:2]
    assert out["emotion"].shape == (N, 4, T, 25) and out["tdmm"].shape == (N, 4, T, 58)
    assert out["latent"].shape == (N, 4, T, model.diffusion.config.denoiser.latent_dim)
    e = out["emotion"]
    assert 0 <= e[..., AU].min() and e[..., AU].max() <= 1  # AU occurrence probabilities
    assert e[..., VA].abs().max() <= 1
    torch.testing.assert_close(e[..., FE].sum(-1), torch.ones(N, 4, T))
    assert torch.isfinite(out["tdmm"]).all()


def test_binarised_aus_are_thresholded_probabilities(model, speakers):
    soft = generate(model, speakers, k=2, steps=2)
    model.config.sample.binarize_au = True
    try:
        hard = generate(model, speakers, k=2, steps=2)
    finally:
        model.config.sample.binarize_au = False
    assert torch.equal(hard["emotion"][..., AU], (soft["emotion"][..., AU] > 0.5).float())
    assert torch.equal(hard["emotion"][..., 15:], soft["emotion"][..., 15:])


def test_same_seed_same_reactions_other_seed_differs(model, speakers):
    a = generate(model, speakers, k=3, steps=3, seed=7)
    b = generate(model, speakers, k=3, steps=3, seed=7)
    c = generate(model, speakers, k=3, steps=3, seed=8)
    assert torch.equal(a["latent"], b["latent"])
    assert (a["latent"] - c["latent"]).abs().mean() > 0.1
    # the K reactions of one speaker differ from each other
    assert (a["latent"][:, 0] - a["latent"][:, 1]).abs().mean() > 0.1


def test_latent_input_equals_person_input(model, speakers):
    latent = model.encode(speakers)
    a = generate(model, speakers, k=2, steps=2)
    b = generate(model, latent, k=2, steps=2)
    assert torch.equal(a["latent"], b["latent"])


@pytest.mark.parametrize(
    "options",
    [
        dict(steps=1),
        dict(steps=5, eta=1.0),
        dict(guidance=2.0, steps=2),
        dict(sampler="ddpm", steps=4),
        dict(batch_size=5, steps=2),
    ],
)
def test_options(model, speakers, options):
    out = generate(model, speakers, k=2, **options)
    assert out["latent"].shape[:2] == (3, 2) and torch.isfinite(out["latent"]).all()


def test_steps_and_guidance_change_the_result(model, speakers):
    base = generate(model, speakers, k=2, steps=4)["latent"]
    assert not torch.equal(base, generate(model, speakers, k=2, steps=2)["latent"])
    assert not torch.equal(base, generate(model, speakers, k=2, steps=4, guidance=3.0)["latent"])


def _changed_after(person: dict, frame: int, seed: int = 0) -> dict:
    """The same speakers with every modality replaced by noise from ``frame`` on."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, x in person.items():
        x = x.clone()
        scale = 640 if key == "audio" else 1
        tail = x[:, frame * scale :]
        x[:, frame * scale :] = torch.rand(tail.shape, generator=g).to(x.dtype) * (2 if key != "emotion" else 1)
        out[key] = x
    return out


@pytest.mark.parametrize("kind", ["model", "speaker_model"])
@pytest.mark.parametrize("window", [0, 1])
def test_online_window_never_sees_later_speaker_frames(kind, speakers, window, request):
    """Online: changing the speaker after window w leaves windows 0..w unchanged, bit for bit.
    Offline (the control): window w sees the speaker frames after it, so it changes. Also
    with a trainable speaker encoder (it encodes the same aligned chunks)."""
    model = request.getfixturevalue(kind)
    end = (window + 1) * W
    changed = _changed_after(speakers, end)
    online = [generate(model, s, k=2, steps=3, online=True)["latent"] for s in (speakers, changed)]
    assert torch.equal(online[0][:, :, :end], online[1][:, :, :end])
    assert not torch.equal(online[0][:, :, end:], online[1][:, :, end:])
    offline = [generate(model, s, k=2, steps=3, online=False)["latent"] for s in (speakers, changed)]
    assert not torch.equal(offline[0][:, :, window * W : end], offline[1][:, :, window * W : end])


def test_window_condition_masks_edges_and_the_online_future():
    T, Dz = 120, 2
    speaker = torch.arange(T, dtype=torch.float32)[None, :, None].expand(2, T, Dz) + 1  # frame t holds t + 1
    listener = -speaker
    start = torch.tensor([0, 60])
    context, mask, prev = window_condition(
        speaker, listener, start, window=50, before=25, after=25, online=torch.tensor([False, True])
    )
    assert context.shape == (2, 100, Dz) and mask.shape == (2, 100) and prev.shape == (2, 25, Dz)
    # row 0 (offline, first window): frames -25..-1 are outside the clip
    assert not mask[0, :25].any() and mask[0, 25:].all() and (context[0, :25] == 0).all()
    assert torch.equal(context[0, 25:, 0], torch.arange(0, 75, dtype=torch.float32) + 1)
    assert (prev[0] == 0).all()
    # row 1 (online, frames 35..134): visible up to frame 109; 110..134 hidden (future, and 120+ outside)
    assert mask[1, :75].all() and not mask[1, 75:].any()
    assert torch.equal(prev[1, :, 0], -(torch.arange(35, 60, dtype=torch.float32) + 1))


@pytest.mark.parametrize("run", ["trained", "trained_speaker"])
def test_cli_sample_writes_predictions(run, tmp_path, request):
    world, best = request.getfixturevalue(run)
    out = tmp_path / "preds.npz"
    assert (
        main(
            [
                "sample",
                "--checkpoint",
                str(best),
                "--data",
                str(world),
                "--split",
                "test",
                "--k",
                "2",
                "--out",
                str(out),
                "--steps",
                "2",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    with np.load(out) as preds:
        N = len(load_split(world, "test", modalities=("emotion",)).items)
        assert preds["emotion"].shape == (N, 2, 150, 25) and preds["tdmm"].shape == (N, 2, 150, 58)
        assert preds["emotion"].dtype == np.float32


def test_load_model_rejects_a_stage1_checkpoint(trained):
    from reactdiff_lite.models.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="stage-1 checkpoint; sampling needs"):
        load_model(Path(trained[1]).parent.parent / "stage1" / "best.pt")
