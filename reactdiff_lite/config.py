"""Every config of the project, and typed YAML loading: nested dataclasses, strict keys,
``--set a.b=value`` overrides.

A config file is a YAML mapping whose keys are the dataclass's fields; nested sections
are nested dataclasses. Unknown keys and values of the wrong type are errors that name
the file and the key (``configs/stage1_default.yaml: optim.lr: expected a number, got 'fast'``).
Overrides are ``KEY=VALUE`` strings, the value parsed as YAML (``optim.steps=200``,
``run.device=cpu``, ``autoencoder.encoder.video=true``).

All configs live here, below the models that read them, so a model, the training loop
and a checkpoint reader share one definition and one (de)serialisation path
(:func:`from_dict` / :func:`to_dict`):

- model configs: ``EncoderConfig`` (modalities), ``MMTConfig`` (fusion),
  ``AutoencoderConfig`` (stage 1), ``DenoiserConfig``, ``TransVAEConfig`` and ``DiffusionConfig`` (stage 2);
- run configs: ``DataConfig``, ``OptimConfig``, ``RunConfig``, ``Stage2Config``,
  ``SampleConfig``, gathered by ``TrainConfig`` (one YAML file per stage under ``configs/``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from reactdiff_lite.schema import SAMPLES_PER_FRAME
from reactdiff_lite.utils import UserError

T = TypeVar("T")


class ConfigError(UserError):
    """A config file or override that does not fit its dataclass."""


def _parse_number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _coerce(value: Any, kind: Any, where: str) -> Any:
    """``value`` checked (and widened: int -> float, "1e-3" -> 1e-3) against the annotation ``kind``."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of {kind.__name__} fields, got {value!r}")
        return from_dict(kind, value, where)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} fits none of {kind}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        items = args[:1] * len(value) if origin is list or (len(args) == 2 and args[1] is Ellipsis) else args
        if len(items) != len(value):
            raise ConfigError(f"{where}: expected {len(items)} values, got {len(value)}")
        return origin(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, items, strict=True)))
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if kind is float:
        number = _parse_number(value) if isinstance(value, str) else value
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(number)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if kind is Any:
        return value
    raise ConfigError(f"{where}: unsupported field type {kind!r}")


