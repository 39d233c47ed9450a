"""Splits as tensors: decode every person-clip once, cache the result, index mirrored items.

Decoding mp4/wav for every epoch would dominate training on a CPU, so
:func:`load_split` decodes each person-clip once into tensors (grey frames at model
resolution, 16 kHz audio) and caches them in one file keyed on the files' sizes and
modification times and on the configuration.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..schema import SAMPLES_PER_FRAME
from ..utils import atomic_torch_save
from .reader import (
    MODALITIES,
    DataError,
    Item,
    clip_files,
    clip_order,
    common_length,
    expected_location,
    load_neighbours,
    read_audio,
    read_emotion,
    read_items,
    read_tdmm,
    read_video,
)

CACHE_VERSION = 1


@dataclass
class SplitData:
    """One split decoded into per-clip tensors, plus the mirrored item structure.

    Per-clip tensors (P person-clips, T model frames) are None when their modality is off:
    ``emotion`` (P, T, 25) float32, ``tdmm`` (P, T, 58) float32, ``audio`` (P, T*640)
    **int16** PCM at 16 kHz (half the memory; :meth:`clip_tensor` and :meth:`person`
    return float32 in [-1, 1)), ``frames`` (P, T, H, W) uint8 grey.
    """

    root: Path
    split: str
    items: list[Item]
    neighbours: np.ndarray  # (N, N) bool
    clip_ids: list[str]  # P clip paths
    n_frames: int  # T
    speaker_index: torch.Tensor  # (N,) long: clip of each item's speaker
    listener_index: torch.Tensor  # (N,) long
    emotion: torch.Tensor | None = None
    tdmm: torch.Tensor | None = None
    audio: torch.Tensor | None = None
    frames: torch.Tensor | None = None
    modalities: tuple[str, ...] = field(default=MODALITIES)

    def __len__(self) -> int:
        return len(self.items)

    def clip_tensor(self, key: str, clips, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Frames [start, stop) of modality ``key`` for clip indices ``clips`` (audio as float32)."""
        stop = self.n_frames if stop is None else stop
        data = getattr(self, key)
        if data is None:
            raise KeyError(f"modality {key!r} was not loaded (modalities={self.modalities})")
        if key == "audio":
            return data[clips, start * SAMPLES_PER_FRAME : stop * SAMPLES_PER_FRAME].float() / 32768.0
        return data[clips, start:stop]

    def person(self, role: str, modalities=None) -> dict[str, torch.Tensor]:
        """(N, ...) tensors of every item's ``"speaker"`` or ``"listener"``:
        ``emotion (N,T,25)``, ``tdmm (N,T,58)``, ``audio (N,T*640)`` float32, ``frames (N,T,H,W)``."""
        index = {"speaker": self.speaker_index, "listener": self.listener_index}[role]
        return {k: self.clip_tensor(k, index) for k in (modalities or self.modalities)}

    @property
    def speaker_emotion(self) -> torch.Tensor:
        return self.clip_tensor("emotion", self.speaker_index)  # (N, T, 25)

    @property
    def listener_emotion(self) -> torch.Tensor:
        return self.clip_tensor("emotion", self.listener_index)  # (N, T, 25)


def _locate(root: Path, split: str, clips: list[str], modalities) -> dict[str, list[Path]]:
    """Paths of every clip and modality; DataError listing every missing file."""
    paths: dict[str, list[Path]] = {m: [] for m in modalities}
    missing = []
    for clip in clips:
        found = clip_files(root, split, clip)
        for m in modalities:
            if found[m] is None:
                missing.append(f"missing {m} file for clip {clip}: expected {expected_location(root, split, clip, m)}")
            paths[m].append(found[m])
    if missing:
        raise DataError(f"{len(missing)} missing files in {root / split}:\n  " + "\n  ".join(missing))
    return paths


