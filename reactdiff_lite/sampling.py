"""Sampling: K listener reactions per speaker, offline or online (ReactDiff, Sec. 3.4).

A reaction is generated window by window in the normalised latent space of the stage-1
autoencoder, then decoded to emotion (25) and 3DMM (58)::

    c      = norm(E(speaker))                               speaker latents, (N, T, Dz)
    z^(w)  ~ p_θ(z | c[wW − P : (w+1)W + F], z^(w−1)[−P:])  window w of W frames, DDIM/DDPM
    ŷ      = D(denorm([z^(0), z^(1), …]))                   emotion (N, K, T, 25), 3DMM (N, K, T, 58)

with P = ``context_before`` speaker frames (and as many previously generated listener
frames) before the window and F = ``context_after`` speaker frames after it. E is the
frozen stage-1 encoder, or the speaker encoder trained with the denoiser when
``stage2.speaker_encoder`` is ``trainable`` (``ReactionModel.encode`` picks it).

- **Offline** (REACT task 1): the whole speaker clip is known; window w sees the F future
  speaker frames after it.
- **Online** (REACT task 2): window w sees speaker windows ≤ w only: the F frames after the
  window are hidden. The speaker is encoded in chunks of the stage-1 window, aligned with
  the generated windows, so no latent of window w carries information from later frames.
  With the default model this is *window-causal*: a window's first frame still depends on
  the later speaker frames of its window. The **frame-causal** model of the online track
  (``configs/stage{1,2}_online.yaml``: causal encoders and denoiser, F = 0) makes listener
  frame t a function of speaker frames ≤ t only, in either mode (``windows.lookahead_frames``).

Each of the K reactions of a speaker starts from its own noise x_T ~ N(0, I), so fresh
noise gives a different appropriate reaction. Classifier-free guidance mixes the
conditional and unconditional predictions, ε = ε_u + s (ε_c − ε_u).

API: ``load_model(checkpoint) -> ReactionModel`` (``reactdiff_lite.latents``) and
``generate(model, speaker, k, …)``;
``cli_sample`` is ``python -m reactdiff_lite sample``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from reactdiff_lite.latents import ReactionModel, load_model, model_modalities
from reactdiff_lite.utils import atomic_write, derive_seed
from reactdiff_lite.windows import window_condition

__all__ = ["ReactionModel", "load_model", "generate", "save_predictions", "cli_sample"]


@torch.no_grad()
def generate(
    model: ReactionModel,
    speaker: Mapping[str, Tensor] | Tensor,
    k: int = 10,
    *,
    steps: int | None = None,
    eta: float | None = None,
    guidance: float | None = None,
    sampler: str | None = None,
    online: bool = False,
    seed: int = 0,
    batch_size: int = 256,
    progress: bool = False,
) -> dict[str, Tensor]:
    """Generate ``k`` listener reactions for each of N speakers.

    Args:
        model: from ``load_model``.
        speaker: a person batch of (N, T, …) tensors, or speaker latents (N, T, Dz) from
            ``model.encode`` (to skip re-encoding in interactive loops).
        k: reactions per speaker.
        steps, eta, guidance, sampler: DDIM steps, DDIM η, guidance scale s and ``"ddim"`` or
            ``"ddpm"``; None takes the config's ``sample`` section.
        online: window w sees speaker windows ≤ w only (window-causal; the frame-causal
            online model, REACT task 2, is causal whatever this flag says).
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
    rows = latent.repeat_interleave(k, dim=0)  # (N k, T, Dz), speaker-major
    out = torch.zeros(N * k, windows * W, Dz)  # generated latents
    batches = range(0, N * k, batch_size)
    bar = tqdm(total=len(batches) * windows, desc="sampling", disable=not progress, leave=False)
    for b, first in enumerate(batches):
        g = torch.Generator(model.device).manual_seed(derive_seed(seed, b))
        spk = rows[first : first + batch_size].to(model.device)  # (B, T, Dz)
        gen = torch.zeros(spk.shape[0], windows * W, Dz, device=model.device)
        hide = torch.full((spk.shape[0],), online, dtype=torch.bool, device=model.device)
        for w in range(windows):
            start = torch.full((spk.shape[0],), w * W, dtype=torch.long, device=model.device)
            context, mask, prev = window_condition(spk, gen, start, W, P, F, hide)
            gen[:, w * W : (w + 1) * W] = model.diffusion.sample(
                context,
                mask,
                prev,
                steps=steps,
                eta=eta,
                guidance=guidance,
                spacing=opts.spacing,
                sampler=sampler,
                generator=g,
            )  # (B, W, Dz)
            bar.update()
        out[first : first + batch_size] = gen.float().cpu()
    bar.close()
    out = out[:, :T].reshape(N, k, T, Dz)
    return {**model.decode(out), "latent": out}


# ----------------------------------------------------------------------------- CLI


def cli_sample(args) -> int:
    """``python -m reactdiff_lite sample --checkpoint CKPT --data DIR --split test --k 10 --out preds.npz``."""
    from reactdiff_lite.data.cache import load_split

    model = load_model(args.checkpoint, args.device)
    split = load_split(
        args.data, args.split, frame_size=model.config.data.frame_size, modalities=model_modalities(model.autoencoder)
    )
    speaker = model.speaker_latents(split)
    pred = generate(
        model,
        speaker,
        args.k,
        steps=args.steps,
        eta=args.eta,
        guidance=args.guidance,
        online=args.online,
        seed=args.seed,
        progress=True,
    )
    save_predictions(args.out, pred)
    shapes = ", ".join(f"{key} {tuple(pred[key].shape)}" for key in ("emotion", "tdmm"))
    mode = "online" if args.online else "offline"
    print(f"wrote {args.out}: {shapes} for the {args.split} split of {args.data} ({mode})")
    return 0


def save_predictions(path: str | Path, pred: Mapping[str, Tensor]) -> Path:
    """Write ``emotion`` (N, K, T, 25) and ``tdmm`` (N, K, T, 58) to an .npz, atomically."""

    arrays = {key: pred[key].numpy().astype(np.float32) for key in ("emotion", "tdmm")}

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    return atomic_write(path, write)
