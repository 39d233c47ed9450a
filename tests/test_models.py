"""Stage-1 model components: encoders, the Multi-Modality Transformer, the autoencoder,
latent normalisation and checkpoints. Random tensors, small sizes: a few seconds."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torchaudio

from reactdiff_lite.config import AutoencoderConfig, ConfigError, EncoderConfig, MMTConfig, from_dict, to_dict
from reactdiff_lite.models.autoencoder import LatentNormalizer, ReactionAutoencoder, load_checkpoint, save_checkpoint
from reactdiff_lite.models.checkpoint import CheckpointError
from reactdiff_lite.models.encoders import AudioFeatures, FrameCNN, FrameMLP, LogMelConvEncoder, ModalityEncoders
from reactdiff_lite.models.layers import Attention, sinusoidal_positions
from reactdiff_lite.models.mmt import MultiModalityTransformer
from reactdiff_lite.schema import AUDIO_RATE, SAMPLES_PER_FRAME

B, T, D = 2, 12, 16


def make_person(b: int = B, t: int = T, size: int = 16, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    fe = torch.softmax(torch.randn(b, t, 8, generator=g), -1)
    emotion = torch.cat(
        [(torch.rand(b, t, 15, generator=g) > 0.5).float(), torch.rand(b, t, 2, generator=g) * 2 - 1, fe], -1
    )
    return {
        "emotion": emotion,
        "tdmm": torch.randn(b, t, 58, generator=g) * 0.3 + 1.0,
        "audio": torch.randn(b, t * SAMPLES_PER_FRAME, generator=g) * 0.1,
        "frames": torch.randint(0, 256, (b, t, size, size), generator=g, dtype=torch.uint8),
    }


def small_cfg(**enc) -> AutoencoderConfig:
    return AutoencoderConfig(
        encoder=EncoderConfig(dim=D, **enc), mmt=MMTConfig(heads=2), latent_dim=8, decoder_hidden=32
    )


# ---------------------------------------------------------------- encoders


def test_each_encoder_shape():
    x = torch.randn(B, T, 15)
    assert FrameMLP(15, D)(x).shape == (B, T, D)
    for h, w in [(32, 32), (16, 24)]:
        frames = torch.randint(0, 256, (B, T, h, w), dtype=torch.uint8)
        assert FrameCNN(D, channels=4)(frames).shape == (B, T, D)
    log_mel, mfcc = AudioFeatures(n_fft=1024, n_mels=20, n_mfcc=7)(torch.randn(B, T * SAMPLES_PER_FRAME))
    assert log_mel.shape == (B, T, 20) and mfcc.shape == (B, T, 7)
    assert LogMelConvEncoder(20, D)(log_mel).shape == (B, T, D)


@pytest.mark.parametrize("t,n_fft", [(1, 640), (7, 1024), (50, 1024), (13, 1280)])
def test_mfcc_one_vector_per_frame_equals_torchaudio(t, n_fft):
    audio = torch.randn(B, t * SAMPLES_PER_FRAME)
    feats = AudioFeatures(n_fft=n_fft, n_mels=32, n_mfcc=13)
    log_mel, mfcc = feats(audio)
    assert log_mel.shape == (B, t, 32) and mfcc.shape == (B, t, 13)
    reference = torchaudio.transforms.MFCC(  # the definition: torchaudio MFCC on the padded waveform
        sample_rate=AUDIO_RATE,
        n_mfcc=13,
        log_mels=True,
        melkwargs=dict(n_fft=n_fft, hop_length=SAMPLES_PER_FRAME, n_mels=32, center=False),
    )
    padded = torch.nn.functional.pad(audio, feats.pad)
    torch.testing.assert_close(mfcc, reference(padded).transpose(1, 2))


def test_audio_frames_are_aligned_with_video_frames():
    """A tone burst inside video frame k gives the loudest log-mel frame k; and a clip's
    features do not depend on the other clips of its batch."""
    t = 10
    audio = torch.zeros(2, t * SAMPLES_PER_FRAME)
    s = torch.arange(SAMPLES_PER_FRAME) / AUDIO_RATE
    for i, k in enumerate((3, 7)):
        audio[i, k * SAMPLES_PER_FRAME : (k + 1) * SAMPLES_PER_FRAME] = torch.sin(2 * math.pi * 440 * s) * (i + 1)
    log_mel, mfcc = AudioFeatures()(audio)
    assert log_mel.logsumexp(-1).argmax(-1).tolist() == [3, 7]
    torch.testing.assert_close(AudioFeatures()(audio[:1])[1], mfcc[:1])


@pytest.mark.parametrize("audio,video,tdmm", list(itertools.product([False, True], repeat=3)))
def test_every_modality_combination(audio, video, tdmm):
    cfg = small_cfg(audio=audio, video=video, tdmm=tdmm)
    person = make_person()
    streams = ModalityEncoders(cfg.encoder)(person)
    assert tuple(streams) == cfg.encoder.streams
    assert ("logmel" in streams) == audio and ("video" in streams) == video and ("tdmm" in streams) == tdmm
    assert all(s.shape == (B, T, D) for s in streams.values())
    for fusion in ("attention", "concat", "concat_temporal"):
        cfg.mmt = MMTConfig(heads=2, fusion=fusion)
        model = ReactionAutoencoder(cfg)
        z = model.encode(person)
        assert z.shape == (B, T, 8)
        out = model.decode(z)
        assert out["emotion"].shape == (B, T, 25) and out["tdmm"].shape == (B, T, 58)
        loss, parts = model.loss(person)
        assert torch.isfinite(loss) and set(parts) == {"au_bce", "va_mse", "fe_ce", "tdmm_mse", "total"}


def test_bad_person_dicts_are_named():
    enc = ModalityEncoders(EncoderConfig(dim=D, video=True))
    person = make_person()
    with pytest.raises(ValueError, match="no 'audio' but EncoderConfig.audio=True"):
        enc({k: v for k, v in person.items() if k != "audio"})
    with pytest.raises(ValueError, match="640 samples per frame"):
        enc({**person, "audio": person["audio"][:, :-5]})
    with pytest.raises(ValueError, match="uint8"):
        enc({**person, "frames": person["frames"].float()})
    with pytest.raises(ValueError, match=r"expected \(B, T, 25\)"):
        enc({**person, "emotion": person["emotion"][..., :24]})


# ---------------------------------------------------------------- shared layers and the MMT


def test_attention_weights_path_equals_the_fused_kernel():
    """Asking for the weights computes softmax(Q K^T / sqrt(d)) V explicitly: the same
    output as scaled_dot_product_attention, masked keys get exactly zero weight, and the
    output is what the weights say."""
    torch.manual_seed(0)
    attn = Attention(D, heads=4).eval()
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(B, n, D, generator=g) for n in (5, 7, 7))
    mask = torch.ones(B, 7, dtype=torch.bool)
    mask[0, 2:5] = False
    fused, none = attn(q, k, v, mask)
    out, weights = attn(q, k, v, mask, need_weights=True)
    assert none is None and weights.shape == (B, 4, 5, 7)
    torch.testing.assert_close(out, fused)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, 4, 5))
    assert weights[0, :, :, 2:5].abs().max() == 0
    heads = (weights @ attn.to_v(v).unflatten(-1, (4, -1)).transpose(1, 2)).transpose(1, 2).flatten(2)
    torch.testing.assert_close(attn.to_out(heads), out)
    with pytest.raises(ValueError, match="not divisible"):
        Attention(D, heads=3)


def leaf_streams(cfg: EncoderConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {s: torch.randn(B, T, cfg.dim, generator=g, requires_grad=True) for s in cfg.streams}


def readout(output: torch.Tensor) -> torch.Tensor:
    """A fixed random linear read-out: ``output.sum()`` is blind behind a LayerNorm,
    whose outputs always sum to the same value."""
    w = torch.randn(output.shape, generator=torch.Generator().manual_seed(123))
    return (w * output).sum()


def grad_norms(output: torch.Tensor, streams: dict[str, torch.Tensor]) -> dict[str, float]:
    grads = torch.autograd.grad(readout(output), list(streams.values()), allow_unused=True, retain_graph=True)
    return {s: 0.0 if g is None else float(g.abs().sum()) for s, g in zip(streams, grads, strict=True)}


def test_intra_class_attention_stays_inside_its_class_and_inter_class_mixes():
    enc = EncoderConfig(dim=D, audio=True, video=True, tdmm=True)
    mmt = MultiModalityTransformer(MMTConfig(heads=2, inter_depth=2), enc)
    streams = leaf_streams(enc)
    facial, acoustic, _ = mmt.intra(streams)
    facial_grads, acoustic_grads = grad_norms(facial, streams), grad_norms(acoustic, streams)
    for s in ("au", "fe", "va", "tdmm", "video"):
        assert facial_grads[s] > 0 and acoustic_grads[s] == 0, s
    for s in ("logmel", "mfcc"):
        assert facial_grads[s] == 0 and acoustic_grads[s] > 0, s
    fused, _ = mmt.inter_class(facial, acoustic)
    assert all(g > 0 for g in grad_norms(fused, streams).values())


def test_audio_waveform_reaches_the_latent_only_through_inter_class_attention():
    person = make_person()
    audio = person["audio"].clone().requires_grad_(True)
    for depth, reaches in [(0, False), (1, True)]:
        cfg = small_cfg()
        cfg.mmt = MMTConfig(heads=2, inter_depth=depth)
        z = ReactionAutoencoder(cfg).encode({**person, "audio": audio})
        (grad,) = torch.autograd.grad(readout(z), audio, allow_unused=True)
        assert (grad is not None and grad.abs().sum() > 0) == reaches


def test_attention_weights_shapes_and_rows():
    enc = EncoderConfig(dim=D, video=True)
    mmt = MultiModalityTransformer(MMTConfig(heads=2, inter_depth=2), enc)
    fused, attn = mmt.forward_with_attention(leaf_streams(enc))
    assert fused.shape == (B, T, D)
    assert list(attn) == ["intra/fe", "intra/va", "intra/tdmm", "intra/video", "intra/mfcc", "inter/0", "inter/1"]
    for w in attn.values():
        assert w.shape == (B, 2, T, T) and (w >= 0).all()
        torch.testing.assert_close(w.sum(-1), torch.ones(B, 2, T))
    torch.testing.assert_close(mmt(leaf_streams(enc)), fused)


def test_no_audio_skips_inter_class_cleanly():
    enc = EncoderConfig(dim=D, audio=False)
    mmt = MultiModalityTransformer(MMTConfig(heads=2, inter_depth=3), enc)
    assert not hasattr(mmt, "inter") and not hasattr(mmt, "intra_acoustic")
    _, attn = mmt.forward_with_attention(leaf_streams(enc))
    assert list(attn) == ["intra/fe", "intra/va", "intra/tdmm"]


def test_concat_fusion_mixes_streams_but_not_time():
    enc = EncoderConfig(dim=D)
    mmt = MultiModalityTransformer(MMTConfig(fusion="concat"), enc)
    streams = leaf_streams(enc)
    fused, attn = mmt.forward_with_attention(streams)
    assert fused.shape == (B, T, D) and attn == {}
    assert all(g > 0 for g in grad_norms(fused, streams).values())
    (grad,) = torch.autograd.grad(readout(fused[:, 3]), streams["mfcc"])
    assert grad[:, 3].abs().sum() > 0 and grad[:, :3].abs().sum() == 0 and grad[:, 4:].abs().sum() == 0


def test_concat_temporal_control_mixes_time_with_as_many_attention_layers_as_the_mmt():
    enc = EncoderConfig(dim=D)
    mmt = MultiModalityTransformer(MMTConfig(heads=2), enc)
    control = MultiModalityTransformer(MMTConfig(heads=2, fusion="concat_temporal"), enc)
    _, attn = mmt.forward_with_attention(leaf_streams(enc))
    streams = leaf_streams(enc)
    fused, control_attn = control.forward_with_attention(streams)
    assert len(control_attn) == len(attn) and all(k.startswith("temporal/") for k in control_attn)
    (grad,) = torch.autograd.grad(readout(fused[:, 3]), streams["mfcc"])
    assert grad[:, :3].abs().sum() > 0 and grad[:, 4:].abs().sum() > 0  # frame 3 sees other frames' audio


def test_positions_break_time_permutation_symmetry():
    """Without positions attention is permutation-equivariant in time (it cannot tell
    when a frame happened); with them it is not."""
    enc = EncoderConfig(dim=D)
    perm = torch.randperm(T, generator=torch.Generator().manual_seed(0))
    streams = {k: v.detach() for k, v in leaf_streams(enc).items()}
    shuffled = {k: v[:, perm] for k, v in streams.items()}
    for positions in (False, True):
        torch.manual_seed(0)
        mmt = MultiModalityTransformer(MMTConfig(heads=2, positions=positions), enc)
        same = torch.allclose(mmt(shuffled), mmt(streams)[:, perm], atol=1e-5)
        assert same == (not positions)
    p = sinusoidal_positions(T, D)
    assert p.shape == (T, D) and torch.allclose(p[0, 1::2], torch.ones(D // 2))


# ---------------------------------------------------------------- autoencoder


@pytest.mark.parametrize("mode", ["standard", "minmax"])
def test_latent_normalizer_round_trip_is_exact(mode):
    z = torch.randn(64, T, 8) * torch.linspace(0.1, 10, 8) + torch.linspace(-5, 5, 8)
    z[..., 3] = 7.0  # a constant dimension keeps scale 1
    norm = LatentNormalizer(8, mode)
    with pytest.raises(RuntimeError, match="not fit"):
        norm.normalize(z)
    norm.fit(z)
    n = norm.normalize(z)
    torch.testing.assert_close(norm.denormalize(n), z, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(norm.normalize(norm.denormalize(n)), n, rtol=1e-6, atol=1e-5)
    flat = n.reshape(-1, 8)
    if mode == "standard":
        torch.testing.assert_close(flat.mean(0), torch.zeros(8), atol=1e-4, rtol=0)
        torch.testing.assert_close(flat.std(0, unbiased=False)[[0, 1, 2, 4]], torch.ones(4), atol=1e-4, rtol=0)
    else:
        torch.testing.assert_close(flat.min(0).values[[0, 1, 2, 4]], -torch.ones(4), atol=1e-5, rtol=0)
        torch.testing.assert_close(flat.max(0).values[[0, 1, 2, 4]], torch.ones(4), atol=1e-5, rtol=0)
    assert float(norm.scale[3]) == 1.0


def test_decoder_ranges_and_tdmm_units():
    torch.manual_seed(0)
    model = ReactionAutoencoder(small_cfg())
    person = make_person()
    model.fit_tdmm_statistics(person["tdmm"])
    out = model.decode(torch.randn(B, T, 8) * 5)
    emo = out["emotion"]
    assert ((emo[..., :15] > 0) & (emo[..., :15] < 1)).all() and (emo[..., 15:17].abs() <= 1).all()
    torch.testing.assert_close(emo[..., 17:].sum(-1), torch.ones(B, T))
    raw = model.decode_raw(torch.zeros(1, 1, 8))["tdmm"]
    torch.testing.assert_close(model.decode(torch.zeros(1, 1, 8))["tdmm"], raw * model.tdmm_std + model.tdmm_mean)
    torch.testing.assert_close(model.tdmm_mean, person["tdmm"].reshape(-1, 58).mean(0))


def test_loss_decreases_on_a_tiny_batch():
    torch.manual_seed(0)
    model = ReactionAutoencoder(small_cfg())
    person = make_person()
    model.fit_tdmm_statistics(person["tdmm"])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss, parts = model(person)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(parts)
    assert all(losses[-1][k] < losses[0][k] for k in losses[0]), (losses[0], losses[-1])
    assert losses[-1]["total"] < 0.9 * losses[0]["total"]


def test_variational_option():
    cfg = small_cfg()
    cfg.variational = True
    torch.manual_seed(0)
    model = ReactionAutoencoder(cfg)
    person = make_person()
    torch.testing.assert_close(model.encode(person), model.encode(person))
    a = model.loss(person, torch.Generator().manual_seed(1))[1]
    b = model.loss(person, torch.Generator().manual_seed(1))[1]
    c = model.loss(person, torch.Generator().manual_seed(2))[1]
    assert a == b and a["total"] != c["total"] and a["kl"] >= 0
    assert math.isclose(
        a["total"], a["au_bce"] + a["va_mse"] + a["fe_ce"] + a["tdmm_mse"] + 1e-3 * a["kl"], rel_tol=1e-5
    )


def test_same_seed_same_model_and_outputs():
    person = make_person()
    outs = []
    for _ in range(2):
        torch.manual_seed(3)
        model = ReactionAutoencoder(small_cfg(video=True))
        outs.append((model.encode(person), model.loss(person)[1]))
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=0, atol=0)
    assert outs[0][1] == outs[1][1]


def test_config_dict_round_trip():
    cfg = small_cfg(video=True)
    assert from_dict(AutoencoderConfig, to_dict(cfg)) == cfg
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict(AutoencoderConfig, {**to_dict(cfg), "widht": 3})
    with pytest.raises(ValueError, match="fusion"):
        MMTConfig(fusion="sum")


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    cfg = small_cfg(video=True)
    model = ReactionAutoencoder(cfg)
    person = make_person()
    model.fit_tdmm_statistics(person["tdmm"])
    model.normalizer.fit(model.encode(person))
    path = save_checkpoint(tmp_path / "ae.pt", model, cfg, step=7, note="x")
    loaded, loaded_cfg, extra = load_checkpoint(path)
    assert loaded_cfg == cfg and extra == {"step": 7, "note": "x"} and not loaded.training
    z = model.encode(person)
    torch.testing.assert_close(loaded.encode(person), z, rtol=0, atol=0)
    torch.testing.assert_close(loaded.decode(z)["tdmm"], model.decode(z)["tdmm"], rtol=0, atol=0)
    torch.testing.assert_close(loaded.normalizer.normalize(z), model.normalizer.normalize(z), rtol=0, atol=0)
    assert not list(tmp_path.glob(".*tmp"))  # the atomic write left no temp file


def test_checkpoint_mismatch_is_a_clear_error(tmp_path):
    cfg = small_cfg()
    path = save_checkpoint(tmp_path / "ae.pt", ReactionAutoencoder(cfg), cfg)
    mismatch = r"ae\.pt: module 'autoencoder' does not match its config: "
    with pytest.raises(CheckpointError, match=mismatch + r"\d+ shape mismatch"):
        load_checkpoint(
            path,
            cfg=AutoencoderConfig(
                encoder=EncoderConfig(dim=2 * D), mmt=MMTConfig(heads=2), latent_dim=8, decoder_hidden=32
            ),
        )
    with pytest.raises(CheckpointError, match=mismatch + r"\d+ missing key\(s\), e\.g\. encoders\.video"):
        load_checkpoint(path, cfg=small_cfg(video=True))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"bad\.pt cannot be read"):
        load_checkpoint(bad)
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"other\.pt is not a reactdiff-lite"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="missing.pt does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