def _cache_key(paths: dict[str, list[Path]], config: dict) -> str:
    stats = {m: [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in ps] for m, ps in paths.items()}
    blob = json.dumps({"config": config, "files": stats, "version": CACHE_VERSION}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def _decode(paths: dict[str, list[Path]], frame_size: int) -> tuple[dict[str, list], int]:
    """Read every file; returns per-modality lists and T (model frames = F - 1)."""
    from tqdm.auto import tqdm

    readers = {
        "emotion": read_emotion,
        "tdmm": read_tdmm,
        "audio": read_audio,
        "frames": lambda p: read_video(p, frame_size),
    }
    raw: dict[str, list] = {m: [] for m in paths}
    n_clips = len(next(iter(paths.values())))
    for i in tqdm(range(n_clips), desc="decoding clips", leave=False, disable=n_clips < 50):
        for m, ps in paths.items():
            raw[m].append(readers[m](ps[i]))
    lengths = {m: [len(x) // (SAMPLES_PER_FRAME if m == "audio" else 1) for x in xs] for m, xs in raw.items()}
    reference, clip_frames = common_length(lengths)
    T = clip_frames - 1  # models use F - 1 frames: 751 -> 750
    if T < 1:
        raise DataError(f"clips of {reference} have only {T + 1} frames")
    short = [
        f"{m} file {paths[m][i]} has too few frames: {n}, expected at least {T}"
        for m, ns in lengths.items()
        for i, n in enumerate(ns)
        if n < T
    ]
    if short:
        raise DataError("\n".join(short))
    return raw, T


def _stack(raw: dict[str, list], T: int) -> dict:
    """Per-modality lists of decoded files -> the cached tensors, truncated to T frames."""
    tensors: dict = {"n_frames": T}
    if "emotion" in raw:
        tensors["emotion"] = torch.from_numpy(np.stack([x[:T] for x in raw["emotion"]]))  # (P, T, 25)
    if "tdmm" in raw:
        tensors["tdmm"] = torch.from_numpy(np.stack([x[:T] for x in raw["tdmm"]]))  # (P, T, 58)
    if "audio" in raw:
        n = T * SAMPLES_PER_FRAME
        audio = np.stack([np.pad(x[:n], (0, n - len(x[:n]))) for x in raw["audio"]])  # (P, T*640)
        tensors["audio"] = torch.from_numpy(np.clip(np.round(audio * 32768), -32768, 32767).astype(np.int16))
    if "frames" in raw:
        tensors["frames"] = torch.stack([x[:T] for x in raw["frames"]])  # (P, T, H, W)
    return tensors


def load_split(
    root: str | Path, split: str, *, frame_size: int = 32, cache_dir: str | Path | None = None, modalities=MODALITIES
) -> SplitData:
    """Decode one split into tensors, through a cache.

    Args:
        root: REACT-format directory (synthetic or real).
        split: ``"train"``, ``"val"`` or ``"test"``.
        frame_size: grey video frames are resized to (frame_size, frame_size).
        cache_dir: where the tensor cache lives (default ``ROOT/.cache``); the cache is keyed
            on every file's size and mtime and on this configuration, written atomically,
            and reused when nothing changed. ``False`` disables it.
        modalities: any of ``"emotion", "tdmm", "audio", "frames"``.
    """
    root = Path(root)
    modalities = tuple(m for m in MODALITIES if m in modalities)
    items = read_items(root, split)
    neighbours = load_neighbours(root, split, len(items))
    clips = clip_order(items)
    paths = _locate(root, split, clips, modalities)
    config = {"split": split, "frame_size": frame_size, "modalities": modalities, "clips": clips}
    cache = None
    if cache_dir is not False:
        cache = Path(cache_dir or root / ".cache") / f"{split}-{_cache_key(paths, config)}.pt"
    if cache is not None and cache.exists():
        tensors = torch.load(cache, weights_only=True)
    else:
        tensors = _stack(*_decode(paths, frame_size))
        if cache is not None:
            try:
                atomic_torch_save(tensors, cache)
            except OSError as err:
                print(f"warning: could not write the tensor cache {cache}: {err}", file=sys.stderr)
    index = {c: i for i, c in enumerate(clips)}
    return SplitData(
        root=root,
        split=split,
        items=items,
        neighbours=neighbours,
        clip_ids=clips,
        n_frames=int(tensors["n_frames"]),
        speaker_index=torch.tensor([index[it.speaker] for it in items]),
        listener_index=torch.tensor([index[it.listener] for it in items]),
        modalities=modalities,
        **{m: tensors[m] for m in modalities},
    )


def shuffle_audio(data: SplitData, seed: int = 0) -> SplitData:
    """A copy of ``data`` in which every clip carries another clip's audio (a control).

    The clips' audio rows are permuted by a fixed derangement (a random cycle through all
    clips, seeded by ``seed`` and the split name), so no clip keeps its own audio and the
    audio says nothing about the clip's face or partner, while its statistics are unchanged.
    """
    if data.audio is None:
        return data
    order = np.random.default_rng([seed, *data.split.encode()]).permutation(len(data.clip_ids))
    source = np.empty_like(order)
    source[order] = np.roll(order, -1)  # clip order[i] takes the audio of clip order[i + 1]
    return dataclasses.replace(data, audio=data.audio[torch.from_numpy(source)])
