"""Two-stage training of ReactDiff (Li et al., arXiv 2505.14151, Sec. 3.2-3.4).

Stage 1 fits the ``ReactionAutoencoder`` on windows of person behaviour (any role):
minimise the reconstruction loss of ``D(E(x))`` (``ReactionAutoencoder.loss``).

Stage 2 freezes it (eval mode: no dropout noise, unlike the official code), encodes every
speaker and listener clip once into normalised latents z = norm(E(x)), and fits the
conditional denoiser with the DDPM objective on random listener windows::

    L = E_{z0, t, ε} || f_θ( sqrt(ᾱ_t) z0 + sqrt(1 − ᾱ_t) ε, t, c ) − target ||²

with the condition c = (speaker latents around the window, the P previous listener
frames). In each draw the speaker is dropped with probability ``cond_drop_prob``
(classifier-free guidance) and the speaker frames after the window are hidden with
probability ``stage2.online_prob``, so one model serves offline and online generation.

Optimisation, the same for both stages:
- AdamW; learning rate with linear warm-up, then cosine decay to ``min_lr_ratio · lr``:
      lr(s) = lr · (s + 1) / warmup                                          s < warmup
      lr(s) = lr · [m + (1 − m) · ½ (1 + cos(π (s − warmup) / (steps − warmup)))]   otherwise
- gradient clipping of the global norm, gradient accumulation, AMP on CUDA (bf16 where
  supported, else fp16 with a GradScaler);
- EMA weights θ̄ ← d θ̄ + (1 − d) θ with d = min(ema, (1 + s) / (10 + s)); validation,
  ``best.pt`` and sampling use θ̄. Selection is on the **val** split, never test.

Randomness is counter-based: the initial weights, the batch of step s and the noise and
dropout of its micro-batch c come from generators seeded with (seed, purpose, s, c). So ``--resume`` continues exactly,
and a DDP step on P processes equals a one-process step with P times the accumulation on
the same global batch (micro-batch c is the same draw wherever it runs).

A run directory holds ``last.pt`` (every ``run.ckpt_every`` steps and at the end; written
atomically), ``best.pt`` (lowest val loss), ``log.jsonl``, ``loss.png`` and, in stage 2,
``latents.pt`` (the cached normalised latents).

Several GPUs: ``torchrun --nproc_per_node=4 -m reactdiff_lite train --config CONFIG``; each
process takes its slice of every global batch (``train.batch_size`` windows), DDP averages
the gradients, and rank 0 writes the logs and checkpoints.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import sys
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm.auto import tqdm

from reactdiff_lite.config import ConfigError, apply_overrides, from_dict, load_yaml, to_dict
from reactdiff_lite.models import checkpoint as ckpt
from reactdiff_lite.models.autoencoder import AutoencoderConfig, ReactionAutoencoder
from reactdiff_lite.models.diffusion import DiffusionConfig, LatentDiffusion
from reactdiff_lite.sampling import derive_seed, encode_latents, model_modalities, take_windows, window_condition
from reactdiff_lite.utils import atomic_torch_save, atomic_write, atomic_write_text, resolve_device


# ----------------------------------------------------------------------------- configs

@dataclass
class DataConfig:
    root: str = "data/synthetic/default"  # REACT-format directory, relative to the working directory
    preset: str | None = "default"        # generate the dyadic world at root when missing; None: never (real data)
    seed: int = 0                         # world seed (with preset)
    frame_size: int = 32                  # video frames are resized to frame_size² (when video is on)
    cache_dir: str | None = None          # the reader's tensor cache (None: its default)
    window: int = 50                      # stage 1: frames per training window (also its encoding chunk)


@dataclass
class OptimConfig:
    steps: int = 2000                     # optimiser steps
    batch_size: int = 32                  # windows per step, over all processes and micro-batches
    grad_accum: int = 1                   # micro-batches per step on each process
    lr: float = 1e-3                      # peak learning rate (AdamW)
    min_lr_ratio: float = 0.05            # cosine decay ends at min_lr_ratio · lr
    warmup: int = 100                     # linear warm-up steps
    weight_decay: float = 0.01            # AdamW decoupled weight decay
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW moment decays
    grad_clip: float = 1.0                # max global gradient norm; 0 = off
    ema: float = 0.999                    # EMA decay of the weights used for val, best.pt and sampling
    amp: bool = True                      # autocast on CUDA (bf16 where supported, else fp16); ignored on CPU


@dataclass
class RunConfig:
    out: str = "runs/stage1"              # run directory, relative to the working directory
    seed: int = 0                         # every training draw derives from it
    device: str = "auto"                  # "auto", "cpu", "cuda", "cuda:1"; under torchrun: cuda:LOCAL_RANK
    eval_every: int = 200                 # val loss of the EMA weights (and best.pt) every this many steps
    ckpt_every: int = 200                 # last.pt every this many steps (and at the end)
    log_every: int = 10                   # log.jsonl line every this many steps
    val_windows: int = 512                # at most this many val windows (evenly spaced, fixed)
    val_batch: int = 128                  # val windows per forward pass
    progress: bool = True                 # tqdm progress bar


@dataclass
class Stage2Config:
    stage1_checkpoint: str = "../stage1/best.pt"  # stage-1 checkpoint, relative to run.out (or absolute, by override)
    online_prob: float = 0.5              # P(hide the speaker frames after the window) per training window
    first_window_prob: float = 0.1        # P(a training window starts at frame 0, with no past), else uniform
    encode_chunk: int = 0                 # frames per speaker-encoding chunk; 0 = the stage-1 window


@dataclass
class SampleConfig:
    k: int = 10                           # reactions per speaker
    steps: int = 20                       # DDIM steps
    eta: float = 0.0                      # DDIM η (0 deterministic given x_T)
    guidance: float = 1.0                 # classifier-free guidance scale s (1 = conditional only)
    sampler: Literal["ddim", "ddpm"] = "ddim"
    spacing: Literal["leading", "trailing", "linspace"] = "trailing"
    binarize_au: bool = False             # True: AU probabilities -> 0/1 occurrences (p > 0.5), as in the data
    batch_size: int = 256                 # sequences denoised together


@dataclass
class TrainConfig:
    stage: Literal[1, 2] = 1              # 1: autoencoder, 2: latent diffusion
    data: DataConfig = field(default_factory=DataConfig)
    train: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)  # stage 1 (stage 2: from its checkpoint)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)        # stage 2
    stage2: Stage2Config = field(default_factory=Stage2Config)                 # stage 2
    sample: SampleConfig = field(default_factory=SampleConfig)                 # stage 2: sampling defaults


STAGE_SECTIONS = {1: {"stage", "data", "train", "run", "autoencoder"},
                  2: {"stage", "data", "train", "run", "diffusion", "stage2", "sample"}}


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a YAML config, apply ``KEY=VALUE`` overrides and check it.

    Errors (``ConfigError``) name the file and the key: unknown keys, wrong types, a section
    of the other stage (stage 2 reads the autoencoder from its stage-1 checkpoint).
    """
    data = apply_overrides(load_yaml(path), list(overrides), str(path))
    cfg = from_dict(TrainConfig, data, f"{path}:")
    wrong = sorted(set(data) - STAGE_SECTIONS[cfg.stage])
    if wrong:
        raise ConfigError(f"{path}: section(s) {wrong} do not belong to a stage-{cfg.stage} config")
    check_config(cfg, str(path))
    return cfg