def _key(where: str, key: str) -> str:
    """``file.yaml: train`` + ``lr`` -> ``file.yaml: optim.lr``; a prefix ending in ":" is a file."""
    if not where:
        return key
    return f"{where} {key}" if where.endswith(":") else f"{where}.{key}"


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from a plain mapping, recursively; unknown keys are errors.

    Args:
        cls: the dataclass. data: its fields (missing ones take their defaults).
        where: a prefix for error messages: ``"file.yaml:"`` at the top, then the section path.
    """
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(data) - set(names))
    here = where.rstrip(":") or cls.__name__
    if unknown:
        raise ConfigError(f"{here}: unknown key(s) {unknown}; known: {names}")
    values = {k: _coerce(v, hints[k], _key(where, k)) for k, v in data.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:  # a dataclass's own __post_init__ check
        raise ConfigError(f"{here}: {err}") from err


def to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict of a dataclass config (tuples become lists, for YAML and checkpoints)."""

    def plain(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    return plain(dataclasses.asdict(config))


def apply_overrides(data: dict[str, Any], overrides: list[str], where: str) -> dict[str, Any]:
    """Set ``a.b.c=value`` entries (value parsed as YAML) in a nested plain dict, in place.

    Args:
        data: the config as a plain dict. overrides: ``KEY=VALUE`` strings.
        where: the config file's name, for error messages.
    """
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{where}: override {item!r} is not KEY=VALUE (e.g. optim.steps=100)")
        node, parts = data, key.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{where}: override {item!r}: {part!r} is a value, not a section")
            node = child
        node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else ""
    return data


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from ``path``; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, got {type(data).__name__}")
    return data


# ----------------------------------------------------------------------------- model configs

FACIAL_STREAMS = ("au", "fe", "va", "tdmm", "video")  # the facial class, AU first (the query)
ACOUSTIC_STREAMS = ("logmel", "mfcc")  # the acoustic class, learned stream first
ScheduleKind = Literal["linear", "linear_unscaled", "cosine"]
Prediction = Literal["eps", "x0", "v"]
Spacing = Literal["leading", "trailing", "linspace"]
Sampler = Literal["ddim", "ddpm"]
FUSIONS = ("attention", "concat", "concat_temporal")
SpeakerEncoder = Literal["frozen", "trainable"]
Stage2Objective = Literal["diffusion", "regression", "transvae"]
DiffusionLoss = Literal["mse", "l1"]
SpeakerCondition = Literal["sequence", "flat"]


@dataclass
class EncoderConfig:
    """Which modalities are on, and the width of their streams (``models.encoders``)."""

    dim: int = 64  # width D of every stream (the transformer's model width)
    tdmm: bool = True  # 3DMM (58) stream in the facial class
    audio: bool = True  # acoustic class: MFCC + learned log-mel conv streams
    video: bool = False  # grey face-frame CNN stream in the facial class
    n_fft: int = 1024  # STFT window in samples (>= 640), centred on each video frame
    n_mels: int = 40  # mel bands of the log-mel spectrogram
    n_mfcc: int = 13  # MFCC coefficients kept
    video_channels: int = 16  # channels of the CNN's first layer (doubled in the second)

    def __post_init__(self) -> None:
        if self.n_fft < SAMPLES_PER_FRAME:
            raise ValueError(f"EncoderConfig.n_fft={self.n_fft} must be >= {SAMPLES_PER_FRAME} samples per frame")
        if self.n_mfcc > self.n_mels:
            raise ValueError(f"EncoderConfig.n_mfcc={self.n_mfcc} cannot exceed n_mels={self.n_mels}")

    @property
    def streams(self) -> tuple[str, ...]:
        """Names of the streams this configuration produces, facial class first."""
        on = {"tdmm": self.tdmm, "video": self.video, "logmel": self.audio, "mfcc": self.audio}
        return tuple(s for s in FACIAL_STREAMS + ACOUSTIC_STREAMS if on.get(s, True))


@dataclass
class MMTConfig:
    """Multi-Modality Transformer settings (``models.mmt``; its width is ``EncoderConfig.dim``)."""

    heads: int = 4  # attention heads per cross-attention
    ff_mult: int = 2  # feed-forward hidden width = ff_mult * dim
    inter_depth: int = 1  # inter-class (facial <- acoustic) layers; 0 = none
    dropout: float = 0.0  # attention-weight and feed-forward dropout
    fusion: str = "attention"  # "attention" (the MMT), "concat" (frame-wise fusion baseline) or
    # "concat_temporal" (concat + as many self-attention layers over time as the MMT has: a control
    # that also mixes across time, so MMT vs it isolates attending *across modalities*)
    positions: bool = True  # sinusoidal temporal positions on queries and keys

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise ValueError(f"MMTConfig.fusion={self.fusion!r}, expected one of {FUSIONS}")
        if self.inter_depth < 0:
            raise ValueError(f"MMTConfig.inter_depth={self.inter_depth} must be >= 0")


@dataclass
class AutoencoderConfig:
    """Stage-1 model (``models.autoencoder``): encoders + MMT -> per-frame latent -> emotion and 3DMM."""

    encoder: EncoderConfig = field(default_factory=EncoderConfig)  # modalities and stream width
    mmt: MMTConfig = field(default_factory=MMTConfig)  # fusion transformer
    latent_dim: int = 32  # Dz, per-frame latent width (what stage 2 generates)
    decoder_hidden: int = 128  # hidden width of the per-frame decoder MLP
    variational: bool = False  # True: VAE posterior + KL term; False: plain autoencoder
    kl_weight: float = 1e-3  # weight of the KL term (used only when variational)
    au_weight: float = 1.0  # BCE on the 15 AU occurrences
    va_weight: float = 1.0  # MSE on valence/arousal
    fe_weight: float = 1.0  # soft cross-entropy on the 8 expression probabilities
    tdmm_weight: float = 1.0  # MSE on standardised 3DMM; 0 = do not need 3DMM targets
    latent_norm: str = "standard"  # LatentNormalizer mode: "standard" (mean/std) or "minmax" ([-1, 1])
    # True: latent frame t reads input frames <= t only (the online track): left-aligned STFT
    # frames, causal convolutions, causal attention masks in the MMT (``docs/architecture.md``)
    causal: bool = False


@dataclass
class DenoiserConfig:
    """The stage-2 network (``models.denoiser``)."""

    latent_dim: int = 32  # Dz: channels of the autoencoder's per-frame latent
    window: int = 50  # W: listener frames denoised together
    # P: speaker frames before the window, and the previous listener frames it sees. 50 (2 s)
    # covers an audio cue's evidence (~0.3 s), the longest reaction lag (~1 s) and the
    # response (to ~1.5 s after the cue) for every frame of the window; 25 (1 s) misses a cue
    # 1-1.5 s before the window start. Costs ~5-8 % of stage-2 steps/s, ~18 % of sampling time.
    context_before: int = 50
    context_after: int = 25  # speaker frames after the window
    dim: int = 128  # transformer width
    depth: int = 3  # transformer blocks
    heads: int = 4  # attention heads
    mlp_ratio: float = 2.0  # feed-forward width / dim
    dropout: float = 0.0  # attention and feed-forward dropout
    # How the speaker context enters the cross-attention memory. "sequence": one token per
    # frame at its time position. "flat": the whole context flattened, (S·Dz) -> one token
    # through a linear layer, as the official code conditions on the speaker window.
    speaker_condition: SpeakerCondition = "sequence"
    causal: bool = False  # True: listener frame j sees listener frames <= j and speaker frames <= j (online track)

    def __post_init__(self) -> None:
        if self.causal and self.context_after:
            raise ValueError(f"DenoiserConfig.causal needs context_after=0 (got {self.context_after}): no later frame")
        if self.causal and self.speaker_condition == "flat":
            raise ValueError("DenoiserConfig.causal needs speaker_condition=sequence: one flat token has no time")


@dataclass
class TransVAEConfig:
    """The Trans-VAE competitor's variational latent (``models.transvae``; ``stage2.objective: transvae``)."""

    z_dim: int = 16  # d_z: one latent vector per listener window
    kl_weight: float = 1e-3  # β on KL(q(z | x0) || N(0, I)), summed over z, against a per-element MSE


@dataclass
class DiffusionConfig:
    """Stage 2 (``models.diffusion``): schedule, prediction type, condition dropout, network."""

    schedule: ScheduleKind = "cosine"  # noise schedule
    num_train_steps: int = 1000  # L, diffusion steps of the forward process (t = 0 … L − 1)
    prediction: Prediction = "v"  # what the denoiser outputs: v stays well-conditioned
    # where ᾱ_t -> 0 (x̂0 from ε̂ divides by sqrt(ᾱ_t))
    cond_drop_prob: float = 0.1  # P(drop the speaker) in training, for guidance
    loss: DiffusionLoss = "mse"  # the training loss against the target: squared ("mse") or absolute ("l1", official)
    clip_x0: bool = False  # clip x̂0 to [-1, 1] in every sampling step (min-max normalised latents; official)
    denoiser: DenoiserConfig = field(default_factory=DenoiserConfig)
    transvae: TransVAEConfig = field(default_factory=TransVAEConfig)  # used only by stage2.objective: transvae


# ----------------------------------------------------------------------------- run configs


@dataclass
class DataConfig:
    root: str = "data/synthetic/default"  # REACT-format directory, relative to the working directory
    preset: str | None = "default"  # generate the dyadic world at root when missing; None: never (real data)
    seed: int = 0  # world seed (with preset)
    frame_size: int = 32  # video frames are resized to frame_size² (when video is on)
    cache_dir: str | None = None  # the reader's tensor cache (None: its default)
    window: int = 50  # stage 1: frames per training window (also its encoding chunk)
    shuffle_audio: bool = False  # control: every clip gets another clip's audio (same split, fixed
    # derangement) in training and evaluation, so audio carries no information about its clip


@dataclass
class OptimConfig:
    steps: int = 2000  # optimiser steps
    batch_size: int = 32  # windows per step, over all processes and micro-batches
    grad_accum: int = 1  # micro-batches per step on each process
    lr: float = 1e-3  # peak learning rate (AdamW)
    min_lr_ratio: float = 0.05  # cosine decay ends at min_lr_ratio · lr
    warmup: int = 100  # linear warm-up steps
    weight_decay: float = 0.01  # AdamW decoupled weight decay (matrices only: not norms, biases, tokens)
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW moment decays
    grad_clip: float = 1.0  # max global gradient norm; 0 = off
    ema: float = 0.999  # EMA decay of the weights used for val, best.pt and sampling
    amp: bool = True  # autocast on CUDA (bf16 where supported, else fp16); ignored on CPU


@dataclass
class RunConfig:
    out: str = "runs/stage1"  # run directory, relative to the working directory
    seed: int = 0  # every training draw derives from it
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1"; under torchrun: cuda:LOCAL_RANK
    eval_every: int = 200  # val loss of the EMA weights (and best.pt) every this many steps
    ckpt_every: int = 200  # last.pt every this many steps (and at the end)
    log_every: int = 10  # log.jsonl line every this many steps
    val_windows: int = 512  # at most this many val windows (evenly spaced, fixed)
    val_batch: int = 128  # val windows per forward pass
    progress: bool = True  # tqdm progress bar


@dataclass
class Stage2Config:
    stage1_checkpoint: str = "../stage1/best.pt"  # stage-1 checkpoint, relative to run.out (or absolute)
    online_prob: float = 0.5  # P(hide the speaker frames after the window) per training window
    first_window_prob: float = 0.1  # P(a training window starts at frame 0, with no past), else uniform
    encode_chunk: int = 0  # frames per speaker-encoding chunk; 0 = the stage-1 window
    # Where the denoiser's speaker condition comes from. "frozen" (the official design): the
    # frozen stage-1 encoder's normalised latents, cached once. Its loss only rebuilds the
    # face, so it has no reason to keep audio-only cues. "trainable": a copy of the stage-1
    # encoder path (modality encoders + MMT + latent head), trained by the diffusion loss,
    # encoding the speaker chunks of each window on the fly (log-mel/MFCC cached); saved as
    # "speaker_encoder". The listener targets stay the frozen autoencoder's latents.
    speaker_encoder: SpeakerEncoder = "frozen"
    # What stage 2 learns. "diffusion": ReactDiff's latent diffusion (``models.diffusion``).
    # "regression": the competitor that shows why diffusion is used: the same denoiser and
    # conditioning trained to output the listener window directly with MSE
    # (``models.regression``), one reaction per speaker, repeated K times; the diffusion
    # section's schedule, prediction and cond_drop_prob and the sampler options do not apply.
    # "transvae": the Trans-VAE competitor (``models.transvae``): a conditional VAE over the
    # windows with the same denoiser as its speaker-conditioned decoder (``diffusion.transvae``).
    objective: Stage2Objective = "diffusion"


@dataclass
class SampleConfig:
    k: int = 10  # reactions per speaker
    steps: int = 20  # denoising steps n of the sampler (DDIM or DDPM), a subsequence of the L diffusion steps
    eta: float = 0.0  # DDIM η (0 deterministic given the starting noise)
    guidance: float = 1.0  # classifier-free guidance scale s (1 = conditional only)
    sampler: Sampler = "ddim"
    spacing: Spacing = "trailing"
    binarize_au: bool = False  # True: AU probabilities -> 0/1 occurrences (p > 0.5), as in the data
    batch_size: int = 256  # sequences denoised together


@dataclass
class TrainConfig:
    """One training run: stage 1 (autoencoder) or stage 2 (latent diffusion)."""

    stage: Literal[1, 2] = 1  # 1: autoencoder, 2: latent diffusion
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)  # stage 1 (stage 2: its checkpoint's)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)  # stage 2
    stage2: Stage2Config = field(default_factory=Stage2Config)  # stage 2
    sample: SampleConfig = field(default_factory=SampleConfig)  # stage 2: sampling defaults


