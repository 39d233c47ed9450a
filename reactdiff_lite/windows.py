"""Windows of person behaviour: the one place that cuts clips into training/sampling windows.

Stage 1 trains on windows of W_1 frames of any person; stage 2 denoises the listener in
windows of W frames, conditioned on the speaker frames around the window and on the P
listener frames just before it (ReactDiff, Sec. 3.3; ``docs/paper_vs_lite.md`` lists how
this condition differs from the official code)::

    window w:   listener frames [wW, (w+1)W)
    condition:  speaker frames  [wW − P, (w+1)W + F)   (zero and masked outside the clip;
                                                        online rows also mask those ≥ (w+1)W)
                listener frames [wW − P, wW)           (ground truth in training, generated in sampling)

What a listener frame may depend on (``lookahead_frames``). The default model is
*window-causal* online: the whole window is denoised jointly with bidirectional attention,
and each speaker latent depends on its whole encoding chunk, so listener frame wW depends
on speaker frames up to (w+1)W − 1 (W − 1 = 49 later frames), and offline up to the end of
the chunk holding frame (w+1)W + F − 1. The *frame-causal* model of the online track
(``autoencoder.causal`` and ``diffusion.denoiser.causal``, ``configs/stage*_online.yaml``)
masks every attention to earlier frames and pads every convolution and STFT on the left,
so listener frame t depends on speaker frames <= t only (REACT's online task): the same
window stepping, with a look-ahead of 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Union

import torch
from torch import Tensor

from reactdiff_lite.schema import SAMPLES_PER_FRAME

if TYPE_CHECKING:
    from reactdiff_lite.data.cache import SplitData

PersonSource = Union[Mapping[str, Tensor], "SplitData"]  # a person batch dict, or a split's clips


def person_window(person: Mapping[str, Tensor], start: int, length: int) -> dict[str, Tensor]:
    """Frames ``[start, start + length)`` of a person batch (audio sliced at 640 samples per frame)."""
    out = {}
    for key, x in person.items():
        scale = SAMPLES_PER_FRAME if key == "audio" else 1
        out[key] = x[:, start * scale : (start + length) * scale]
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
    parts = [take_windows(source, rows[i : i + 1], int(s), length) for i, s in enumerate(starts.tolist())]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def rows_and_frames(source: PersonSource) -> tuple[int, int]:
    """(rows, frames) of a person batch, or (clips, frames) of a split."""
    if isinstance(source, Mapping):
        return tuple(source["emotion"].shape[:2])
    return len(source.clip_ids), source.n_frames


def gather_frames(x: Tensor, index: Tensor) -> Tensor:
    """``x[b, index[b, s]]`` for every row: (B, T, D), (B, S) long -> (B, S, D)."""
    return torch.gather(x, 1, index[..., None].expand(-1, -1, x.shape[-1]))


def window_condition(
    speaker: Tensor, listener: Tensor, start: Tensor, window: int, before: int, after: int, online: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """The denoiser's condition for listener windows starting at ``start``.

    Frames outside the clip are zero and masked; online rows also mask the speaker frames
    after the window. The previous listener frames are the ``before`` frames just before
    the window: ground truth in training, generated ones in sampling.

    Args:
        speaker: speaker latents (B, T, Dz). listener: listener latents (B, T', Dz), T' ≥ start.
        start: first frame of each window (B,) long. window: W. before: P. after: F.
        online: (B,) bool, hide the speaker frames after the window.
    Returns:
        speaker context (B, P + W + F, Dz), its visibility mask (B, P + W + F) bool and the
        previous listener frames (B, P, Dz).
    """
    T = speaker.shape[1]
    offsets = torch.arange(-before, window + after, device=start.device)  # (S,)
    idx = start[:, None] + offsets[None]  # (B, S) frame of each slot
    inside = (idx >= 0) & (idx < T)  # (B, S)
    context = gather_frames(speaker, idx.clamp(0, T - 1)) * inside[..., None]  # (B, S, Dz)
    mask = inside & ~(online[:, None] & (idx >= (start + window)[:, None]))  # (B, S)
    past = idx[:, :before]  # (B, P)
    prev = gather_frames(listener, past.clamp(0, max(listener.shape[1] - 1, 0))) * (past >= 0)[..., None]
    return context, mask, prev  # (B, S, Dz), (B, S), (B, P, Dz)


def listener_target(listener: Tensor, start: Tensor, window: int) -> Tensor:
    """The listener latents of each window: (B, T, Dz), (B,) -> (B, W, Dz)."""
    return gather_frames(listener, start[:, None] + torch.arange(window, device=start.device)[None])


def context_chunks(start: Tensor, before: int, span: int, chunk: int, frames: int) -> dict[str, Tensor]:
    """The aligned encoding chunks that cover each window's speaker context.

    Context slot j of the window starting at s is speaker frame s − P + j (j < span = P + W + F).
    The speaker is encoded in aligned chunks of C frames, ``[cC, (c+1)C)``, as in
    ``latents.encode_latents``; the chunks c0 … c0 + K − 1, c0 = ⌊(s − P) / C⌋, cover the
    context, with K = ⌈(span − 1) / C⌉ + 1 the most any start needs.

    Args:
        start: (B,) long first frames of the windows. before: P. span: P + W + F.
        chunk: C. frames: T, frames per clip.
    Returns:
        ``chunk_index`` (B, K, C) long frame indices (clamped into the clip),
        ``chunk_valid`` (B, K) bool (inside the clip and overlapping the context),
        ``chunk_length`` (B, K) long frames of the chunk inside the clip, and
        ``chunk_offset`` (B,) long: slot j is frame ``offset + j`` of the K chunks laid end to end.
    """
    K = (span + chunk - 2) // chunk + 1
    first_frame = start - before  # (B,)
    first = torch.div(first_frame, chunk, rounding_mode="floor")  # c0, (B,)
    begin = (first[:, None] + torch.arange(K, device=start.device)) * chunk  # (B, K) first frame of each chunk
    valid = (begin >= 0) & (begin < frames) & (begin < (first_frame + span)[:, None])  # (B, K)
    return {
        "chunk_index": (begin[..., None] + torch.arange(chunk, device=start.device)).clamp(0, frames - 1),
        "chunk_valid": valid,
        "chunk_length": (frames - begin).clamp(0, chunk),
        "chunk_offset": first_frame - first * chunk,
    }


def chunk_context(z: Tensor, offset: Tensor, span: int) -> Tensor:
    """The speaker context from the latents of its chunks: (B, K, C, Dz), (B,) -> (B, span, Dz)."""
    flat = z.flatten(1, 2)  # (B, K C, Dz), the chunks end to end
    return gather_frames(flat, offset[:, None] + torch.arange(span, device=offset.device)[None])


def lookahead_frames(window: int, after: int, chunk: int, encoder_causal: bool, denoiser_causal: bool) -> int:
    """The algorithmic look-ahead: how many speaker frames after a listener frame it may depend on.

    The worst frame is a window's first, wW. Its window sees the speaker up to frame
    e = (w+1)W + F − 1 (F = ``after``, 0 online). A causal denoiser lets frame wW + j see
    speaker frames <= wW + j only, and needs a causal encoder: look-ahead 0. A causal encoder
    alone makes latent e depend on frames <= e: L = W + F − 1. Otherwise latent e depends on
    its whole encoding chunk of C frames (chunks are aligned with windows, W a multiple of C):
    L = ⌈(W + F) / C⌉ C − 1.

    Args:
        window: W. after: F visible after the window (0 online). chunk: C, frames per encoded chunk.
        encoder_causal: ``autoencoder.causal``. denoiser_causal: ``diffusion.denoiser.causal``.
    Returns:
        L in frames (divide by 25 for seconds).
    """
    if denoiser_causal:
        return 0
    if encoder_causal:
        return window + after - 1
    return -(-(window + after) // chunk) * chunk - 1
