"""The REACT reader: split lists, mirrored items, neighbours, a tensor cache and windows.

Reads real REACT 2023/2024 directories and the synthetic dyadic world through one code
path (``react_benchmark.md``)::

    ROOT/{train,val,test}.csv                 ",speaker_path,listener_path"
    ROOT/neighbour_emotion_<split>.npy         (2M, 2M) appropriate-reaction matrix
    ROOT/<split>/Video_files|cropped_face/<clip>.mp4   or a folder <clip>/1.png..
    ROOT/<split>/Audio_files/<clip>.wav        any rate, mono or stereo
    ROOT/<split>/Emotion/<clip>.csv            header + F rows x 25 (Emotion persons may be P1/P2)
    ROOT/<split>/3D_FV_files/<clip>.npy        (F, 1, 58); other npy files beside it are ignored

Items are **mirrored**: for M pairs, items 0..M-1 have column 1 speaking and column 2
listening; items M..2M-1 swap the roles, so N = 2M. Clip files hold F frames (751 in
REACT); models use the first T = F - 1 (750), truncated explicitly.

Decoding mp4/wav for every epoch would dominate training on a CPU, so
:func:`load_split` decodes each person-clip once into tensors (grey frames at model
resolution, 16 kHz audio) and caches them in one file keyed on the files' sizes and
modification times and on the configuration.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..utils import atomic_torch_save
from .schema import (AUDIO_RATE, EMOTION_DIM, FPS, SAMPLES_PER_FRAME, SPLITS, TDMM_DIM)

CACHE_VERSION = 1
MODALITIES = ("emotion", "tdmm", "audio", "frames")
_VIDEO_DIRS = ("Video_files", "cropped_face")
# 2024 release: Emotion persons are P1/P2 while video persons keep their names.
_EMOTION_PERSON = {"Expert_video": "P1", "Novice_video": "P2"}


class DataError(ValueError):
    """A REACT-format file is missing or malformed; the message names the file."""


@dataclass(frozen=True)
class Item:
    """One evaluation item: a speaker clip and the listener clip recorded with it."""
    index: int        # position in the mirrored list (0..2M-1)
    row: int          # row of the split CSV (0..M-1)
    speaker: str      # clip path relative to ROOT/<split>/<modality dir>, e.g. NoXI/<session>/Expert_video/1
    listener: str
    mirrored: bool    # True for items M..2M-1 (column 2 speaks)


# ------------------------------------------------------------------------------ lists
def read_pairs(root: str | Path, split: str) -> list[tuple[str, str]]:
    """The (speaker_path, listener_path) rows of ``ROOT/<split>.csv``."""
    path = Path(root) / f"{split}.csv"
    if not path.exists():
        raise DataError(f"split list {path} is missing")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or [c.strip() for c in rows[0][1:3]] != ["speaker_path", "listener_path"]:
        raise DataError(f"split list {path} must start with the header ',speaker_path,listener_path'")
    pairs = []
    for i, row in enumerate(rows[1:], 2):
        if len(row) < 3 or not row[1].strip() or not row[2].strip():
            raise DataError(f"split list {path} line {i} has {len(row)} fields, expected 3")
        pairs.append((row[1].strip().strip("/"), row[2].strip().strip("/")))
    if not pairs:
        raise DataError(f"split list {path} has no rows")
    return pairs


def read_items(root: str | Path, split: str) -> list[Item]:
    """Mirrored items: 0..M-1 column 1 speaks, M..2M-1 column 2 speaks."""
    pairs = read_pairs(root, split)
    return ([Item(i, i, a, b, False) for i, (a, b) in enumerate(pairs)]
            + [Item(len(pairs) + i, i, b, a, True) for i, (a, b) in enumerate(pairs)])


def load_neighbours(root: str | Path, split: str, n_items: int) -> np.ndarray:
    """``neighbour_emotion_<split>.npy`` as an (N, N) bool matrix; A[k, j] means the
    listener of item j is an appropriate reaction to the speaker of item k."""
    path = Path(root) / f"neighbour_emotion_{split}.npy"
    if not path.exists():
        raise DataError(f"neighbour matrix {path} is missing")
    try:
        a = np.load(path, allow_pickle=False)
    except Exception as err:  # noqa: BLE001 - any unreadable npy
        raise DataError(f"neighbour matrix {path} is unreadable: {err}") from err
    if a.shape != (n_items, n_items):
        raise DataError(f"neighbour matrix {path} has shape {a.shape}, expected ({n_items}, {n_items}) "
                        f"for {n_items} mirrored items")
    if not np.isin(a, (0, 1)).all():
        raise DataError(f"neighbour matrix {path} has values other than 0/1")
    empty = np.flatnonzero(a.sum(1) == 0)
    if len(empty):
        raise DataError(f"neighbour matrix {path} has {len(empty)} empty rows (first: item {empty[0]}): "
                        "every speaker needs at least one appropriate reaction")
    return a.astype(bool)


# ------------------------------------------------------------------------------ files
def _emotion_person(person: str) -> str | None:
    """2024 Emotion person name: Expert/Novice -> P1/P2; RECOLA P25/P41/P45 (odd) -> P1, even -> P2."""
    if person in _EMOTION_PERSON:
        return _EMOTION_PERSON[person]
    m = re.fullmatch(r"P(\d+)", person)
    return None if m is None or person in ("P1", "P2") else ("P1" if int(m.group(1)) % 2 else "P2")


def clip_files(root: str | Path, split: str, clip: str) -> dict[str, Path | None]:
    """Where each modality of one person-clip lives (None when no candidate exists).

    Tries the layout variants: ``Video_files`` or ``cropped_face``, mp4 or a PNG folder,
    Emotion under the video person name or its P1/P2 name.
    """
    base = Path(root) / split
    parent, _, name = clip.rpartition("/")
    person = Path(parent).name
    found: dict[str, Path | None] = {}
    video = [base / d / f"{clip}.mp4" for d in _VIDEO_DIRS] + [base / d / clip for d in _VIDEO_DIRS]
    found["frames"] = next((p for p in video if p.is_file() or (p.is_dir() and any(p.glob("*.png")))), None)
    emotion = [base / "Emotion" / f"{clip}.csv"]
    mapped = _emotion_person(person)
    if mapped:
        emotion.append(base / "Emotion" / Path(parent).parent / mapped / f"{name}.csv")
    found["emotion"] = next((p for p in emotion if p.is_file()), None)
    tdmm = base / "3D_FV_files" / f"{clip}.npy"
    found["tdmm"] = tdmm if tdmm.is_file() else None
    audio = base / "Audio_files" / f"{clip}.wav"
    found["audio"] = audio if audio.is_file() else None
    return found


def _expected(root: str | Path, split: str, clip: str, modality: str) -> str:
    base = Path(root) / split
    where = {"frames": f"{base}/Video_files/{clip}.mp4 (or cropped_face/, or a PNG folder)",
             "emotion": f"{base}/Emotion/{clip}.csv (or its P1/P2 name)",
             "tdmm": f"{base}/3D_FV_files/{clip}.npy", "audio": f"{base}/Audio_files/{clip}.wav"}
    return where[modality]


def _finite(path: Path, kind: str, a: np.ndarray) -> np.ndarray:
    bad = ~np.isfinite(a)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise DataError(f"{kind} {path} has {int(bad.sum())} NaN/inf values (first in frame {row})")
    return a


def read_emotion(path: str | Path) -> np.ndarray:
    """Emotion CSV -> (F, 25) float32. One header row, no index column."""
    path = Path(path)
    try:
        lines = path.read_text().strip().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"Emotion CSV {path} is unreadable: {err}") from err
    if len(lines) < 2:
        raise DataError(f"Emotion CSV {path} has no data rows")
    widths = [line.count(",") + 1 for line in lines[1:]]
    bad = next((i for i, w in enumerate(widths) if w != EMOTION_DIM), None)
    if bad is not None:
        raise DataError(f"Emotion CSV {path} has {widths[bad]} columns, expected {EMOTION_DIM} (row {bad + 1})")
    try:
        values = np.array(",".join(lines[1:]).split(","), dtype=np.float32).reshape(-1, EMOTION_DIM)
    except ValueError as err:
        raise DataError(f"Emotion CSV {path} has a non-numeric value: {err}") from err
    return _finite(path, "Emotion CSV", values)


def read_tdmm(path: str | Path) -> np.ndarray:
    """3DMM npy (F, 1, 58) or (F, 58) -> (F, 58) float32."""
    path = Path(path)
    try:
        a = np.load(path, allow_pickle=False)
    except Exception as err:  # noqa: BLE001
        raise DataError(f"3DMM npy {path} is unreadable: {err}") from err
    if a.ndim == 3 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 2 or a.shape[1] != TDMM_DIM:
        raise DataError(f"3DMM npy {path} has shape {a.shape}, expected (F, 1, {TDMM_DIM})")
    return _finite(path, "3DMM npy", a.astype(np.float32))


def read_audio(path: str | Path, rate: int = AUDIO_RATE) -> np.ndarray:
    """WAV -> mono float32 at ``rate`` (channels averaged, resampled with torchaudio)."""
    import soundfile as sf

    path = Path(path)
    try:
        x, sr = sf.read(path, dtype="float32", always_2d=True)
    except Exception as err:  # noqa: BLE001 - soundfile raises several types
        raise DataError(f"audio WAV {path} is unreadable: {err}") from err
    x = x.mean(1)
    if sr != rate:
        import torchaudio.functional as AF
        x = AF.resample(torch.from_numpy(x), sr, rate).numpy()
    return _finite(path, "audio WAV", x)


def _grey(frame) -> np.ndarray:
    """A decoded PyAV frame -> (H, W) uint8 luma in full range."""
    if frame.format.name in ("yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p"):
        plane = frame.planes[0]
        y = np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)[:, :frame.width]
        if frame.format.name.startswith("yuvj"):
            return y.copy()
        return np.clip((y.astype(np.float32) - 16) * (255 / 219) + 0.5, 0, 255).astype(np.uint8)  # limited -> full
    return frame.to_ndarray(format="gray")


def _resize(frames: np.ndarray, size: int) -> torch.Tensor:
    """(F, H, W) uint8 -> (F, size, size) uint8 by area averaging."""
    x = torch.from_numpy(frames)
    if x.shape[1:] == (size, size):
        return x
    x = F.interpolate(x[:, None].float(), size=(size, size), mode="area")[:, 0]
    return x.round().clamp(0, 255).to(torch.uint8)


def read_video(path: str | Path, size: int, max_frames: int | None = None) -> torch.Tensor:
    """mp4 file or PNG frame folder (``1.png..``) -> (F, size, size) uint8 grey."""
    path = Path(path)
    if path.is_dir():
        from PIL import Image
        pngs = sorted(path.glob("*.png"), key=lambda p: (len(p.stem), p.stem))[:max_frames]
        if not pngs:
            raise DataError(f"video frame folder {path} holds no PNG frames")
        try:
            frames = [np.asarray(Image.open(p).convert("RGB")) for p in pngs]
        except Exception as err:  # noqa: BLE001
            raise DataError(f"video frame folder {path} has an unreadable PNG: {err}") from err
        rgb = np.stack(frames).astype(np.float32)
        grey = np.clip(rgb @ np.array([0.299, 0.587, 0.114], np.float32) + 0.5, 0, 255).astype(np.uint8)
        return _resize(grey, size)
    import av
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            frames = []
            for frame in container.decode(stream):
                frames.append(_grey(frame))
                if max_frames and len(frames) >= max_frames:
                    break
    except Exception as err:  # noqa: BLE001 - PyAV raises many error types
        raise DataError(f"video MP4 {path} is unreadable: {err}") from err
    if not frames:
        raise DataError(f"video MP4 {path} has no frames")
    return _resize(np.stack(frames), size)


def _probe_video(path: Path) -> tuple[int, float]:
    """(frames, fps) of an mp4 or PNG folder without decoding everything."""
    if path.is_dir():
        return len(list(path.glob("*.png"))), float(FPS)
    import av
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            n = stream.frames or sum(1 for p in container.demux(stream) if p.size)
            rate = float(stream.average_rate or 0)
            container.seek(0)
            next(container.decode(stream))  # the first frame must decode
    except Exception as err:  # noqa: BLE001
        raise DataError(f"video MP4 {path} is unreadable: {err}") from err
    return n, rate


# ------------------------------------------------------------------------ split data
@dataclass
class SplitData:
    """One split decoded into per-clip tensors, plus the mirrored item structure.

    Per-clip tensors (P person-clips, T model frames) are None when their modality is off:
    ``emotion`` (P, T, 25) float32, ``tdmm`` (P, T, 58) float32, ``audio`` (P, T*640)
    **int16** PCM at 16 kHz (half the memory; :meth:`person` and :class:`WindowDataset`
    return float32 in [-1, 1)), ``frames`` (P, T, H, W) uint8 grey.
    """
    root: Path
    split: str
    items: list[Item]
    neighbours: np.ndarray                 # (N, N) bool
    clip_ids: list[str]                    # P clip paths
    n_frames: int                          # T
    speaker_index: torch.Tensor            # (N,) long: clip of each item's speaker
    listener_index: torch.Tensor           # (N,) long
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
            return data[clips, start * SAMPLES_PER_FRAME:stop * SAMPLES_PER_FRAME].float() / 32768.0
        return data[clips, start:stop]

    def person(self, role: str, modalities=None) -> dict[str, torch.Tensor]:
        """(N, ...) tensors of every item's ``"speaker"`` or ``"listener"``:
        ``emotion (N,T,25)``, ``tdmm (N,T,58)``, ``audio (N,T*640)`` float32, ``frames (N,T,H,W)``."""
        index = {"speaker": self.speaker_index, "listener": self.listener_index}[role]
        return {k: self.clip_tensor(k, index) for k in (modalities or self.modalities)}

    @property
    def speaker_emotion(self) -> torch.Tensor:
        return self.clip_tensor("emotion", self.speaker_index)   # (N, T, 25)

    @property
    def listener_emotion(self) -> torch.Tensor:
        return self.clip_tensor("emotion", self.listener_index)  # (N, T, 25)


def _clip_order(items: list[Item]) -> list[str]:
    seen: dict[str, None] = {}
    for it in items:
        if not it.mirrored:
            seen.setdefault(it.speaker)
            seen.setdefault(it.listener)
    return list(seen)


def _locate(root: Path, split: str, clips: list[str], modalities) -> dict[str, list[Path]]:
    """Paths of every clip and modality; DataError listing every missing file."""
    paths: dict[str, list[Path]] = {m: [] for m in modalities}
    missing = []
    for clip in clips:
        found = clip_files(root, split, clip)
        for m in modalities:
            if found[m] is None:
                missing.append(f"missing {m} file for clip {clip}: expected {_expected(root, split, clip, m)}")
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

    raw: dict[str, list] = {m: [] for m in paths}
    n_clips = len(next(iter(paths.values())))
    for i in tqdm(range(n_clips), desc="decoding clips", leave=False, disable=n_clips < 50):
        for m, ps in paths.items():
            reader = {"emotion": read_emotion, "tdmm": read_tdmm, "audio": read_audio,
                      "frames": lambda p: read_video(p, frame_size)}[m]
            raw[m].append(reader(ps[i]))
    lengths = {m: [len(x) // (SAMPLES_PER_FRAME if m == "audio" else 1) for x in xs] for m, xs in raw.items()}
    reference = next(m for m in ("emotion", "tdmm", "frames", "audio") if m in raw)
    counts = np.bincount(lengths[reference])
    T = int(counts.argmax()) - 1  # the common clip length F, minus one: 751 -> 750
    if T < 1:
        raise DataError(f"clips of {reference} have only {T + 1} frames")
    short = [f"{m} file {paths[m][i]} has too few frames: {n}, expected at least {T}"
             for m, ns in lengths.items() for i, n in enumerate(ns) if n < T]
    if short:
        raise DataError("\n".join(short))
    return raw, T


def load_split(root: str | Path, split: str, *, frame_size: int = 32, cache_dir: str | Path | None = None,
               modalities=MODALITIES) -> SplitData:
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
    clips = _clip_order(items)
    paths = _locate(root, split, clips, modalities)
    config = {"split": split, "frame_size": frame_size, "modalities": modalities, "clips": clips}
    cache = None
    if cache_dir is not False:
        cache = Path(cache_dir or root / ".cache") / f"{split}-{_cache_key(paths, config)}.pt"
    if cache is not None and cache.exists():
        tensors = torch.load(cache, weights_only=True)
    else:
        raw, T = _decode(paths, frame_size)
        tensors = {"n_frames": T}
        if "emotion" in raw:
            tensors["emotion"] = torch.from_numpy(np.stack([x[:T] for x in raw["emotion"]]))      # (P, T, 25)
        if "tdmm" in raw:
            tensors["tdmm"] = torch.from_numpy(np.stack([x[:T] for x in raw["tdmm"]]))            # (P, T, 58)
        if "audio" in raw:
            n = T * SAMPLES_PER_FRAME
            audio = np.stack([np.pad(x[:n], (0, n - len(x[:n]))) for x in raw["audio"]])         # (P, T*640)
            tensors["audio"] = torch.from_numpy(np.clip(np.round(audio * 32768), -32768, 32767).astype(np.int16))
        if "frames" in raw:
            tensors["frames"] = torch.stack([x[:T] for x in raw["frames"]])                        # (P, T, H, W)
        if cache is not None:
            try:
                atomic_torch_save(tensors, cache)
            except OSError as err:
                print(f"warning: could not write the tensor cache {cache}: {err}", file=sys.stderr)
    index = {c: i for i, c in enumerate(clips)}
    return SplitData(root=root, split=split, items=items, neighbours=neighbours, clip_ids=clips,
                     n_frames=int(tensors["n_frames"]),
                     speaker_index=torch.tensor([index[it.speaker] for it in items]),
                     listener_index=torch.tensor([index[it.listener] for it in items]),
                     modalities=modalities, **{m: tensors[m] for m in modalities})


class WindowDataset(torch.utils.data.Dataset):
    """Windows of every item: ``speaker_<key>``, ``listener_<key>``, ``item``, ``start``.

    Args:
        split: a :class:`SplitData`.
        window: frames per window (50 in ReactDiff); None yields whole clips.
        stride: frames between window starts (default: ``window``, no overlap).
    """

    def __init__(self, split: SplitData, window: int | None = 50, stride: int | None = None):
        self.split = split
        self.window = window or split.n_frames
        if self.window > split.n_frames:
            raise ValueError(f"window {self.window} is longer than the clips ({split.n_frames} frames)")
        self.starts = list(range(0, split.n_frames - self.window + 1, stride or self.window))

    def __len__(self) -> int:
        return len(self.split) * len(self.starts)

    def __getitem__(self, i: int) -> dict:
        item, w = divmod(i, len(self.starts))
        start = self.starts[w]
        out = {"item": item, "start": start}
        for role, index in (("speaker", self.split.speaker_index), ("listener", self.split.listener_index)):
            for key in self.split.modalities:
                out[f"{role}_{key}"] = self.split.clip_tensor(key, int(index[item]), start, start + self.window)
        return out


# ----------------------------------------------------------------------------- check
def _check_clip(root: Path, split: str, clip: str, problems: list, lengths: dict, info: dict) -> None:
    """Validate one person-clip's files without full decoding; append problems."""
    for m, path in clip_files(root, split, clip).items():
        if path is None:
            problems.append(f"missing {m} file for clip {clip}: expected {_expected(root, split, clip, m)}")
            continue
        try:
            if m == "emotion":
                n = len(read_emotion(path))
                info.setdefault("emotion", [None, EMOTION_DIM])
            elif m == "tdmm":
                n = len(read_tdmm(path))
                info.setdefault("tdmm", [None, 1, TDMM_DIM])
            elif m == "audio":
                import soundfile as sf
                try:
                    meta = sf.info(path)
                except Exception as err:  # noqa: BLE001
                    raise DataError(f"audio WAV {path} is unreadable: {err}") from err
                n = int(meta.frames * FPS / meta.samplerate)
                info.setdefault("audio", {"rate": meta.samplerate, "channels": meta.channels})
            else:
                n, rate = _probe_video(path)
                info.setdefault("video", {"fps": rate, "layout": "png" if path.is_dir() else "mp4"})
                if path.is_file() and abs(rate - FPS) > 0.01:
                    problems.append(f"video MP4 {path} has {rate} fps, expected {FPS}")
            lengths.setdefault(m, []).append((n, path))
        except DataError as err:
            problems.append(str(err))


