"""The frame-causal online track: listener frame t depends on speaker frames <= t only.

Causality is structural (masks and padding), so random weights test it exactly: perturb a
speaker's inputs (emotion, 3DMM, face frames and raw audio) from frame t on, generate with
the same seed, and the listener outputs before t must be bit-for-bit equal, while frame t
itself changes (so the test can fail). The default (non-causal) model must fail it, by as
many frames as ``windows.lookahead_frames`` says.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from tiny import CONFIGS, tiny_config

from reactdiff_lite.config import (
    AutoencoderConfig,
    ConfigError,
    DenoiserConfig,
    DiffusionConfig,
    EncoderConfig,
    MMTConfig,
    SampleConfig,
    Stage2Config,
    TrainConfig,
    load_config,
)
from reactdiff_lite.latents import ReactionModel
from reactdiff_lite.models.autoencoder import ReactionAutoencoder
from reactdiff_lite.models.diffusion import LatentDiffusion
from reactdiff_lite.models.encoders import AudioFeatures
from reactdiff_lite.sampling import generate, load_model
from reactdiff_lite.schema import SAMPLES_PER_FRAME
from reactdiff_lite.tasks import resolve_stage2
from reactdiff_lite.train import train
from reactdiff_lite.windows import lookahead_frames

W, P, F, T = 10, 10, 5, 37  # window, context before / after (offline model), frames: 3 windows and a partial one
OUTPUTS = ("latent", "emotion", "tdmm")


def speaker_batch(n: int = 2, t: int = T, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random speaker person batch with every modality (valid emotion ranges)."""
    g = torch.Generator().manual_seed(seed)
    au = (torch.rand(n, t, 15, generator=g) > 0.5).float()
    emotion = torch.cat([au, torch.rand(n, t, 2, generator=g) * 2 - 1, torch.softmax(torch.randn(n, t, 8), -1)], -1)
    return {
        "emotion": emotion,
        "tdmm": torch.randn(n, t, 58, generator=g),
        "audio": torch.randn(n, t * SAMPLES_PER_FRAME, generator=g) * 0.1,
        "frames": torch.randint(0, 256, (n, t, 16, 16), generator=g, dtype=torch.uint8),
    }


def perturbed(person: dict[str, torch.Tensor], t: int) -> dict[str, torch.Tensor]:
    """``person`` with every input from frame t on replaced (raw audio from sample 640 t on)."""
    other = speaker_batch(*person["emotion"].shape[:2], seed=1)
    out = {}
    for key, x in person.items():
        cut = t * SAMPLES_PER_FRAME if key == "audio" else t
        out[key] = torch.cat([x[:, :cut], other[key][:, cut:]], dim=1)
    return out


def random_model(causal: bool) -> ReactionModel:
    """A tiny two-stage model with random weights (every zero-initialised layer randomised too,
    so the condition reaches the output), frame-causal or the default non-causal one."""
    torch.manual_seed(0)
    ae_cfg = AutoencoderConfig(
        encoder=EncoderConfig(dim=16, n_mels=16, video=True),
        mmt=MMTConfig(heads=2),
        latent_dim=8,
        decoder_hidden=16,
        causal=causal,
    )
    den = DenoiserConfig(8, W, P, 0 if causal else F, dim=16, depth=2, heads=2, causal=causal)
    cfg = TrainConfig(
        stage=2,
        autoencoder=ae_cfg,
        diffusion=DiffusionConfig(denoiser=den),
        stage2=Stage2Config(encode_chunk=W),
        sample=SampleConfig(steps=3, guidance=2.0),
    )
    ae, diffusion = ReactionAutoencoder(ae_cfg), LatentDiffusion(cfg.diffusion)
    ae.normalizer.fit(torch.randn(100, 8))
    with torch.no_grad():
        for p in diffusion.parameters():
            if not p.any():
                p.normal_(0, 0.3)
    return ReactionModel(ae.eval(), diffusion.eval(), cfg, torch.device("cpu"))


def first_change(model: ReactionModel, speaker: dict, t: int, online: bool, eta: float = 0.0) -> dict[str, int]:
    """Per output, the first frame that changes when the speaker changes from frame t on (T: none)."""
    a = generate(model, speaker, 2, online=online, seed=3, eta=eta)
    b = generate(model, perturbed(speaker, t), 2, online=online, seed=3, eta=eta)
    out = {}
    for key in OUTPUTS:
        same = (a[key] == b[key]).flatten(3).all(-1).all(0).all(0)  # (T,) every row, reaction and channel equal
        out[key] = int((~same).nonzero()[0]) if not same.all() else T
        assert torch.equal(a[key][:, :, : out[key]], b[key][:, :, : out[key]])
    return out


@pytest.fixture(scope="module")
def causal_model() -> ReactionModel:
    return random_model(causal=True)


@pytest.fixture(scope="module")
def offline_model() -> ReactionModel:
    return random_model(causal=False)


