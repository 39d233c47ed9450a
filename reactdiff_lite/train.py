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
- AdamW with nanoGPT-style parameter groups (weight decay on matrices only; norms, biases,
  embeddings and learned tokens are not decayed); learning rate with linear warm-up, then
  cosine decay to ``min_lr_ratio · lr``:
      lr(s) = lr · (s + 1) / warmup                                          s < warmup
      lr(s) = lr · [m + (1 − m) · ½ (1 + cos(π (s − warmup) / (steps − warmup)))]   otherwise
- gradient clipping of the global norm, gradient accumulation, AMP on CUDA (bf16 where
  supported, else fp16 with a GradScaler);
- EMA weights θ̄ ← d θ̄ + (1 − d) θ with d = min(ema, (1 + s) / (10 + s)); validation,
  ``best.pt`` and sampling use θ̄. Selection is on the **val** split, never test.

Randomness is counter-based: the initial weights, the batch of step s and the noise and
dropout of its micro-batch c come from generators seeded with (seed, ``utils.Seed`` purpose,
s, c). So ``--resume`` continues exactly, and a DDP step on P processes equals a one-process
step with P times the accumulation on the same global batch (micro-batch c is the same
draw wherever it runs).

What each stage trains on lives in ``reactdiff_lite.tasks``; this module is the loop:
restore, one optimisation step, evaluate-and-save. A run directory holds ``last.pt``
(every ``run.ckpt_every`` steps and at the end; written atomically), ``best.pt`` (lowest
val loss), ``log.jsonl``, ``loss.png`` and, in stage 2, ``latents.pt`` (the cached
normalised latents).

Several GPUs: ``torchrun --nproc_per_node=4 -m reactdiff_lite train --config CONFIG``; each
process takes its slice of every global batch (``optim.batch_size`` windows), DDP averages
the gradients, and rank 0 writes the logs and checkpoints.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from reactdiff_lite.config import (
    ConfigError,
    OptimConfig,
    TrainConfig,
    check_config,
    from_dict,
    load_config,
    stage_dict,
)
from reactdiff_lite.distributed import ProcessInfo
from reactdiff_lite.models import checkpoint as ckpt
from reactdiff_lite.plots import plot_losses
from reactdiff_lite.tasks import StageTask, make_task, resolve_stage2
from reactdiff_lite.utils import Seed, UserError, atomic_write_text, derive_seed, resolve_device

__all__ = ["train", "load_config", "TrainingDiverged", "lr_factor", "EMA", "parameter_groups", "read_log", "cli_train"]


class TrainingDiverged(UserError):
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
        for b_ema, b in zip(self.module.buffers(), module.buffers(), strict=True):
            b_ema.copy_(b)