def check(root: str | Path, split: str | None = None) -> dict:
    """Validate a REACT-format directory; returns a summary with every problem found.

    Checks the split lists, that every listed clip has all four files, that each file
    parses (emotion CSV: 25 numeric finite columns; 3DMM: (F, 1, 58) finite; wav and mp4
    readable), that no file has fewer frames than the split's common clip length, and
    the neighbour matrix (shape (2M, 2M), 0/1, no empty row).
    """
    root = Path(root)
    splits = [split] if split else [s for s in SPLITS if (root / f"{s}.csv").exists()]
    summary: dict = {"root": str(root), "splits": {}, "problems": []}
    if not splits:
        summary["problems"].append(f"no split lists ({', '.join(s + '.csv' for s in SPLITS)}) in {root}")
    for s in splits:
        problems: list[str] = []
        try:
            items = read_items(root, s)
        except DataError as err:
            summary["problems"].append(str(err))
            continue
        clips = _clip_order(items)
        lengths: dict = {}
        info: dict = {}
        for clip in clips:
            _check_clip(root, s, clip, problems, lengths, info)
        frames = None
        if lengths:
            reference = next(m for m in ("emotion", "tdmm", "frames", "audio") if m in lengths)
            frames = int(np.bincount([n for n, _ in lengths[reference]]).argmax())
            for m, ns in lengths.items():
                # audio is counted in whole frames; allow one frame of rounding there
                slack = 1 if m == "audio" else 0
                problems += [f"{m} file {p} has too few frames: {n}, expected {frames}"
                             for n, p in ns if n < frames - slack]
        for key in ("emotion", "tdmm"):
            if key in info:
                info[key][0] = frames
        try:
            a = load_neighbours(root, s, len(items))
            neighbours = {"shape": list(a.shape), "mean_per_row": round(float(a.sum(1).mean()), 3)}
        except DataError as err:
            problems.append(str(err))
            neighbours = None
        summary["splits"][s] = {"pairs": len(items) // 2, "items": len(items), "clips": len(clips),
                                "clip_frames": frames, "model_frames": None if frames is None else frames - 1,
                                "files": info, "neighbours": neighbours, "problems": len(problems)}
        summary["problems"] += problems
    summary["ok"] = not summary["problems"]
    return summary


def cli_check(args) -> int:
    """``python -m reactdiff_lite data check --root DIR [--split S]``: JSON summary, exit 1 on problems."""
    summary = check(args.root, args.split)
    print(json.dumps(summary, indent=2))
    if not summary["ok"]:
        print(f"data check: {len(summary['problems'])} problems in {args.root}", file=sys.stderr)
        for p in summary["problems"]:
            print(f"  {p}", file=sys.stderr)
        return 1
    return 0
