"""What each training stage trains on: the ``StageTask`` protocol and the two stages.

The training loop (``reactdiff_lite.train``) is the same for both stages of ReactDiff
(Li et al., arXiv 2505.14151, Sec. 3.2-3.4); a task tells it what to build, how to draw a
batch, how to score the validation split and what to store:

- ``Stage1Task``: the ``ReactionAutoencoder`` on random windows of every person clip
  (speakers and listeners), loss ``ReactionAutoencoder.loss``; at the end it fits the
  latent normaliser of the selected model on the training latents.
- ``Stage2Task``: the ``LatentDiffusion`` on cached normalised latents of the frozen
  autoencoder, loss ``LatentDiffusion.loss`` on random listener windows with their
  speaker context (``windows.window_condition``). Its effective config is resolved from
  the stage-1 checkpoint by the pure function ``resolve_stage2``. With
  ``stage2.speaker_encoder: trainable`` it also trains a speaker encoder (a copy of the
  stage-1 encoder path) that encodes the context's aligned chunks on the fly
  (``Stage2Net``); the listener targets stay the cached frozen latents. With
  ``stage2.objective: regression`` the generator is ``LatentRegression`` (the same denoiser
  trained to output the window with MSE), with ``transvae`` ``LatentTransVAE`` (a conditional
  VAE decoding through the same denoiser); ``latents.stage2_model`` picks it: same batches,
  loop and checkpoint layout.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from reactdiff_lite.config import AutoencoderConfig, ConfigError, TrainConfig, from_dict, stage_dict
from reactdiff_lite.distributed import ProcessInfo
from reactdiff_lite.latents import (
    Stage2Model,
    encode_chunks,
    encode_latents,
    model_modalities,
    speaker_inputs,
    stage2_model,
)
from reactdiff_lite.models import checkpoint as ckpt
from reactdiff_lite.models.autoencoder import LatentEncoder, ReactionAutoencoder
from reactdiff_lite.utils import Seed, atomic_torch_save, derive_seed
from reactdiff_lite.windows import chunk_context, context_chunks, listener_target, take_windows, window_condition

LossFn = Callable[[nn.Module, dict, torch.Generator], tuple[Tensor, dict]]


class StageTask(Protocol):
    """One training stage, as the loop sees it."""

    name: str  # what the stage trains, for plots ("autoencoder", "diffusion")
    net: nn.Module  # the trained network
    objective: nn.Module  # ``objective(batch, generator) -> (loss, logs)``: what DDP wraps

    def batch(self, generator: torch.Generator, size: int) -> dict[str, Tensor]:
        """A training batch of ``size`` windows drawn with ``generator`` (on CPU)."""

    def val_loss(self, net: nn.Module) -> float:
        """Mean loss of ``net`` on the fixed validation windows (deterministic)."""

    def parts(self, net: nn.Module) -> dict[str, nn.Module]:
        """The trained parts of ``net`` (or of its EMA copy) by checkpoint name."""

    def modules(self, net: nn.Module) -> dict[str, nn.Module]:
        """Every part a checkpoint must hold: the frozen ones and ``parts(net)``."""

    def config(self) -> dict[str, Any]:
        """The config a checkpoint stores (``config.stage_dict``)."""

    def finish(self, best: Path) -> None:
        """Work after training on the selected ``best.pt`` (rank 0 only)."""


class Objective(nn.Module):
    """``forward(batch, generator) -> (loss, logs)`` of a network: the thing DDP wraps."""

    def __init__(self, net: nn.Module, loss_fn: LossFn):
        super().__init__()
        self.net, self.loss_fn = net, loss_fn

    def forward(self, batch: dict[str, Tensor], generator: torch.Generator) -> tuple[Tensor, dict]:
        return self.loss_fn(self.net, batch, generator)


def load_training_split(cfg: TrainConfig, split: str, modalities: tuple[str, ...]):
    """The ``SplitData`` of ``split`` with the modalities a model reads (audio shuffled across
    clips when ``data.shuffle_audio``, the audio control)."""
    from reactdiff_lite.data.cache import load_split, shuffle_audio

    data = load_split(
        cfg.data.root, split, frame_size=cfg.data.frame_size, cache_dir=cfg.data.cache_dir, modalities=modalities
    )
    return shuffle_audio(data) if cfg.data.shuffle_audio else data


def val_windows(n_items: int, frames: int, window: int, limit: int) -> tuple[Tensor, Tensor]:
    """Fixed val windows (items, starts): every aligned window of every item, evenly thinned to ``limit``."""
    per = max(1, frames // window)
    items = torch.arange(n_items).repeat_interleave(per)
    starts = (torch.arange(per) * window).repeat(n_items)
    keep = torch.linspace(0, len(items) - 1, min(limit, len(items))).round().long()
    return items[keep], starts[keep]


def _on(batch: Mapping[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


# ----------------------------------------------------------------------------- stage 1


class Stage1Task:
    """Autoencoder on random windows of every person clip of the split (speakers and listeners)."""

    name = "autoencoder"

    def __init__(self, cfg: TrainConfig, device: torch.device, proc: ProcessInfo):
        self.cfg, self.device = cfg, device
        self.net = ReactionAutoencoder(cfg.autoencoder)
        mods = model_modalities(self.net)
        self.train_split = load_training_split(cfg, "train", mods)
        self.val_split = load_training_split(cfg, "val", mods)
        self.window = cfg.data.window
        if self.window > self.train_split.n_frames:
            raise ConfigError(
                f"data.window={self.window} is longer than the clips ({self.train_split.n_frames} frames)"
            )
        if "tdmm" in mods:
            self.net.fit_tdmm_statistics(self.train_split.tdmm)
        self.net.to(device)
        self.objective = Objective(self.net, lambda net, b, g: net.loss(b, g))
        self.val_items, self.val_starts = val_windows(
            len(self.val_split.clip_ids), self.val_split.n_frames, self.window, cfg.run.val_windows
        )

    def batch(self, generator: torch.Generator, size: int) -> dict[str, Tensor]:
        clips = torch.randint(0, len(self.train_split.clip_ids), (size,), generator=generator)
        starts = torch.randint(0, self.train_split.n_frames - self.window + 1, (size,), generator=generator)
        return take_windows(self.train_split, clips, starts, self.window)

    @torch.no_grad()
    def val_loss(self, net: nn.Module) -> float:
        g = torch.Generator(self.device).manual_seed(derive_seed(self.cfg.run.seed, Seed.VAL))
        total, n, size = 0.0, 0, self.cfg.run.val_batch
        for i in range(0, len(self.val_items), size):
            b = take_windows(self.val_split, self.val_items[i : i + size], self.val_starts[i : i + size], self.window)
            loss, _ = net.loss(_on(b, self.device), g)
            total, n = total + float(loss) * len(b["emotion"]), n + len(b["emotion"])
        return total / n

    def parts(self, net: nn.Module) -> dict[str, nn.Module]:
        return {"autoencoder": net}

    def modules(self, net: nn.Module) -> dict[str, nn.Module]:
        return self.parts(net)

    def config(self) -> dict[str, Any]:
        return stage_dict(self.cfg)

    def finish(self, best: Path) -> None:
        """Fit the latent normaliser of the selected model on the training latents."""
        if not best.exists():
            return
        net = ReactionAutoencoder(self.cfg.autoencoder)
        payload = ckpt.read_checkpoint(best)
        ckpt.load_modules(best, {"autoencoder": net}, payload)
        net.to(self.device)
        net.normalizer.fit(encode_latents(net, self.train_split, self.window, normalize=False, device=self.device))
        ckpt.save_checkpoint(best, {"autoencoder": net}, payload["config"], **payload["extra"])


# ----------------------------------------------------------------------------- stage 2


def resolve_stage2(cfg: TrainConfig, stage1_config: Mapping[str, Any], where: str) -> TrainConfig:
    """The effective stage-2 config: ``cfg`` with what it takes from its stage-1 checkpoint.

    The frozen autoencoder's config, the denoiser's latent width (= the autoencoder's Dz) and
    the speaker-encoding chunk (0 means the stage-1 training window). Returns a new config;
    ``cfg`` is not changed.

    Args:
        cfg: the stage-2 config as loaded. stage1_config: the stage-1 checkpoint's ``config``.
        where: the stage-1 checkpoint's path, for error messages.
    """
    autoencoder = from_dict(AutoencoderConfig, stage1_config["autoencoder"], f"checkpoint {where}: autoencoder")
    chunk = cfg.stage2.encode_chunk or stage1_config.get("data", {}).get("window", cfg.data.window)
    denoiser = dataclasses.replace(cfg.diffusion.denoiser, latent_dim=autoencoder.latent_dim)
    if denoiser.window % chunk:
        raise ConfigError(
            f"diffusion.denoiser.window={denoiser.window} must be a multiple of the encoding chunk "
            f"{chunk} (stage-1 window), or online mode would see the future"
        )
    if denoiser.causal and not autoencoder.causal:
        raise ConfigError(
            f"diffusion.denoiser.causal needs a causal stage-1 autoencoder ({where} has autoencoder.causal=false): "
            "train stage 1 with configs/stage1_online.yaml"
        )
    return dataclasses.replace(
        cfg,
        autoencoder=autoencoder,
        diffusion=dataclasses.replace(cfg.diffusion, denoiser=denoiser),
        stage2=dataclasses.replace(cfg.stage2, encode_chunk=chunk),
    )


SPEAKER = "speaker/"  # batch-key prefix of the trainable speaker encoder's chunk inputs


class Stage2Net(nn.Module):
    """What stage 2 trains: the stage-2 generator (latent diffusion, or the regression
    competitor) and, with ``stage2.speaker_encoder:
    trainable``, the speaker encoder whose latents the denoiser reads.

    A batch holds the listener target ``x0`` (B, W, Dz), the context ``mask`` (B, S) and the
    previous frames ``prev`` (B, P, Dz), and either the cached speaker context ``speaker``
    (B, S, Dz) (frozen) or the inputs of the aligned chunks around each window,
    ``speaker/<key>`` (B, K, C, …) with ``windows.context_chunks``' ``chunk_valid``,
    ``chunk_length`` and ``chunk_offset`` (trainable).
    """

    def __init__(self, diffusion: Stage2Model, speaker: LatentEncoder | None = None):
        super().__init__()
        self.diffusion = diffusion
        self.speaker = speaker

    def parts(self) -> dict[str, nn.Module]:
        """The trained parts by checkpoint name."""
        return {"diffusion": self.diffusion} | ({} if self.speaker is None else {"speaker_encoder": self.speaker})

    def context(self, batch: Mapping[str, Tensor]) -> Tensor:
        """The speaker context (B, S, Dz): cached, or encoded now by the trainable encoder."""
        if self.speaker is None:
            return batch["speaker"]
        inputs = {k.removeprefix(SPEAKER): v for k, v in batch.items() if k.startswith(SPEAKER)}  # (B, K, C, …)
        z = encode_chunks(self.speaker, inputs, batch["chunk_valid"], batch["chunk_length"])  # (B, K, C, Dz)
        return chunk_context(z, batch["chunk_offset"], batch["mask"].shape[1])  # (B, S, Dz)

    def loss(self, batch: Mapping[str, Tensor], generator: torch.Generator) -> Tensor:
        """The generator's loss (``LatentDiffusion.loss`` or ``LatentRegression.loss``) of the batch's windows."""
        return self.diffusion.loss(batch["x0"], self.context(batch), batch["mask"], batch["prev"], generator=generator)


class Stage2Task:
    """Latent diffusion on cached normalised latents of the frozen autoencoder (and, when
    trainable, a speaker encoder fed with cached per-clip inputs)."""

    name = "diffusion"

    def __init__(self, cfg: TrainConfig, device: torch.device, proc: ProcessInfo):
        stage1 = Path(cfg.run.out) / cfg.stage2.stage1_checkpoint
        if not stage1.is_file():
            raise ckpt.CheckpointError(
                f"stage-1 checkpoint {stage1} does not exist (stage2.stage1_checkpoint="
                f"{cfg.stage2.stage1_checkpoint!r} is relative to run.out={cfg.run.out!r}): train stage 1 first"
            )
        payload = ckpt.read_checkpoint(stage1)
        self.cfg = cfg = resolve_stage2(cfg, payload["config"], str(stage1))
        self.device, self._splits = device, {}
        self.ae = ReactionAutoencoder(cfg.autoencoder)
        ckpt.load_modules(stage1, {"autoencoder": self.ae}, payload)
        self.ae.to(device).eval().requires_grad_(False)
        den = cfg.diffusion.denoiser
        self.window, self.before, self.after = den.window, den.context_before, den.context_after
        self.latents = self._latents(stage1, proc)
        trainable = cfg.stage2.speaker_encoder == "trainable"
        self.net = Stage2Net(stage2_model(cfg), LatentEncoder.from_autoencoder(self.ae) if trainable else None).to(
            device
        )
        self.inputs: dict[str, dict[str, Tensor]] = {}  # per split: what the trainable encoder reads, per clip
        self.speaker_clips: dict[str, Tensor] = {}  # per split: (N,) clip of each item's speaker
        if trainable:
            for name in ("train", "val"):
                self.inputs[name] = speaker_inputs(self.ae, self._split(name), cfg.stage2.encode_chunk)
                self.speaker_clips[name] = self._split(name).speaker_index
        self._splits.clear()  # keep only the caches, not the decoded clips (raw audio)
        self.objective = Objective(self.net, self._loss)
        N, T = self.latents["val_speaker"].shape[:2]
        self.val_items, self.val_starts = val_windows(N, T, self.window, cfg.run.val_windows)

    def _split(self, name: str):
        if name not in self._splits:
            self._splits[name] = load_training_split(self.cfg, name, model_modalities(self.ae))
        return self._splits[name]

    def _cache_key(self, stage1: Path) -> str:
        """Changes when the stage-1 weights, the chunk or the data (split lists, manifest) change."""
        root = Path(self.cfg.data.root)
        files = [root / name for name in ("train.csv", "val.csv", "manifest.json") if (root / name).exists()]
        stamps = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files]
        weights = hashlib.sha256(stage1.read_bytes()).hexdigest()[:16]
        return f"{weights}-{self.cfg.stage2.encode_chunk}-{root.resolve()}-{stamps}"

    def _latents(self, stage1: Path, proc: ProcessInfo) -> dict[str, Tensor]:
        """Normalised speaker/listener latents of train and val, computed once and cached."""
        chunk, key = self.cfg.stage2.encode_chunk, self._cache_key(stage1)
        path = Path(self.cfg.run.out) / "latents.pt"
        if proc.main and not (path.exists() and torch.load(path, weights_only=True).get("key") == key):
            splits = {name: self._split(name) for name in ("train", "val")}
            if not bool(self.ae.normalizer.fitted):  # a stage-1 run stopped before its end
                z = encode_latents(self.ae, splits["train"], chunk, normalize=False, device=self.device)
                self.ae.normalizer.fit(z)
            out: dict[str, Any] = {"key": key, "normalizer": self.ae.normalizer.state_dict()}
            for name, data in splits.items():
                z = encode_latents(self.ae, data, chunk, device=self.device)  # (clips, T, Dz), each clip once
                out[f"{name}_speaker"], out[f"{name}_listener"] = z[data.speaker_index], z[data.listener_index]
            atomic_torch_save(out, path)
        proc.barrier()
        cached = torch.load(path, weights_only=True)
        self.ae.normalizer.load_state_dict(cached["normalizer"])
        return cached

    def _loss(self, net: Stage2Net, b: dict[str, Tensor], g: torch.Generator) -> tuple[Tensor, dict]:
        loss = net.loss(b, g)
        return loss, {"mse": float(loss.detach())}

    def _windows(self, split: str, items: Tensor, starts: Tensor, online: Tensor) -> dict[str, Tensor]:
        spk, lst = self.latents[f"{split}_speaker"][items], self.latents[f"{split}_listener"][items]  # (B, T, Dz)
        context, mask, prev = window_condition(spk, lst, starts, self.window, self.before, self.after, online)
        out = {"x0": listener_target(lst, starts, self.window), "mask": mask, "prev": prev}
        if not self.inputs:
            return out | {"speaker": context}
        inputs = self.inputs[split]
        chunks = context_chunks(starts, self.before, mask.shape[1], self.cfg.stage2.encode_chunk, spk.shape[1])
        clips = self.speaker_clips[split][items][:, None, None]  # (B, 1, 1)
        frames = chunks.pop("chunk_index")  # (B, K, C)
        return out | chunks | {SPEAKER + k: v[clips, frames] for k, v in inputs.items()}  # (B, K, C, …)

    def batch(self, generator: torch.Generator, size: int) -> dict[str, Tensor]:
        N, T = self.latents["train_speaker"].shape[:2]
        items = torch.randint(0, N, (size,), generator=generator)
        starts = torch.randint(0, T - self.window + 1, (size,), generator=generator)
        first = torch.rand(size, generator=generator) < self.cfg.stage2.first_window_prob
        starts = torch.where(first, 0, starts)
        online = torch.rand(size, generator=generator) < self.cfg.stage2.online_prob
        return self._windows("train", items, starts, online)

    @torch.no_grad()
    def val_loss(self, net: nn.Module) -> float:
        g = torch.Generator(self.device).manual_seed(derive_seed(self.cfg.run.seed, Seed.VAL))
        total, n, size = 0.0, 0, self.cfg.run.val_batch
        for i in range(0, len(self.val_items), size):
            items, starts = self.val_items[i : i + size], self.val_starts[i : i + size]
            b = _on(self._windows("val", items, starts, torch.zeros(len(items), dtype=torch.bool)), self.device)
            total, n = total + float(net.loss(b, g)) * len(items), n + len(items)
        return total / n

    def parts(self, net: nn.Module) -> dict[str, nn.Module]:
        return net.parts()

    def modules(self, net: nn.Module) -> dict[str, nn.Module]:
        return {"autoencoder": self.ae, **net.parts()}

    def config(self) -> dict[str, Any]:
        return stage_dict(self.cfg)

    def finish(self, best: Path) -> None:
        pass


def make_task(cfg: TrainConfig, device: torch.device, proc: ProcessInfo) -> StageTask:
    """The task of ``cfg.stage``."""
    return (Stage1Task if cfg.stage == 1 else Stage2Task)(cfg, device, proc)