STAGE_SECTIONS = {
    1: ("stage", "data", "optim", "run", "autoencoder"),
    2: ("stage", "data", "optim", "run", "diffusion", "stage2", "sample"),
}
RENAMED_SECTIONS = {"train": "optim"}  # old name -> new name


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a YAML config, apply ``KEY=VALUE`` overrides and check it.

    Errors (``ConfigError``) name the file and the key: unknown keys, wrong types, a section
    of the other stage (stage 2 reads the autoencoder from its stage-1 checkpoint), a
    section under its old name.
    """
    data = apply_overrides(load_yaml(path), list(overrides), str(path))
    for old, new in RENAMED_SECTIONS.items():
        if old in data:
            raise ConfigError(f"{path}: section {old!r} is now called {new!r}: rename it (e.g. {new}.lr=3e-4)")
    cfg = from_dict(TrainConfig, data, f"{path}:")
    wrong = sorted(set(data) - set(STAGE_SECTIONS[cfg.stage]))
    if wrong:
        raise ConfigError(f"{path}: section(s) {wrong} do not belong to a stage-{cfg.stage} config")
    check_config(cfg, str(path))
    return cfg


def stage_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The sections of ``cfg`` that its stage uses, as a plain dict (what a checkpoint stores).

    A stage-2 run also keeps its frozen autoencoder's config (read from the stage-1
    checkpoint), so one stage-2 file describes the whole model.
    """
    sections = STAGE_SECTIONS[cfg.stage] + (("autoencoder",) if cfg.stage == 2 else ())
    full = to_dict(cfg)
    return {key: full[key] for key in sections}


def check_config(cfg: TrainConfig, where: str = "config") -> None:
    """Value checks that types alone do not catch."""
    o, r = cfg.optim, cfg.run
    checks = [
        (o.steps > 0, f"optim.steps={o.steps} must be > 0"),
        (o.batch_size > 0, f"optim.batch_size={o.batch_size} must be > 0"),
        (o.grad_accum > 0, f"optim.grad_accum={o.grad_accum} must be > 0"),
        (o.lr > 0, f"optim.lr={o.lr} must be > 0"),
        (0 <= o.ema < 1, f"optim.ema={o.ema} must be in [0, 1)"),
        (0 <= cfg.stage2.online_prob <= 1, f"stage2.online_prob={cfg.stage2.online_prob} must be in [0, 1]"),
        (min(r.eval_every, r.ckpt_every, r.log_every) > 0, "run.eval_every/ckpt_every/log_every must be > 0"),
    ]
    problems = [message for ok, message in checks if not ok]
    if problems:
        raise ConfigError(f"{where}: " + "; ".join(problems))