def check_config(cfg: TrainConfig, where: str = "config") -> None:
    """Value checks that types alone do not catch."""
    t = cfg.train
    problems = [f"train.steps={t.steps} must be > 0" if t.steps <= 0 else "",
                f"train.batch_size={t.batch_size} must be > 0" if t.batch_size <= 0 else "",
                f"train.grad_accum={t.grad_accum} must be > 0" if t.grad_accum <= 0 else "",
                f"train.lr={t.lr} must be > 0" if t.lr <= 0 else "",
                f"train.ema={t.ema} must be in [0, 1)" if not 0 <= t.ema < 1 else "",
                f"stage2.online_prob={cfg.stage2.online_prob} must be in [0, 1]"
                if not 0 <= cfg.stage2.online_prob <= 1 else "",
                f"run.eval_every/ckpt_every/log_every must be > 0"
                if min(cfg.run.eval_every, cfg.run.ckpt_every, cfg.run.log_every) <= 0 else ""]
    problems = [p for p in problems if p]
    if problems:
        raise ConfigError(f"{where}: " + "; ".join(problems))


# ----------------------------------------------------------------------------- pieces

INIT, BATCH, NOISE, DROPOUT, VAL = range(5)  # purposes of the counter-based seeds


class TrainingDiverged(RuntimeError):
    """The loss (or gradient norm) became NaN or infinite; the last good checkpoint is kept."""


