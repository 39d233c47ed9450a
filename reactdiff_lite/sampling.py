"""Sampling: K listener reactions per speaker, offline or online (ReactDiff, Sec. 3.4).

A reaction is generated window by window in the normalised latent space of the stage-1
autoencoder, then decoded to emotion (25) and 3DMM (58)::

    c      = norm(E(speaker))                               speaker latents, (N, T, Dz)
    z^(w)  ~ p_θ(z | c[wW − P : (w+1)W + F], z^(w−1)[−P:])  window w of W frames, DDIM/DDPM
    ŷ      = D(denorm([z^(0), z^(1), …]))                   emotion (N, K, T, 25), 3DMM (N, K, T, 58)

with P = ``context_before`` speaker frames (and as many previously generated listener
frames) before the window and F = ``context_after`` speaker frames after it.

- **Offline** (REACT task 1): the whole speaker clip is known; window w sees the F future
  speaker frames after it.
- **Online** (REACT task 2): window w sees speaker windows ≤ w only: the F frames after the
  window are hidden. The speaker is encoded in chunks of the stage-1 window, aligned with
  the generated windows, so no latent of window w carries information from later frames.

Each of the K reactions of a speaker starts from its own noise x_T ~ N(0, I), so fresh
noise gives a different appropriate reaction. Classifier-free guidance mixes the
conditional and unconditional predictions, ε = ε_u + s (ε_c − ε_u).

API: ``load_model(checkpoint) -> ReactionModel`` and ``generate(model, speaker, k, …)``;
``cli_sample`` is ``python -m reactdiff_lite sample``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Union

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from reactdiff_lite.data.schema import AU, SAMPLES_PER_FRAME
from reactdiff_lite.models.autoencoder import ReactionAutoencoder
from reactdiff_lite.models.diffusion import LatentDiffusion
from reactdiff_lite.utils import atomic_write, resolve_device

PersonSource = Union[Mapping[str, Tensor], "SplitData"]  # noqa: F821  (reactdiff_lite.data.react.SplitData)


def derive_seed(*keys: int) -> int:
    """A 63-bit seed from integer keys (numpy's SeedSequence): independent streams per key."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint64)[0] >> np.uint64(1))


# ----------------------------------------------------------------------------- latents

def person_window(person: Mapping[str, Tensor], start: int, length: int) -> dict[str, Tensor]:
    """Frames ``[start, start + length)`` of a person batch (audio sliced at 640 samples per frame)."""
    out = {}
    for key, x in person.items():
        scale = SAMPLES_PER_FRAME if key == "audio" else 1
        out[key] = x[:, start * scale:(start + length) * scale]
    return out


def take_windows(source: PersonSource, rows: Tensor, starts: Tensor | int, length: int) -> dict[str, Tensor]:
    """Windows of ``length`` frames of some rows of a person batch or of a split's clips.

    Args:
        source: a person dict of (N, T, …) tensors, or a ``SplitData`` (rows = its clips;
            only the windows are materialised, audio as float32).
        rows: (B,) long row indices. starts: (B,) long first frames, or one int for all.
    Returns:
        a person dict of (B, length, …) tensors.
    """
    if isinstance(starts, int):
        if isinstance(source, Mapping):
            return person_window({k: v[rows] for k, v in source.items()}, starts, length)
        return {k: source.clip_tensor(k, rows, starts, starts + length) for k in source.modalities}
    parts = [take_windows(source, rows[i:i + 1], int(s), length) for i, s in enumerate(starts.tolist())]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def _rows_frames(source: PersonSource) -> tuple[int, int]:
    if isinstance(source, Mapping):
        return tuple(source["emotion"].shape[:2])
    return len(source.clip_ids), source.n_frames


@torch.no_grad()
def encode_latents(autoencoder: ReactionAutoencoder, source: PersonSource, chunk: int, batch_size: int = 64,
                   normalize: bool = True, device: torch.device | None = None) -> Tensor:
    """Latents of whole clips, encoded in aligned chunks of ``chunk`` frames.

    The autoencoder was trained on windows of ``chunk`` frames, so clips are encoded the same
    way: frames ``[c·chunk, (c+1)·chunk)`` together. A latent never depends on frames of a
    later chunk, which keeps online generation causal at the window level.

    Args:
        autoencoder: the frozen stage-1 model (put in eval mode here).
        source: a person dict of (N, T, …) tensors, or a ``SplitData`` (then one latent per clip).
        chunk: frames per encoded chunk. batch_size: clips per forward pass.
        normalize: apply the autoencoder's ``LatentNormalizer`` (stage 2's latent space).
        device: where to run (default: the autoencoder's device).
    Returns:
        (N, T, Dz) float32 on CPU (N = clips of a SplitData).
    """
    autoencoder.eval()
    device = device or next(autoencoder.parameters()).device
    N, T = _rows_frames(source)
    pieces = []
    for start in range(0, T, chunk):
        rows = [autoencoder.encode({k: v.to(device) for k, v in take_windows(
                    source, torch.arange(i, min(i + batch_size, N)), start, min(chunk, T - start)).items()})
                for i in range(0, N, batch_size)]
        pieces.append(torch.cat(rows).float().cpu())                    # (N, chunk, Dz)
    z = torch.cat(pieces, dim=1)                                        # (N, T, Dz)
    return autoencoder.normalizer.normalize(z.to(autoencoder.normalizer.shift.device)).cpu() if normalize else z


def window_condition(speaker: Tensor, listener: Tensor, start: Tensor, window: int, before: int, after: int,
                     online: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The denoiser's condition for listener windows starting at ``start``.

    Frames outside the clip are zero and masked; online rows also mask the speaker frames
    after the window (REACT task 2). The previous listener frames are the ``before``
    frames just before the window: ground truth in training, generated ones in sampling.

    Args:
        speaker: speaker latents (B, T, Dz). listener: listener latents (B, T', Dz), T' ≥ start.
        start: first frame of each window (B,) long. window: W. before: P. after: F.
        online: (B,) bool, hide the speaker frames after the window.
    Returns:
        speaker context (B, P + W + F, Dz), its visibility mask (B, P + W + F) bool and the
        previous listener frames (B, P, Dz).
    """
    B, T, _ = speaker.shape
    offsets = torch.arange(-before, window + after, device=start.device)  # (S,)
    idx = start[:, None] + offsets[None]                                # (B, S) frame of each slot
    inside = (idx >= 0) & (idx < T)                                     # (B, S)
    safe = idx.clamp(0, T - 1)
    gather = lambda x, i: torch.gather(x, 1, i[..., None].expand(-1, -1, x.shape[-1]))  # noqa: E731
    context = gather(speaker, safe) * inside[..., None]                 # (B, S, Dz)
    mask = inside & ~(online[:, None] & (idx >= (start + window)[:, None]))
    past = idx[:, :before]                                              # (B, P)
    prev = gather(listener, past.clamp(0, max(listener.shape[1] - 1, 0))) * (past >= 0)[..., None]
    return context, mask, prev                                          # (B, S, Dz), (B, S), (B, P, Dz)


# ----------------------------------------------------------------------------- the model

@dataclass
class ReactionModel:
    """A trained ReactDiff: frozen autoencoder + latent diffusion + the stage-2 config."""

    autoencoder: ReactionAutoencoder
    diffusion: LatentDiffusion
    config: "TrainConfig"  # noqa: F821  (reactdiff_lite.train.TrainConfig, stage 2)
    device: torch.device

    @property
    def window(self) -> int:
        return self.diffusion.config.denoiser.window

    @property
    def encode_chunk(self) -> int:
        """Frames per encoded speaker chunk: the stage-1 training window."""
        return self.config.stage2.encode_chunk

    def encode(self, person: Mapping[str, Tensor], batch_size: int = 64) -> Tensor:
        """Normalised speaker latents (N, T, Dz) on CPU, as stage 2 was trained on."""
        return encode_latents(self.autoencoder, person, self.encode_chunk, batch_size, device=self.device)

    @torch.no_grad()
    def decode(self, latent: Tensor, batch_size: int = 256) -> dict[str, Tensor]:
        """Normalised latents (..., T, Dz) -> ``emotion`` (..., T, 25) and ``tdmm`` (..., T, 58) on CPU.

        With ``sample.binarize_au`` the AU occurrence probabilities become 0/1 (p > 0.5),
        like the AU columns of the data.
        """
        lead, (T, Dz) = latent.shape[:-2], latent.shape[-2:]
        flat = latent.reshape(-1, T, Dz)
        outs = [self.autoencoder.decode(self.autoencoder.normalizer.denormalize(flat[i:i + batch_size].to(self.device)))
                for i in range(0, flat.shape[0], batch_size)]
        emotion = torch.cat([o["emotion"] for o in outs]).float().cpu()  # (B, T, 25)
        tdmm = torch.cat([o["tdmm"] for o in outs]).float().cpu()        # (B, T, 58)
        if self.config.sample.binarize_au:
            emotion[..., AU] = (emotion[..., AU] > 0.5).float()
        return {"emotion": emotion.reshape(*lead, T, -1), "tdmm": tdmm.reshape(*lead, T, -1)}


def load_model(checkpoint: str | Path, device: str | torch.device = "auto") -> ReactionModel:
    """A stage-2 checkpoint (``best.pt`` or ``last.pt`` of a stage-2 run) -> ``ReactionModel``.

    The checkpoint embeds the frozen autoencoder, so nothing else is read. Both networks
    are in eval mode on ``device``; ``best.pt``/``last.pt`` hold the EMA weights.
    """
    from reactdiff_lite.train import load_stage2_checkpoint

    device = resolve_device(device)
    autoencoder, diffusion, config = load_stage2_checkpoint(checkpoint)
    return ReactionModel(autoencoder.to(device).eval(), diffusion.to(device).eval(), config, device)


@torch.no_grad()
def generate(model: ReactionModel, speaker: Mapping[str, Tensor] | Tensor, k: int = 10, *,
             steps: int | None = None, eta: float | None = None, guidance: float | None = None,
             sampler: str | None = None, online: bool = False, seed: int = 0, batch_size: int = 256,
             progress: bool = False) -> dict[str, Tensor]:
    """Generate ``k`` listener reactions for each of N speakers.

    Args:
        model: from ``load_model``.
        speaker: a person batch of (N, T, …) tensors, or speaker latents (N, T, Dz) from
            ``model.encode`` (to skip re-encoding in interactive loops).
        k: reactions per speaker.
        steps, eta, guidance, sampler: DDIM steps, DDIM η, guidance scale s and ``"ddim"`` or
            ``"ddpm"``; None takes the config's ``sample`` section.
        online: window w sees speaker windows ≤ w only (REACT task 2).
        seed: the noise of batch b comes from a generator seeded with (seed, b): the same
            seed and batch_size give the same reactions.
        batch_size: sequences (speakers × k) denoised together.
        progress: show a tqdm bar.
    Returns:
        ``emotion`` (N, k, T, 25), ``tdmm`` (N, k, T, 58) and ``latent`` (N, k, T, Dz), float32 CPU.
    """
    opts = model.config.sample
    steps = opts.steps if steps is None else steps
    eta = opts.eta if eta is None else eta
    guidance = opts.guidance if guidance is None else guidance
    sampler = opts.sampler if sampler is None else sampler
    den = model.diffusion.config.denoiser
    W, P, F = den.window, den.context_before, den.context_after
    latent = speaker if isinstance(speaker, Tensor) else model.encode(speaker)  # (N, T, Dz)
    if latent.ndim != 3 or latent.shape[-1] != den.latent_dim:
        raise ValueError(f"speaker latents have shape {tuple(latent.shape)}, expected (N, T, {den.latent_dim})")
    N, T, Dz = latent.shape
    windows = -(-T // W)
    rows = latent.repeat_interleave(k, dim=0)                          # (N k, T, Dz), speaker-major
    out = torch.zeros(N * k, windows * W, Dz)                          # generated latents
    batches = range(0, N * k, batch_size)
    bar = tqdm(total=len(batches) * windows, desc="sampling", disable=not progress, leave=False)
    for b, first in enumerate(batches):
        g = torch.Generator(model.device).manual_seed(derive_seed(seed, b))
        spk = rows[first:first + batch_size].to(model.device)         # (B, T, Dz)
        gen = torch.zeros(spk.shape[0], windows * W, Dz, device=model.device)
        hide = torch.full((spk.shape[0],), online, dtype=torch.bool, device=model.device)
        for w in range(windows):
            start = torch.full((spk.shape[0],), w * W, dtype=torch.long, device=model.device)
            context, mask, prev = window_condition(spk, gen, start, W, P, F, hide)
            gen[:, w * W:(w + 1) * W] = model.diffusion.sample(
                context, mask, prev, steps=steps, eta=eta, guidance=guidance, spacing=opts.spacing,
                sampler=sampler, generator=g)                          # (B, W, Dz)
            bar.update()
        out[first:first + batch_size] = gen.float().cpu()
    bar.close()
    out = out[:, :T].reshape(N, k, T, Dz)
    return {**model.decode(out), "latent": out}


# ----------------------------------------------------------------------------- CLI

def cli_sample(args) -> int:
    """``python -m reactdiff_lite sample --checkpoint CKPT --data DIR --split test --k 10 --out preds.npz``."""
    from reactdiff_lite.data.react import load_split

    model = load_model(args.checkpoint, args.device)
    split = load_split(args.data, args.split, frame_size=model.config.data.frame_size,
                       modalities=model_modalities(model.autoencoder))
    speaker = encode_latents(model.autoencoder, split, model.encode_chunk, device=model.device)[split.speaker_index]
    pred = generate(model, speaker, args.k, steps=args.steps, eta=args.eta, guidance=args.guidance,
                    online=args.online, seed=args.seed, progress=True)
    save_predictions(args.out, pred)
    N, K, T = pred["emotion"].shape[:3]
    print(f"wrote {args.out}: emotion ({N}, {K}, {T}, 25), tdmm ({N}, {K}, {T}, 58) "
          f"for the {args.split} split of {args.data} ({'online' if args.online else 'offline'})")
    return 0


def model_modalities(autoencoder: ReactionAutoencoder) -> tuple[str, ...]:
    """The person keys the autoencoder reads (and the 3DMM it reconstructs)."""
    enc = autoencoder.cfg.encoder
    keys = ["emotion"]
    if enc.tdmm or autoencoder.cfg.tdmm_weight > 0:
        keys.append("tdmm")
    if enc.audio:
        keys.append("audio")
    if enc.video:
        keys.append("frames")
    return tuple(keys)


def save_predictions(path: str | Path, pred: Mapping[str, Tensor]) -> Path:
    """Write ``emotion`` (N, K, T, 25) and ``tdmm`` (N, K, T, 58) to an .npz, atomically."""

    arrays = {key: pred[key].numpy().astype(np.float32) for key in ("emotion", "tdmm")}

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    return atomic_write(path, write)