@pytest.mark.parametrize("t", [4, 10, 20, 23, 30, 36], ids=lambda t: f"t{t}")
def test_causal_model_listener_frames_before_t_ignore_speaker_from_t(causal_model, t):
    """Frames t (window boundaries 10, 20, 30; inside windows 4, 23; the partial last window 36)."""
    speaker = speaker_batch()
    z, z2 = causal_model.encode(speaker), causal_model.encode(perturbed(speaker, t))
    assert torch.equal(z[:, :t], z2[:, :t]) and not torch.equal(z[:, t], z2[:, t])  # the speaker latents
    first = first_change(causal_model, speaker, t, online=True)
    assert first == {key: t for key in OUTPUTS}  # equal before t, and frame t itself changes
    assert causal_model.lookahead(online=True) == causal_model.lookahead(online=False) == 0


def test_causal_model_stays_causal_with_ddim_noise_and_offline_flag(causal_model):
    """η > 0 draws fresh noise at every step; the offline flag shows nothing more (F = 0)."""
    assert first_change(causal_model, speaker_batch(), 23, online=False, eta=1.0) == {key: 23 for key in OUTPUTS}


@pytest.mark.parametrize(
    "online, t, first",
    [(True, 23, 20), (True, 29, 20), (False, 29, 10)],
    ids=["online-inside", "online-window-end", "offline-chunk-end"],
)
def test_default_model_fails_by_its_lookahead(offline_model, online, t, first):
    """The window-causal default: listener frames before t change, back to the start of
    t's window online and to the window before offline (F = 5 frames after a window reach
    into the next encoding chunk). At t = 29, a chunk's last frame, the bound is reached."""
    got = first_change(offline_model, speaker_batch(), t, online=online)
    assert got == {key: first for key in OUTPUTS} and first < t
    assert t - first <= offline_model.lookahead(online)
    assert (offline_model.lookahead(True), offline_model.lookahead(False)) == (W - 1, 2 * W - 1)


def test_lookahead_formula():
    assert lookahead_frames(50, 25, 50, False, False) == 99  # default offline: 2 chunks - 1
    assert lookahead_frames(50, 0, 50, False, False) == 49  # default online: the window - 1
    assert lookahead_frames(50, 25, 50, True, False) == 74  # causal encoder alone
    assert lookahead_frames(50, 0, 50, True, True) == 0


def test_causal_stft_frames_end_with_their_video_frame():
    audio = torch.randn(2, 12 * SAMPLES_PER_FRAME)
    later = audio.clone()
    later[:, 7 * SAMPLES_PER_FRAME :] += 1.0
    for causal, first in ((True, 7), (False, 6)):  # the centred window reads 192 samples of the next frame
        features = AudioFeatures(1024, 16, 13, causal=causal)
        (a, _), (b, _) = features(audio), features(later)
        assert a.shape == (2, 12, 16)
        assert torch.equal(a[:, :first], b[:, :first]) and not torch.equal(a[:, first], b[:, first])


def test_causal_attention_maps_are_lower_triangular(causal_model):
    """Every MMT attention map of the causal encoder gives exactly zero weight to later frames,
    and the explicit-weights path agrees with the fused kernel."""
    ae, person = causal_model.autoencoder, speaker_batch(t=12)
    streams = ae.encoders(person)
    with torch.no_grad():
        fused, maps = ae.mmt.forward_with_attention(streams)
        assert torch.allclose(fused, ae.mmt(streams), atol=1e-5)
    assert set(maps) >= {"intra/fe", "intra/mfcc", "inter/0"}
    for weights in maps.values():  # (B, heads, T, T)
        assert torch.equal(weights.triu(1), torch.zeros_like(weights)) and weights.tril().sum() > 0


def test_causal_denoiser_needs_no_future_and_a_causal_encoder(tmp_path):
    with pytest.raises(ConfigError, match="context_after=0"):
        load_config(CONFIGS / "stage2_online.yaml", ["diffusion.denoiser.context_after=25"])
    cfg = load_config(CONFIGS / "stage2_online.yaml")
    stage1 = {"autoencoder": dataclasses.asdict(AutoencoderConfig()), "data": {"window": 50}}
    with pytest.raises(ConfigError, match="autoencoder.causal"):
        resolve_stage2(cfg, stage1, "stage1/best.pt")
    stage1["autoencoder"]["causal"] = True
    assert resolve_stage2(cfg, stage1, "stage1/best.pt").autoencoder.causal


def test_online_presets_train_a_frame_causal_model(smoke_data, tmp_path):
    """The committed online presets, at tiny widths through the training loop: the trained
    checkpoint is frame-causal too."""
    # the smoke world at data.root (not the default one); live weights after a short warm-up,
    # so that 6 steps move the zero-initialised gates enough for the speaker to show
    world = ["data.preset=smoke", "optim.warmup=1", "optim.ema=0"]
    train(tiny_config(1, smoke_data, tmp_path / "stage1", *world, preset="online"))
    model = load_model(train(tiny_config(2, smoke_data, tmp_path / "stage2", *world, preset="online")), "cpu")
    assert model.autoencoder.cfg.causal and model.diffusion.config.denoiser.causal
    assert model.lookahead(online=True) == 0
    speaker = {k: v for k, v in speaker_batch(t=120).items() if k != "frames"}
    a = generate(model, speaker, 2, online=True, seed=1)
    b = generate(model, perturbed(speaker, 75), 2, online=True, seed=1)
    for key in OUTPUTS:
        assert torch.equal(a[key][:, :, :75], b[key][:, :, :75]) and not torch.equal(a[key][:, :, 75], b[key][:, :, 75])