def lr_factor(step: int, warmup: int, steps: int, min_ratio: float) -> float:
    """Learning-rate multiplier of optimiser step ``step`` (0-based): warm-up, then cosine."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class EMA:
    """Exponential moving average of a module's parameters (buffers are copied)."""

    def __init__(self, module: nn.Module, decay: float):
        self.decay = decay
        self.module = copy.deepcopy(module).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, module: nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))  # short warm-up of the average
        ema, live = list(self.module.parameters()), list(module.parameters())
        torch._foreach_lerp_(ema, [p.detach() for p in live], 1 - d)  # θ̄ ← d θ̄ + (1 − d) θ
        for b_ema, b in zip(self.module.buffers(), module.buffers()):
            b_ema.copy_(b)


@dataclass
class Dist:
    """This process's place in a torchrun/DDP job (world 1 without one)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @classmethod
    def setup(cls, device: str) -> "Dist":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls()
        rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        owns = not dist.is_initialized()
        if owns:
            cuda = torch.cuda.is_available() and device != "cpu"
            dist.init_process_group("nccl" if cuda else "gloo")
        return cls(rank, world, local, owns)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def mean(self, x: Tensor) -> Tensor:
        if self.world > 1:
            x = x.clone()
            dist.all_reduce(x)
            x /= self.world
        return x


def _slice(batch: dict[str, Tensor], start: int, stop: int, device: torch.device) -> dict[str, Tensor]:
    return {k: v[start:stop].to(device, non_blocking=True) for k, v in batch.items()}


# ----------------------------------------------------------------------------- data

def _ensure_data(cfg: TrainConfig, dist_: Dist) -> Path:
    root = Path(cfg.data.root)
    if cfg.data.preset is not None:
        from reactdiff_lite.data.synthetic import ensure_dataset
        if dist_.main:
            ensure_dataset(root, cfg.data.preset, cfg.data.seed)
        dist_.barrier()
    if not root.is_dir():
        raise FileNotFoundError(f"data.root {root} does not exist (set data.preset to generate the dyadic world)")
    return root


def _load(cfg: TrainConfig, split: str, modalities: tuple[str, ...]):
    from reactdiff_lite.data.react import load_split
    return load_split(cfg.data.root, split, frame_size=cfg.data.frame_size, cache_dir=cfg.data.cache_dir,
                      modalities=modalities)


def _val_starts(n_items: int, frames: int, window: int, limit: int) -> tuple[Tensor, Tensor]:
    """Fixed val windows: every aligned window of every item, evenly thinned to ``limit``."""
    per = max(1, frames // window)
    items = torch.arange(n_items).repeat_interleave(per)
    starts = (torch.arange(per) * window).repeat(n_items)
    keep = torch.linspace(0, len(items) - 1, min(limit, len(items))).round().long()
    return items[keep], starts[keep]


# ----------------------------------------------------------------------------- stage tasks

class Objective(nn.Module):
    """``forward(batch, generator) -> (loss, logs)``: the thing DDP wraps."""

    def __init__(self, net: nn.Module, fn: Callable[[nn.Module, dict, torch.Generator], tuple[Tensor, dict]]):
        super().__init__()
        self.net, self.fn = net, fn

    def forward(self, batch: dict[str, Tensor], generator: torch.Generator) -> tuple[Tensor, dict]:
        return self.fn(self.net, batch, generator)


class Stage1Task:
    """Autoencoder on random windows of every person clip of the split (speakers and listeners)."""

    name = "autoencoder"

    def __init__(self, cfg: TrainConfig, device: torch.device, dist_: Dist):
        self.cfg, self.device = cfg, device
        self.net = ReactionAutoencoder(cfg.autoencoder)
        mods = model_modalities(self.net)
        self.train, self.val = _load(cfg, "train", mods), _load(cfg, "val", mods)
        self.window = cfg.data.window
        if self.window > self.train.n_frames:
            raise ConfigError(f"data.window={self.window} is longer than the clips ({self.train.n_frames} frames)")
        if "tdmm" in mods:
            self.net.fit_tdmm_statistics(self.train.tdmm)
        self.net.to(device)
        self.objective = Objective(self.net, lambda net, b, g: net.loss(b, g))
        self.val_items, self.val_starts = _val_starts(len(self.val.clip_ids), self.val.n_frames, self.window,
                                                      cfg.run.val_windows)

    def batch(self, g: torch.Generator, size: int) -> dict[str, Tensor]:
        clips = torch.randint(0, len(self.train.clip_ids), (size,), generator=g)
        starts = torch.randint(0, self.train.n_frames - self.window + 1, (size,), generator=g)
        return take_windows(self.train, clips, starts, self.window)

    @torch.no_grad()
    def val_loss(self, net: nn.Module) -> float:
        g = torch.Generator(self.device).manual_seed(derive_seed(self.cfg.run.seed, VAL))
        total, n, step = 0.0, 0, self.cfg.run.val_batch
        for i in range(0, len(self.val_items), step):
            b = take_windows(self.val, self.val_items[i:i + step], self.val_starts[i:i + step], self.window)
            loss, _ = net.loss({k: v.to(self.device) for k, v in b.items()}, g)
            total, n = total + float(loss) * len(b["emotion"]), n + len(b["emotion"])
        return total / n

    def modules(self, net: nn.Module) -> dict[str, nn.Module]:
        return {"autoencoder": net}

    def config(self) -> dict[str, Any]:
        return {"autoencoder": self.cfg.autoencoder.to_dict(), "train": to_dict(self.cfg)}

    def finish(self, best: Path, dist_: Dist) -> None:
        """Fit the latent normaliser of the selected model on the training latents."""
        if not dist_.main or not best.exists():
            return
        net = ReactionAutoencoder(self.cfg.autoencoder)
        payload = ckpt.read_checkpoint(best)
        ckpt.load_modules(best, {"autoencoder": net}, payload)
        net.to(self.device)
        net.normalizer.fit(encode_latents(net, self.train, self.window, normalize=False, device=self.device))
        ckpt.save_checkpoint(best, {"autoencoder": net}, payload["config"], **payload["extra"])


class Stage2Task:
    """Latent diffusion on cached normalised latents of the frozen autoencoder."""

    name = "diffusion"

    def __init__(self, cfg: TrainConfig, device: torch.device, dist_: Dist):
        self.cfg, self.device = cfg, device
        stage1 = Path(cfg.run.out) / cfg.stage2.stage1_checkpoint
        if not stage1.is_file():
            raise FileNotFoundError(f"stage-1 checkpoint {stage1} does not exist (stage2.stage1_checkpoint="
                                    f"{cfg.stage2.stage1_checkpoint!r} is relative to run.out={cfg.run.out!r})")
        payload = ckpt.read_checkpoint(stage1)
        ae_cfg = AutoencoderConfig.from_dict(payload["config"]["autoencoder"])
        stage1_window = payload["config"].get("train", {}).get("data", {}).get("window", cfg.data.window)
        self.ae = ReactionAutoencoder(ae_cfg)
        ckpt.load_modules(stage1, {"autoencoder": self.ae}, payload)
        self.ae.to(device).eval().requires_grad_(False)
        # Resolve what stage 2 takes from stage 1; the saved config records the resolved values.
        cfg.autoencoder = ae_cfg
        cfg.diffusion.denoiser.latent_dim = ae_cfg.latent_dim
        cfg.stage2.encode_chunk = cfg.stage2.encode_chunk or stage1_window
        den = cfg.diffusion.denoiser
        if den.window % cfg.stage2.encode_chunk:
            raise ConfigError(f"diffusion.denoiser.window={den.window} must be a multiple of the encoding chunk "
                              f"{cfg.stage2.encode_chunk} (stage-1 window), or online mode would see the future")
        self.window, self.before, self.after = den.window, den.context_before, den.context_after
        self.latents = self._latents(stage1, dist_)
        self.net = LatentDiffusion(cfg.diffusion).to(device)
        self.objective = Objective(self.net, self._loss)
        N, T = self.latents["val_speaker"].shape[:2]
        self.val_items, self.val_starts = _val_starts(N, T, self.window, cfg.run.val_windows)

    def _latents(self, stage1: Path, dist_: Dist) -> dict[str, Tensor]:
        """Normalised speaker/listener latents of train and val, computed once and cached."""
        chunk, root = self.cfg.stage2.encode_chunk, Path(self.cfg.data.root)
        files = [root / name for name in ("train.csv", "val.csv", "manifest.json") if (root / name).exists()]
        stamps = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files]  # regenerated data -> new key
        key = f"{hashlib.sha256(stage1.read_bytes()).hexdigest()[:16]}-{chunk}-{root.resolve()}-{stamps}"
        path = Path(self.cfg.run.out) / "latents.pt"
        if dist_.main and not (path.exists() and torch.load(path, weights_only=True).get("key") == key):
            mods = model_modalities(self.ae)
            splits = {"train": _load(self.cfg, "train", mods), "val": _load(self.cfg, "val", mods)}
            if not bool(self.ae.normalizer.fitted):  # a stage-1 run stopped before its end
                self.ae.normalizer.fit(encode_latents(self.ae, splits["train"], chunk, normalize=False,
                                                      device=self.device))
            out: dict[str, Any] = {"key": key, "normalizer": self.ae.normalizer.state_dict()}
            for name, data in splits.items():
                z = encode_latents(self.ae, data, chunk, device=self.device)  # (clips, T, Dz), each clip once
                out[f"{name}_speaker"], out[f"{name}_listener"] = z[data.speaker_index], z[data.listener_index]
            atomic_torch_save(out, path)
        dist_.barrier()
        cached = torch.load(path, weights_only=True)
        self.ae.normalizer.load_state_dict(cached["normalizer"])
        return cached

    def _loss(self, net: LatentDiffusion, b: dict[str, Tensor], g: torch.Generator) -> tuple[Tensor, dict]:
        loss = net.loss(b["x0"], b["speaker"], b["mask"], b["prev"], generator=g)
        return loss, {"mse": float(loss.detach())}

    def _windows(self, split: str, items: Tensor, starts: Tensor, online: Tensor) -> dict[str, Tensor]:
        spk, lst = self.latents[f"{split}_speaker"][items], self.latents[f"{split}_listener"][items]  # (B, T, Dz)
        context, mask, prev = window_condition(spk, lst, starts, self.window, self.before, self.after, online)
        idx = starts[:, None] + torch.arange(self.window)[None]  # (B, W)
        x0 = torch.gather(lst, 1, idx[..., None].expand(-1, -1, lst.shape[-1]))  # (B, W, Dz)
        return {"x0": x0, "speaker": context, "mask": mask, "prev": prev}

    def batch(self, g: torch.Generator, size: int) -> dict[str, Tensor]:
        N, T = self.latents["train_speaker"].shape[:2]
        items = torch.randint(0, N, (size,), generator=g)
        starts = torch.randint(0, T - self.window + 1, (size,), generator=g)
        starts = torch.where(torch.rand(size, generator=g) < self.cfg.stage2.first_window_prob, 0, starts)
        online = torch.rand(size, generator=g) < self.cfg.stage2.online_prob
        return self._windows("train", items, starts, online)

    @torch.no_grad()
    def val_loss(self, net: nn.Module) -> float:
        g = torch.Generator(self.device).manual_seed(derive_seed(self.cfg.run.seed, VAL))
        total, n = 0.0, 0
        for i in range(0, len(self.val_items), self.cfg.run.val_batch):
            items, starts = self.val_items[i:i + self.cfg.run.val_batch], self.val_starts[i:i + self.cfg.run.val_batch]
            b = self._windows("val", items, starts, torch.zeros(len(items), dtype=torch.bool))
            b = {k: v.to(self.device) for k, v in b.items()}
            loss = net.loss(b["x0"], b["speaker"], b["mask"], b["prev"], generator=g)
            total, n = total + float(loss) * len(items), n + len(items)
        return total / n

    def modules(self, net: nn.Module) -> dict[str, nn.Module]:
        return {"autoencoder": self.ae, "diffusion": net}

    def config(self) -> dict[str, Any]:
        return {"autoencoder": self.cfg.autoencoder.to_dict(), "diffusion": self.cfg.diffusion.to_dict(),
                "train": to_dict(self.cfg)}

    def finish(self, best: Path, dist_: Dist) -> None:
        pass


def load_stage2_checkpoint(path: str | Path) -> tuple[ReactionAutoencoder, LatentDiffusion, TrainConfig]:
    """(autoencoder, diffusion with the EMA weights, config) from a stage-2 ``best.pt``/``last.pt``."""
    payload = ckpt.read_checkpoint(path)
    try:
        cfg = from_dict(TrainConfig, payload["config"]["train"], f"checkpoint {path}:")
    except KeyError as err:
        raise ckpt.CheckpointError(f"checkpoint {path} holds no training config: not written by reactdiff_lite.train") from err
    if cfg.stage != 2:
        raise ckpt.CheckpointError(f"checkpoint {path} is a stage-{cfg.stage} checkpoint; sampling needs stage 2")
    ae, diffusion = ReactionAutoencoder(cfg.autoencoder), LatentDiffusion(cfg.diffusion)
    weights = "diffusion_ema" if "diffusion_ema" in payload["modules"] else "diffusion"
    ckpt.load_modules(path, {"autoencoder": ae}, payload)
    ckpt.load_modules(path, {weights: diffusion}, payload)
    return ae.eval(), diffusion.eval(), cfg


# ----------------------------------------------------------------------------- the loop

def _amp(device: torch.device, enabled: bool) -> tuple[Any, torch.amp.GradScaler | None]:
    """(autocast context factory, GradScaler or None): bf16 where supported, else fp16 + scaler."""
    if device.type != "cuda" or not enabled:
        return nullcontext, None
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return (lambda: torch.autocast("cuda", dtype=dtype)), scaler


def _read_log(path: Path, upto: int) -> list[dict]:
    """Log records of steps ≤ ``upto`` (a resumed run rewrites what came after its checkpoint)."""
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if r["step"] <= upto]


def plot_losses(records: list[dict], path: str | Path, title: str = "") -> Path:
    """Training loss (and val loss) against step from log records, saved as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    val = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
    if train:
        ax.plot(*zip(*train), lw=1, label="train (batch)")
    if val:
        ax.plot(*zip(*val), "o-", ms=3, label="val (EMA weights)")
    ax.set(xlabel="step", ylabel="loss", title=title, yscale="log")
    ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return Path(path)