def parameter_groups(net: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups as in nanoGPT: decay the weight matrices (and conv kernels) only.

    Norm weights, biases, embeddings and learned tokens (1-D parameters such as the
    denoiser's null token) are not decayed: shrinking them towards 0 has no regularising
    meaning and distorts what they represent.
    """
    embeddings = {id(m.weight) for m in net.modules() if isinstance(m, nn.Embedding)}
    params = [p for p in net.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2 and id(p) not in embeddings]
    keep = [p for p in params if p.ndim < 2 or id(p) in embeddings]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": keep, "weight_decay": 0.0}]


def _amp(device: torch.device, enabled: bool) -> tuple[Any, torch.amp.GradScaler | None]:
    """(autocast context factory, GradScaler or None): bf16 where supported, else fp16 + scaler."""
    if device.type != "cuda" or not enabled:
        return nullcontext, None
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return (lambda: torch.autocast("cuda", dtype=dtype)), scaler


def read_log(path: str | Path, upto: int | None = None) -> list[dict]:
    """The records of a run's ``log.jsonl``, those of steps ≤ ``upto`` when given (a resumed
    run rewrites what came after its checkpoint)."""
    path = Path(path)
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if upto is None or r["step"] <= upto]


def _ensure_data(cfg: TrainConfig, proc: ProcessInfo) -> None:
    root = Path(cfg.data.root)
    if cfg.data.preset is not None:
        from reactdiff_lite.data.synthetic import ensure_dataset

        if proc.main:
            ensure_dataset(root, cfg.data.preset, cfg.data.seed)
        proc.barrier()
    if not root.is_dir():
        raise ConfigError(
            f"data.root {root} does not exist: point data.root at a REACT-format folder, "
            "or set data.preset to generate the dyadic world there"
        )


# ----------------------------------------------------------------------------- the loop


@dataclass
class Trainer:
    """The state of one training run: the task, its optimiser and EMA, and where it stands."""

    cfg: TrainConfig
    task: StageTask
    proc: ProcessInfo
    device: torch.device
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    ema: EMA
    scaler: torch.amp.GradScaler | None
    autocast: Any
    step: int = 0
    best_val: float = math.inf

    @property
    def run(self) -> Path:
        return Path(self.cfg.run.out)

    @property
    def cuda_devices(self) -> list[int]:
        return [self.device.index or 0] if self.device.type == "cuda" else []

    def save(self, path: Path, live: bool) -> None:
        """``best.pt`` (EMA weights) or, with ``live``, ``last.pt``: everything needed to continue."""
        modules = self.task.modules(self.ema.module)
        extra: dict[str, Any] = {"step": self.step, "best_val": self.best_val, "stage": self.cfg.stage}
        if live:
            modules = {**modules, **self._live_parts()}
            extra |= {
                "optimizer": self.optimizer.state_dict(),
                "schedule": self.schedule.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler is not None else {},
            }
        ckpt.save_checkpoint(path, modules, self.task.config(), **extra)

    def _live_parts(self) -> dict[str, nn.Module]:
        """Each trained part under its name (live weights) and ``<name>_ema`` (the average)."""
        ema = {f"{k}_ema": m for k, m in self.task.parts(self.ema.module).items()}
        return {**self.task.parts(self.task.net), **ema}

    def restore(self) -> None:
        """Continue from ``last.pt``: weights, EMA, optimiser, schedule, scaler and step."""
        last = self.run / "last.pt"
        if not last.exists():
            raise UserError(f"--resume: {last} does not exist (no checkpoint to continue from); drop --resume")
        payload = ckpt.read_checkpoint(last, self.device)
        ckpt.load_modules(last, self._live_parts(), payload)
        extra = payload["extra"]
        self.optimizer.load_state_dict(extra["optimizer"])
        self.schedule.load_state_dict(extra["schedule"])
        if self.scaler is not None and extra.get("scaler"):
            self.scaler.load_state_dict(extra["scaler"])
        self.step, self.best_val = int(extra["step"]), float(extra["best_val"])

    def optimisation_step(self, objective: nn.Module) -> dict[str, Any]:
        """One optimiser step over the global batch of this step; returns its log values."""
        optim, proc, seed = self.cfg.optim, self.proc, self.cfg.run.seed
        micro = optim.batch_size // (proc.world * optim.grad_accum)
        batch = self.task.batch(
            torch.Generator().manual_seed(derive_seed(seed, Seed.BATCH, self.step)), optim.batch_size
        )
        self.optimizer.zero_grad(set_to_none=True)
        losses, logs = [], {}
        for a in range(optim.grad_accum):
            c = proc.rank * optim.grad_accum + a  # this micro-batch's place in the global batch
            part = {k: v[c * micro : (c + 1) * micro].to(self.device, non_blocking=True) for k, v in batch.items()}
            g = torch.Generator(self.device).manual_seed(derive_seed(seed, Seed.NOISE, self.step, c))
            sync = a == optim.grad_accum - 1 or proc.world == 1
            with nullcontext() if sync else objective.no_sync(), torch.random.fork_rng(devices=self.cuda_devices):
                torch.manual_seed(derive_seed(seed, Seed.DROPOUT, self.step, c))  # dropout, counter-based too
                with self.autocast():
                    loss, parts = objective(part, g)
                scaled = loss / optim.grad_accum
                (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
            losses.append(loss.detach().float())
            for k, v in parts.items():
                logs[k] = logs.get(k, 0.0) + v / optim.grad_accum
        loss = proc.mean(torch.stack(losses).mean())
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        clip = optim.grad_clip if optim.grad_clip > 0 else math.inf
        grad_norm = nn.utils.clip_grad_norm_(self.task.net.parameters(), clip)
        self._check_finite(loss, grad_norm)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.schedule.step()
        self.ema.update(self.task.net, self.step)
        self.step += 1
        return {
            "loss": float(loss),
            "lr": self.schedule.get_last_lr()[0],
            "grad_norm": float(grad_norm),
            **{k: round(v, 6) for k, v in logs.items()},
        }

    def _check_finite(self, loss: Tensor, grad_norm: Tensor) -> None:
        if torch.isfinite(loss) and (self.scaler is not None or torch.isfinite(grad_norm)):
            return
        last = self.run / "last.pt"
        what, value = ("loss", loss) if not torch.isfinite(loss) else ("gradient norm", grad_norm)
        kept = (
            f"the last good checkpoint {last} (step {torch.load(last, weights_only=True)['extra']['step']})"
            if last.exists()
            else "no checkpoint (none was written yet)"
        )
        raise TrainingDiverged(
            f"stage-{self.cfg.stage} training stopped at step {self.step + 1}: the {what} is "
            f"{float(value)}. Kept {kept}. Try a lower optim.lr (now {self.cfg.optim.lr}) "
            "or check the data."
        )

    def evaluate_and_save(self) -> dict[str, Any]:
        """Val loss of the EMA weights; a new best is saved as ``best.pt``."""
        val = self.task.val_loss(self.ema.module)
        improved = val < self.best_val
        if improved:
            self.best_val = val
            if self.proc.main:
                self.save(self.run / "best.pt", live=False)
        self.task.net.train()
        return {"val_loss": val, "best": improved}


def _build(cfg: TrainConfig, proc: ProcessInfo) -> Trainer:
    """Device, data, task (initial weights from the run seed), optimiser, schedule, EMA, AMP."""
    ddp_cuda = proc.world > 1 and torch.cuda.is_available() and cfg.run.device != "cpu"
    device = resolve_device(f"cuda:{proc.local_rank}" if ddp_cuda else cfg.run.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL collectives run on the current device
    Path(cfg.run.out).mkdir(parents=True, exist_ok=True)
    _ensure_data(cfg, proc)
    optim: OptimConfig = cfg.optim
    if optim.batch_size % (proc.world * optim.grad_accum):
        raise ConfigError(
            f"optim.batch_size={optim.batch_size} must be divisible by processes × grad_accum = "
            f"{proc.world * optim.grad_accum}"
        )
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(derive_seed(cfg.run.seed, Seed.INIT))  # the initial weights
        task = make_task(cfg, device, proc)
    optimizer = torch.optim.AdamW(parameter_groups(task.net, optim.weight_decay), lr=optim.lr, betas=optim.betas)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, optim.warmup, optim.steps, optim.min_lr_ratio)
    )
    autocast, scaler = _amp(device, optim.amp)
    return Trainer(cfg, task, proc, device, optimizer, schedule, EMA(task.net, optim.ema), scaler, autocast)


def _loop(trainer: Trainer, resume: bool) -> Path:
    cfg, proc, run = trainer.cfg, trainer.proc, trainer.run
    if resume:
        trainer.restore()
    objective = trainer.task.objective
    if proc.world > 1:
        ids = [trainer.device.index] if trainer.device.type == "cuda" else None
        objective = nn.parallel.DistributedDataParallel(objective, device_ids=ids)
    log_path = run / "log.jsonl"
    records = read_log(log_path, trainer.step) if resume else []
    if proc.main:
        atomic_write_text(log_path, "".join(json.dumps(r) + "\n" for r in records))
    steps, every = cfg.optim.steps, cfg.run
    bar = tqdm(
        total=steps,
        initial=trainer.step,
        desc=f"stage {cfg.stage}",
        dynamic_ncols=True,
        disable=not (every.progress and proc.main),
    )
    trainer.task.net.train()
    with open(log_path, "a") if proc.main else nullcontext() as log:
        while trainer.step < steps:
            logged = trainer.optimisation_step(objective)
            step, end = trainer.step, trainer.step == steps
            bar.update()
            bar.set_postfix(loss=f"{logged['loss']:.4f}")
            record = {"step": step, **logged} if step % every.log_every == 0 or end else {}
            if step % every.eval_every == 0 or end:
                record = {**record, "step": step, **trainer.evaluate_and_save()}
            if record and proc.main:
                log.write(json.dumps(record) + "\n")
                log.flush()
                records.append(record)
            if (step % every.ckpt_every == 0 or end) and proc.main:
                trainer.save(run / "last.pt", live=True)
    bar.close()
    if proc.main:
        trainer.task.finish(run / "best.pt")
        plot_losses({f"stage {cfg.stage}: {trainer.task.name}": records}, run / "loss.png")
    proc.barrier()
    return run / "best.pt"


def train(cfg: TrainConfig, resume: bool = False) -> Path:
    """Train one stage as ``cfg`` says; returns the path of ``best.pt`` (selected on val).

    Args:
        cfg: a config from ``load_config`` (not changed). A stage-2 config finds the stage-1
            checkpoint at ``run.out / stage2.stage1_checkpoint``.
        resume: continue from ``run.out/last.pt``: weights, EMA, optimiser, schedule and step;
            the losses then equal those of an uninterrupted run (CPU, same config).
    Raises:
        TrainingDiverged: a NaN/inf loss; ``last.pt`` stays the last good checkpoint.
    """
    check_config(cfg)
    proc = ProcessInfo.setup(cfg.run.device)
    try:
        return _loop(_build(cfg, proc), resume)
    finally:
        proc.close()


# ----------------------------------------------------------------------------- CLI


def cli_train(args) -> int:
    """``python -m reactdiff_lite train --config CONFIG [--set key=value ...] [--resume]``."""
    cfg = load_config(args.config, args.set)
    best = train(cfg, resume=args.resume)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"stage {cfg.stage} done: best (val-selected) checkpoint {best}")
    return 0


# ----------------------------------------------------------------------------- presets

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def preset_configs(
    preset: str, out: Path, seed: int, world_seed: int, data: Path, progress: bool, extra: tuple[str, ...] = ()
) -> tuple[TrainConfig, TrainConfig]:
    """The stage-1 and stage-2 configs of ``preset`` (``configs/stage{1,2}_<preset>.yaml``) for a
    run in ``out`` on the world at ``data``.

    Args:
        seed: the training seed (``run.seed``). world_seed: the world's seed (``data.seed``).
        extra: overrides; ``data.*`` go to both stages, ``autoencoder.*`` to stage 1, the rest to stage 2.
    """
    paths = [CONFIGS / f"stage{s}_{preset}.yaml" for s in (1, 2)]
    for path in paths:
        if not path.exists():
            raise ConfigError(f"config {path} is missing: presets run from a reactdiff-lite checkout")
    common = [
        f"data.root={data}",
        f"data.preset={preset}",
        f"data.seed={world_seed}",
        f"run.seed={seed}",
        f"run.progress={str(progress).lower()}",
        *(e for e in extra if e.startswith("data.")),
    ]
    first = [f"run.out={out / 'stage1'}", *(e for e in extra if e.startswith("autoencoder."))]
    second = [
        f"run.out={out / 'stage2'}",
        "stage2.stage1_checkpoint=../stage1/best.pt",
        *(e for e in extra if not e.startswith(("autoencoder.", "data."))),
    ]
    return load_config(paths[0], common + first), load_config(paths[1], common + second)


def train_preset(
    preset: str,
    out: str | Path,
    seed: int = 0,
    *,
    world_seed: int | None = None,
    data: str | Path | None = None,
    extra: tuple[str, ...] = (),
    progress: bool = True,
    timings: dict | None = None,
) -> Path:
    """Generate the world (if needed) and train both stages of ``preset`` in ``out``.

    Args:
        seed: training seed; world_seed: the world's seed (default ``seed``); data: the world's
            folder (default ``out/data``); extra: config overrides (see :func:`preset_configs`).
        timings: filled with the seconds spent on ``data``, ``stage1`` and ``stage2``.
    Returns:
        stage 2's ``best.pt``.
    """
    from reactdiff_lite.data.synthetic import ensure_dataset

    out = Path(out)
    world_seed = seed if world_seed is None else world_seed
    s1, s2 = preset_configs(preset, out, seed, world_seed, Path(data or out / "data"), progress, extra)
    timings = {} if timings is None else timings
    start = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal start
        timings[name], start = round(time.perf_counter() - start, 1), time.perf_counter()

    ensure_dataset(s1.data.root, preset, world_seed)
    lap("data")
    train_once(s1)
    lap("stage1")
    best = train_once(s2)
    lap("stage2")
    return best


def train_once(cfg: TrainConfig) -> Path:
    """:func:`train`, unless ``run.out`` already holds a finished run of this config (its
    ``last.pt`` reached ``optim.steps`` with the same config): then its ``best.pt``.

    What makes long multi-run commands (ablations, comparisons) resumable run by run."""
    run = Path(cfg.run.out)
    last, best = run / "last.pt", run / "best.pt"
    if not (last.exists() and best.exists()):
        return train(cfg)
    stored = cfg
    if cfg.stage == 2:  # a stage-2 checkpoint stores its config resolved against stage 1
        stage1 = run / cfg.stage2.stage1_checkpoint
        stored = resolve_stage2(cfg, ckpt.read_checkpoint(stage1)["config"], str(stage1))
    payload = ckpt.read_checkpoint(last)
    finished = payload["extra"].get("step") == cfg.optim.steps
    # read through the dataclasses, so that a field added since the run was written takes its default
    written = stage_dict(from_dict(TrainConfig, payload["config"], f"checkpoint {last}:"))
    same = _what_matters(written) == _what_matters(stage_dict(stored))
    return best if finished and same else train(cfg)


def recipe_hash(*configs: TrainConfig) -> str:
    """A short hash of what a run's configs train (not where: paths, device, progress bars)."""
    text = json.dumps([_what_matters(stage_dict(c)) for c in configs], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _what_matters(config: dict) -> dict:
    """A stored config without where it ran (paths, device, progress bars)."""
    where = {"data": ("root", "cache_dir"), "run": ("out", "device", "progress"), "stage2": ("stage1_checkpoint",)}
    return {
        section: {k: v for k, v in values.items() if k not in where.get(section, ())}
        if isinstance(values, dict)
        else values
        for section, values in config.items()
    }
