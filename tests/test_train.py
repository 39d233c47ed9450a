"""Two-stage training: configs, a smoke run of each stage, exact resume, DDP on CPU, NaN stop.

Everything runs on the smoke world with tiny models: about half a minute in all.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from tiny import tiny_config

from reactdiff_lite.config import ConfigError
from reactdiff_lite.models import checkpoint as ckpt
from reactdiff_lite.models.autoencoder import ReactionAutoencoder, load_checkpoint
from reactdiff_lite.train import TrainingDiverged, load_config, lr_factor, train, train_once
from reactdiff_lite.utils import UserError

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


@pytest.fixture(scope="module")
def world(smoke_data) -> Path:
    return smoke_data


def stage1_cfg(world: Path, out: Path, *extra: str):
    return tiny_config(1, world, out, *extra)


def stage2_cfg(world: Path, out: Path, *extra: str):
    return tiny_config(2, world, out, *extra)


@pytest.fixture(scope="module")
def stage1(world, tmp_path_factory) -> Path:
    """A trained tiny stage-1 run: runs/stage1/best.pt beside where stage 2 runs go."""
    out = tmp_path_factory.mktemp("runs") / "stage1"
    return train(stage1_cfg(world, out))


def losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if "loss" in r}


# ----------------------------------------------------------------------------- configs


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_committed_configs_load_and_use_no_absolute_paths(path):
    cfg = load_config(path)
    assert cfg.stage == (1 if path.stem.startswith("stage1") else 2)
    assert not Path(cfg.data.root).is_absolute() and not Path(cfg.run.out).is_absolute()
    if cfg.stage == 2:
        assert not Path(cfg.stage2.stage1_checkpoint).is_absolute()
        assert (Path(cfg.run.out) / cfg.stage2.stage1_checkpoint).resolve().parent.name.startswith("stage1")


def test_overrides_set_nested_typed_values():
    cfg = load_config(
        CONFIGS / "stage1_smoke.yaml",
        [
            "optim.lr=1e-4",
            "optim.steps=7",
            "autoencoder.encoder.video=true",
            "run.device=cpu",
            "data.preset=null",
            "optim.betas=[0.8, 0.9]",
        ],
    )
    assert cfg.optim.lr == 1e-4 and isinstance(cfg.optim.lr, float) and cfg.optim.steps == 7
    assert cfg.autoencoder.encoder.video is True and cfg.run.device == "cpu" and cfg.data.preset is None
    assert cfg.optim.betas == (0.8, 0.9)


@pytest.mark.parametrize(
    "override,message",
    [
        ("optim.stepz=3", "unknown key(s) ['stepz']"),
        ("train.steps=3", "section 'train' is now called 'optim'"),
        ("optim.steps=many", "optim.steps: expected an integer"),
        ("optim.steps=2.5", "optim.steps: expected an integer"),
        ("autoencoder.mmt.fusion=sum", "fusion"),
        ("stage=3", "stage: 3 is not one of [1, 2]"),
        ("optim.steps", "is not KEY=VALUE"),
        ("optim.lr.value=1", "'lr' is a value, not a section"),
        ("optim.batch_size=0", "optim.batch_size=0 must be > 0"),
        ("diffusion.prediction=v", "do not belong to a stage-1 config"),
    ],
)
def test_bad_overrides_name_the_file_and_key(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(CONFIGS / "stage1_smoke.yaml", [override])
    assert message in str(err.value) and "stage1_smoke.yaml" in str(err.value)


def test_bad_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("stage: 1\noptim: [1, 2]\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*optim: expected a mapping"):
        load_config(bad)


def test_lr_schedule_warms_up_then_decays_to_the_floor():
    f = [lr_factor(s, warmup=10, steps=100, min_ratio=0.1) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0) and f[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:], strict=False)) and f[-1] == pytest.approx(0.1, abs=1e-3)


# ----------------------------------------------------------------------------- runs


def test_stage1_smoke_run_writes_log_figure_and_a_complete_checkpoint(stage1):
    run = stage1.parent
    assert {"best.pt", "last.pt", "log.jsonl", "loss.png"} <= {p.name for p in run.iterdir()}
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == list(range(1, 7))
    assert [r["step"] for r in records if "val_loss" in r] == [3, 6]
    ae, cfg, extra = load_checkpoint(stage1)
    assert bool(ae.normalizer.fitted) and cfg.latent_dim == 8 and extra["step"] in (3, 6)
    last = ckpt.read_checkpoint(run / "last.pt")
    assert {"autoencoder", "autoencoder_ema"} <= set(last["modules"]) and "optimizer" in last["extra"]


def test_stage2_smoke_run_is_self_sufficient(world, stage1, tmp_path):
    """The stage-2 checkpoint alone is enough to sample: the autoencoder travels inside it."""
    import shutil

    from reactdiff_lite.sampling import generate, load_model

    runs = tmp_path / "runs"
    shutil.copytree(stage1.parent, runs / "stage1")
    best = train(stage2_cfg(world, runs / "stage2"))
    records = [json.loads(line) for line in (runs / "stage2" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "val_loss" in r] == [3, 6]
    assert (runs / "stage2" / "latents.pt").exists()
    moved = tmp_path / "elsewhere.pt"
    shutil.copy(best, moved)
    shutil.rmtree(runs)
    model = load_model(moved, "cpu")
    assert model.config.stage == 2 and model.config.autoencoder.latent_dim == 8
    assert model.diffusion.config.denoiser.latent_dim == 8
    person = {"emotion": torch.rand(1, 60, 25), "tdmm": torch.randn(1, 60, 58), "audio": torch.randn(1, 60 * 640) * 0.1}
    out = generate(model, person, k=2, steps=2)
    assert out["emotion"].shape == (1, 2, 60, 25) and out["tdmm"].shape == (1, 2, 60, 58)


# ----------------------------------------------------------------------------- speaker encoder


def stage2_task(world: Path, stage1: Path, run: Path, mode: str, *extra: str):
    """A ``Stage2Task`` of the tiny smoke config, its stage-1 run copied beside it."""
    import shutil

    from reactdiff_lite.distributed import ProcessInfo
    from reactdiff_lite.tasks import Stage2Task

    shutil.copytree(stage1.parent, run.parent / "stage1", dirs_exist_ok=True)
    cfg = stage2_cfg(world, run, f"stage2.speaker_encoder={mode}", *extra)
    run.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    return Stage2Task(cfg, torch.device("cpu"), ProcessInfo())


def test_trainable_speaker_encoder_starts_as_the_frozen_latents(world, stage1, tmp_path):
    """Encoded on the fly from cached log-mel/MFCC, chunk by chunk, the untrained copy gives the
    cached frozen context exactly: training and sampling encode the speaker the same way."""
    frozen = stage2_task(world, stage1, tmp_path / "runs" / "stage2", "frozen")
    trainable = stage2_task(world, stage1, tmp_path / "runs" / "stage2", "trainable")
    for seed in range(3):  # random starts (clip edges, the first window) and online rows
        a, b = (t.batch(torch.Generator().manual_seed(seed), 16) for t in (frozen, trainable))
        assert torch.equal(a["x0"], b["x0"]) and torch.equal(a["mask"], b["mask"]) and torch.equal(a["prev"], b["prev"])
        with torch.no_grad():
            context = trainable.net.context(b)  # (B, S, Dz)
        torch.testing.assert_close(context, a["speaker"], rtol=1e-4, atol=1e-5)
    assert set(trainable.modules(trainable.net)) == {"autoencoder", "diffusion", "speaker_encoder"}
    assert set(frozen.modules(frozen.net)) == {"autoencoder", "diffusion"}


@pytest.mark.parametrize("before,video", [(25, False), (50, True)])
def test_chunked_speaker_context_equals_encoding_whole_clips(before, video):
    """On random people with a short last chunk (T = 130, chunks of 50), the context cut from
    the chunks around each window equals ``window_condition`` on ``encode_latents`` of the
    whole clips, for every start (clip edges included)."""
    from reactdiff_lite.config import AutoencoderConfig, EncoderConfig, MMTConfig
    from reactdiff_lite.latents import encode_chunks, encode_latents, speaker_inputs
    from reactdiff_lite.models.autoencoder import LatentEncoder
    from reactdiff_lite.windows import chunk_context, context_chunks, window_condition

    torch.manual_seed(0)
    encoder = EncoderConfig(dim=16, n_mels=16, video=video, video_channels=4)
    cfg = AutoencoderConfig(encoder=encoder, mmt=MMTConfig(heads=2), latent_dim=6)
    enc = LatentEncoder(cfg).eval()
    N, T, W, after, chunk = 3, 130, 50, 25, 50
    person = {"emotion": torch.rand(N, T, 25), "tdmm": torch.randn(N, T, 58), "audio": torch.randn(N, T * 640) * 0.1}
    if video:
        person["frames"] = torch.randint(0, 256, (N, T, 8, 8), dtype=torch.uint8)
    enc.normalizer.fit(enc.encode(person))
    whole = encode_latents(enc, person, chunk)  # (N, T, Dz)
    inputs = speaker_inputs(enc, person, chunk)
    starts = torch.tensor([0, 1, 24, 25, 49, 50, 51, 63, 79, 80])
    items = torch.arange(len(starts)) % N
    span = before + W + after
    expected, mask, _ = window_condition(
        whole[items], whole[items], starts, W, before, after, torch.zeros(len(starts), dtype=torch.bool)
    )
    chunks = context_chunks(starts, before, span, chunk, T)
    frames = chunks["chunk_index"]
    batch = {k: v[items[:, None, None], frames] for k, v in inputs.items()}  # (B, K, C, …)
    with torch.no_grad():
        z = encode_chunks(enc, batch, chunks["chunk_valid"], chunks["chunk_length"])
    got = chunk_context(z, chunks["chunk_offset"], span)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert torch.equal(got[~mask], torch.zeros_like(got[~mask]))  # outside the clip: zero, as the cache


def test_only_the_trainable_speaker_encoder_can_learn_from_audio(world, stage1, tmp_path):
    """The stage-2 loss reaches the speaker's audio-stream weights only in trainable mode; in
    frozen mode nothing that reads the speaker is trained (no parameter, no gradient)."""
    runs = tmp_path / "runs" / "stage2"
    for mode in ("frozen", "trainable"):
        task = stage2_task(world, stage1, runs, mode, "diffusion.cond_drop_prob=0")
        with torch.no_grad():  # adaLN-Zero starts every block (and the output) at zero: move off it
            for p in task.net.diffusion.parameters():
                p.add_(torch.randn_like(p) * 0.05)
        batch = task.batch(torch.Generator().manual_seed(0), 8)
        loss, _ = task.objective(batch, torch.Generator().manual_seed(1))
        loss.backward()
        assert not any(p.requires_grad or p.grad is not None for p in task.ae.parameters())
        if mode == "frozen":
            assert task.net.speaker is None and set(task.parts(task.net)) == {"diffusion"}
            continue
        audio = task.net.speaker.encoders  # log-mel conv stream and MFCC stream
        for p in [*audio.logmel.parameters(), *audio.mfcc.parameters(), *task.net.speaker.mmt.inter.parameters()]:
            assert p.grad is not None and p.grad.abs().sum() > 0


def test_stage2_trainable_checkpoint_carries_its_speaker_encoder(world, stage1, tmp_path):
    """best.pt holds the trained speaker encoder; load_model rebuilds it and encodes with it."""
    import shutil

    from reactdiff_lite.latents import encode_latents
    from reactdiff_lite.sampling import generate, load_model

    runs = tmp_path / "runs"
    shutil.copytree(stage1.parent, runs / "stage1")
    best = train(stage2_cfg(world, runs / "stage2", "stage2.speaker_encoder=trainable", "optim.lr=1e-2"))
    assert "speaker_encoder" in ckpt.read_checkpoint(best)["modules"]
    last = ckpt.read_checkpoint(runs / "stage2" / "last.pt")
    assert {"speaker_encoder", "speaker_encoder_ema"} <= set(last["modules"])
    model = load_model(best, "cpu")
    assert model.config.stage2.speaker_encoder == "trainable" and not model.speaker_encoder.training
    g = torch.Generator().manual_seed(0)
    person = {"emotion": torch.rand(1, 100, 25, generator=g), "tdmm": torch.randn(1, 100, 58, generator=g)}
    person["audio"] = torch.randn(1, 100 * 640, generator=g) * 0.1
    frozen = encode_latents(model.autoencoder, person, model.encode_chunk)
    assert not torch.allclose(model.encode(person), frozen)  # trained: no longer the frozen latents
    out = generate(model, person, k=2, steps=2)
    assert out["emotion"].shape == (1, 2, 100, 25)


def test_stage2_needs_its_stage1_checkpoint(world, tmp_path):
    with pytest.raises(ckpt.CheckpointError, match=r"stage-1 checkpoint .*stage1/best.pt does not exist"):
        train(stage2_cfg(world, tmp_path / "stage2"))


class Interrupt(Exception):
    pass


def _interrupt_at(monkeypatch, task_cls, call: int) -> None:
    """Make ``task_cls.batch`` raise on its ``call``-th call (1-based): a run killed mid-way."""
    original, calls = task_cls.batch, {"n": 0}

    def batch(self, g, size):
        calls["n"] += 1
        if calls["n"] == call:
            raise Interrupt
        return original(self, g, size)

    monkeypatch.setattr(task_cls, "batch", batch)


@pytest.mark.parametrize("stage", [1, 2, "2-trainable"])
def test_resume_continues_exactly(stage, world, stage1, tmp_path, monkeypatch):
    """Killed after step 4 (checkpoint at 3), resumed: steps 4..6 give the same losses as
    an uninterrupted run, bit for bit, and the same final weights (with a trainable speaker
    encoder: its weights too)."""
    import shutil

    from reactdiff_lite import tasks

    def cfg(run: Path):
        if stage == 1:
            return stage1_cfg(world, run, "autoencoder.mmt.dropout=0.1")
        shutil.copytree(stage1.parent, run.parent / "stage1", dirs_exist_ok=True)
        mode = "trainable" if stage == "2-trainable" else "frozen"
        return stage2_cfg(world, run, "diffusion.denoiser.dropout=0.1", f"stage2.speaker_encoder={mode}")

    full = tmp_path / "full" / "run"
    train(cfg(full))
    cut = tmp_path / "cut" / "run"
    config = cfg(cut)
    task = tasks.Stage1Task if stage == 1 else tasks.Stage2Task
    with monkeypatch.context() as m:
        _interrupt_at(m, task, 5)  # steps 1-4 run, step 5 never starts; last.pt is from step 3
        with pytest.raises(Interrupt):
            train(config)
    assert max(losses(cut)) == 4
    train(config, resume=True)
    assert losses(cut) == losses(full)  # exact equality, including the re-run step 4
    names = {1: ["autoencoder"], 2: ["diffusion"], "2-trainable": ["diffusion", "speaker_encoder"]}[stage]
    for name in names + [f"{n}_ema" for n in names]:
        a, b = (ckpt.read_checkpoint(r / "last.pt")["modules"][name] for r in (full, cut))
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)


def test_resume_without_checkpoint_is_a_clear_error(world, tmp_path):
    with pytest.raises(UserError, match="last.pt does not exist"):
        train(stage1_cfg(world, tmp_path / "run"), resume=True)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(world, tmp_path, monkeypatch):
    original, calls = ReactionAutoencoder.loss, {"n": 0}

    def loss(self, person, generator=None):
        calls["n"] += 1
        value, parts = original(self, person, generator)
        return (value * float("nan") if calls["n"] == 5 else value), parts  # step 5 diverges

    monkeypatch.setattr(ReactionAutoencoder, "loss", loss)
    run = tmp_path / "run"
    cfg = stage1_cfg(world, run, "run.ckpt_every=2", "run.eval_every=100")
    with pytest.raises(TrainingDiverged) as err:
        train(cfg)
    message = str(err.value)
    assert "step 5" in message and "loss is nan" in message and "last.pt (step 4)" in message
    last = ckpt.read_checkpoint(run / "last.pt")
    assert last["extra"]["step"] == 4
    assert all(torch.isfinite(v).all() for v in last["modules"]["autoencoder"].values() if v.is_floating_point())


# ----------------------------------------------------------------------------- DDP


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_cfg(stage: str, world: Path, out: Path, *extra: str):
    """Dropout on; stage 1 for two steps, or stage 2 with a trainable speaker encoder for three
    (adaLN-Zero: the gradient reaches the speaker encoder from the third step on)."""
    if stage == "1":
        return stage1_cfg(world, out, "optim.steps=2", "autoencoder.mmt.dropout=0.1", *extra)
    return stage2_cfg(
        world, out, "optim.steps=3", "stage2.speaker_encoder=trainable", "diffusion.denoiser.dropout=0.1", *extra
    )


def _ddp_worker(rank: int, stage: str, world: str, out: str, port: int) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    train(_ddp_cfg(stage, Path(world), Path(out), "run.device=cpu"))


@pytest.mark.parametrize("stage", ["1", "2-trainable"])
def test_ddp_step_equals_single_process_step(stage, world, stage1, tmp_path):
    """2 gloo processes × 1 micro-batch == 1 process × 2 accumulated micro-batches on the same
    global batch: same losses, same weights after the last optimiser step (dropout on; in
    stage 2 the trained speaker encoder's weights too)."""
    import shutil

    ddp, single = tmp_path / "ddp" / "run", tmp_path / "single" / "run"
    if stage != "1":
        for run in (ddp, single):
            shutil.copytree(stage1.parent, run.parent / "stage1")
    train(_ddp_cfg(stage, world, single, "optim.grad_accum=2"))
    mp.spawn(_ddp_worker, args=(stage, str(world), str(ddp), _free_port()), nprocs=2, join=True)
    logs = [
        {r["step"]: r for r in map(json.loads, (run / "log.jsonl").read_text().splitlines())} for run in (single, ddp)
    ]
    for step in logs[0]:  # the loss and the (averaged, not summed) gradient norm agree
        for key in ("loss", "grad_norm"):
            assert logs[1][step][key] == pytest.approx(logs[0][step][key], rel=1e-5), (step, key)
    names = ["autoencoder"] if stage == "1" else ["diffusion", "speaker_encoder"]
    for name in names:
        a, b = (ckpt.read_checkpoint(r / "last.pt")["modules"][name] for r in (single, ddp))
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6)


def test_train_once_keeps_a_finished_run_written_before_a_config_field_existed(smoke_data, tmp_path):
    """A finished run whose stored config lacks a field added since (here ``autoencoder.causal``,
    at its default) is the same run: ``train_once`` returns its best.pt without retraining;
    a changed value retrains."""
    cfg = stage1_cfg(smoke_data, tmp_path / "s1")
    best = train(cfg)
    last = best.parent / "last.pt"
    payload = torch.load(last, weights_only=True)
    del payload["config"]["autoencoder"]["causal"]
    torch.save(payload, last)
    stamp = last.stat().st_mtime_ns
    assert train_once(cfg) == best and last.stat().st_mtime_ns == stamp
    train_once(stage1_cfg(smoke_data, tmp_path / "s1", "autoencoder.causal=true"))
    assert last.stat().st_mtime_ns != stamp