def train(cfg: TrainConfig, resume: bool = False) -> Path:
    """Train one stage as ``cfg`` says; returns the path of ``best.pt`` (selected on val).

    Args:
        cfg: a config from ``load_config``. A stage-2 config finds the stage-1 checkpoint at
            ``run.out / stage2.stage1_checkpoint``.
        resume: continue from ``run.out/last.pt``: weights, EMA, optimiser, schedule and step;
            the losses then equal those of an uninterrupted run (CPU, same config).
    Raises:
        TrainingDiverged: a NaN/inf loss; ``last.pt`` stays the last good checkpoint.
    """
    cfg = copy.deepcopy(cfg)
    check_config(cfg)
    dist_ = Dist.setup(cfg.run.device)
    try:
        return _train(cfg, resume, dist_)
    finally:
        if dist_.owns_group:
            dist.destroy_process_group()


def _train(cfg: TrainConfig, resume: bool, dist_: Dist) -> Path:
    device = resolve_device(f"cuda:{dist_.local_rank}" if dist_.world > 1 and torch.cuda.is_available()
                            and cfg.run.device != "cpu" else cfg.run.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL collectives run on the current device
    run = Path(cfg.run.out)
    run.mkdir(parents=True, exist_ok=True)
    _ensure_data(cfg, dist_)
    cuda_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(derive_seed(cfg.run.seed, INIT))  # the initial weights
        task = Stage1Task(cfg, device, dist_) if cfg.stage == 1 else Stage2Task(cfg, device, dist_)
    o = cfg.train
    chunks = dist_.world * o.grad_accum
    if o.batch_size % chunks:
        raise ConfigError(f"train.batch_size={o.batch_size} must be divisible by processes × grad_accum = {chunks}")
    micro = o.batch_size // chunks

    net = task.net
    ema = EMA(net, o.ema)
    optimizer = torch.optim.AdamW(net.parameters(), lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, o.warmup, o.steps, o.min_lr_ratio))
    autocast, scaler = _amp(device, o.amp)
    step, best_val, last_path, best_path = 0, math.inf, run / "last.pt", run / "best.pt"
    if resume:
        if not last_path.exists():
            raise FileNotFoundError(f"--resume: {last_path} does not exist (no checkpoint to continue from)")
        payload = ckpt.read_checkpoint(last_path, device)
        ckpt.load_modules(last_path, {task.name: net, f"{task.name}_ema": ema.module}, payload)
        extra = payload["extra"]
        optimizer.load_state_dict(extra["optimizer"])
        schedule.load_state_dict(extra["schedule"])
        if scaler is not None and extra.get("scaler"):
            scaler.load_state_dict(extra["scaler"])
        step, best_val = int(extra["step"]), float(extra["best_val"])
    objective = task.objective
    if dist_.world > 1:
        objective = nn.parallel.DistributedDataParallel(
            objective, device_ids=[device.index] if device.type == "cuda" else None)

    log_path = run / "log.jsonl"
    records = _read_log(log_path, step) if resume else []
    if dist_.main:
        atomic_write_text(log_path, "".join(json.dumps(r) + "\n" for r in records))
    log = open(log_path, "a") if dist_.main else None

    def save(path: Path, live: bool) -> None:
        modules = task.modules(ema.module)
        extra: dict[str, Any] = {"step": step, "best_val": best_val, "stage": cfg.stage}
        if live:  # last.pt: everything needed to continue
            modules = {**modules, task.name: net, f"{task.name}_ema": ema.module}
            extra |= {"optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                      "scaler": scaler.state_dict() if scaler is not None else {}}
        ckpt.save_checkpoint(path, modules, task.config(), **extra)

    bar = tqdm(total=o.steps, initial=step, desc=f"stage {cfg.stage}", disable=not (cfg.run.progress and dist_.main),
               dynamic_ncols=True)
    net.train()
    while step < o.steps:
        batch = task.batch(torch.Generator().manual_seed(derive_seed(cfg.run.seed, BATCH, step)), o.batch_size)
        optimizer.zero_grad(set_to_none=True)
        losses, logs = [], {}
        for a in range(o.grad_accum):
            c = dist_.rank * o.grad_accum + a  # this micro-batch's place in the global batch
            part = _slice(batch, c * micro, (c + 1) * micro, device)
            g = torch.Generator(device).manual_seed(derive_seed(cfg.run.seed, NOISE, step, c))
            sync = a == o.grad_accum - 1 or dist_.world == 1
            with (nullcontext() if sync else objective.no_sync()), \
                    torch.random.fork_rng(devices=cuda_devices):
                torch.manual_seed(derive_seed(cfg.run.seed, DROPOUT, step, c))  # dropout, counter-based too
                with autocast():
                    loss, parts = objective(part, g)
                scaled = loss / o.grad_accum
                (scaler.scale(scaled) if scaler is not None else scaled).backward()
            losses.append(loss.detach().float())
            for k, v in parts.items():
                logs[k] = logs.get(k, 0.0) + v / o.grad_accum
        loss = dist_.mean(torch.stack(losses).mean())
        if scaler is not None:
            scaler.unscale_(optimizer)
        grad_norm = nn.utils.clip_grad_norm_(net.parameters(), o.grad_clip if o.grad_clip > 0 else math.inf)
        if not torch.isfinite(loss) or (scaler is None and not torch.isfinite(grad_norm)):
            bar.close()
            what = "loss" if not torch.isfinite(loss) else "gradient norm"
            kept = (f"the last good checkpoint {last_path} (step {torch.load(last_path, weights_only=True)['extra']['step']})"
                    if last_path.exists() else "no checkpoint (none was written yet)")
            raise TrainingDiverged(f"stage-{cfg.stage} training stopped at step {step + 1}: the {what} is "
                                   f"{float(loss if what == 'loss' else grad_norm)}. Kept {kept}. "
                                   f"Try a lower train.lr (now {o.lr}) or check the data.")
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        schedule.step()
        ema.update(net, step)
        step += 1
        bar.update()
        bar.set_postfix(loss=f"{float(loss):.4f}")
        record: dict[str, Any] = {}
        if step % cfg.run.log_every == 0 or step == o.steps:
            record = {"step": step, "loss": float(loss), "lr": schedule.get_last_lr()[0],
                      "grad_norm": float(grad_norm), **{k: round(v, 6) for k, v in logs.items()}}
        if step % cfg.run.eval_every == 0 or step == o.steps:
            val = task.val_loss(ema.module)
            record = {**record, "step": step, "val_loss": val, "best": val < best_val}
            if val < best_val:
                best_val = val
                if dist_.main:
                    save(best_path, live=False)
            net.train()
        if record and dist_.main:
            log.write(json.dumps(record) + "\n")
            log.flush()
            records.append(record)
        if (step % cfg.run.ckpt_every == 0 or step == o.steps) and dist_.main:
            save(last_path, live=True)
    bar.close()
    if dist_.main:
        log.close()
        task.finish(best_path, dist_)
        plot_losses(records, run / "loss.png", f"stage {cfg.stage}: {task.name}")
    dist_.barrier()
    return best_path


# ----------------------------------------------------------------------------- CLI

def cli_train(args) -> int:
    """``python -m reactdiff_lite train --config CONFIG [--set key=value ...] [--resume]``."""
    try:
        cfg = load_config(args.config, args.set)
        best = train(cfg, resume=args.resume)
    except (ConfigError, TrainingDiverged, FileNotFoundError, ckpt.CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"stage {cfg.stage} done: best (val-selected) checkpoint {best}")
    return 0
