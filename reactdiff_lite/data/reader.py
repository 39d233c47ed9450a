"""The REACT reader: split lists, mirrored items, neighbours and the per-file readers.

Reads real REACT 2023/2024 directories and the synthetic dyadic world through one code
path (the layout is in ``data/README.md``)::

    ROOT/{train,val,test}.csv                 ",speaker_path,listener_path"
    ROOT/neighbour_emotion_<split>.npy         (2M, 2M) appropriate-reaction matrix
    ROOT/<split>/Video_files|cropped_face/<clip>.mp4   or a folder <clip>/1.png..
    ROOT/<split>/Audio_files/<clip>.wav        any rate, mono or stereo
    ROOT/<split>/Emotion/<clip>.csv            header + F rows x 25 (Emotion persons may be P1/P2)
    ROOT/<split>/3D_FV_files/<clip>.npy        (F, 1, 58); other npy files beside it are ignored

Items are **mirrored**: for M pairs, items 0..M-1 have column 1 speaking and column 2
listening; items M..2M-1 swap the roles, so N = 2M. Clip files hold F frames (751 in
REACT); models use the first T = F - 1 (750), truncated explicitly (:mod:`.cache`).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..schema import AUDIO_RATE, EMOTION_DIM, FPS, TDMM_DIM
from ..utils import UserError

MODALITIES = ("emotion", "tdmm", "audio", "frames")
_VIDEO_DIRS = ("Video_files", "cropped_face")
# The 2024 release files Emotion under P1/P2 while video persons keep their names: NoXI's
# Expert/Novice, and RECOLA's odd/even numbered persons (P25/P26, ...).
EMOTION_PERSON = {"Expert_video": "P1", "Novice_video": "P2"}


class DataError(UserError):
    """A REACT-format file is missing or malformed; the message names the file."""


@dataclass(frozen=True)
class Item:
    """One evaluation item: a speaker clip and the listener clip recorded with it."""

    index: int  # position in the mirrored list (0..2M-1)
    row: int  # row of the split CSV (0..M-1)
    speaker: str  # clip path relative to ROOT/<split>/<modality dir>, e.g. NoXI/<session>/Expert_video/1
    listener: str
    mirrored: bool  # True for items M..2M-1 (column 2 speaks)


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
    return [Item(i, i, a, b, False) for i, (a, b) in enumerate(pairs)] + [
        Item(len(pairs) + i, i, b, a, True) for i, (a, b) in enumerate(pairs)
    ]


def clip_order(items: list[Item]) -> list[str]:
    """Every person-clip of the items once, in split-list order (column 1, column 2 per row)."""
    seen: dict[str, None] = {}
    for it in items:
        if not it.mirrored:
            seen.setdefault(it.speaker)
            seen.setdefault(it.listener)
    return list(seen)


def common_length(lengths: dict[str, list[int]]) -> tuple[str, int]:
    """The split's clip length F: the most common frame count of the first modality present
    among emotion, 3DMM, video and audio. Returns (that modality, F)."""
    reference = next(m for m in ("emotion", "tdmm", "frames", "audio") if m in lengths)
    return reference, int(np.bincount(lengths[reference]).argmax())


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
        raise DataError(
            f"neighbour matrix {path} has shape {a.shape}, expected ({n_items}, {n_items}) for {n_items} mirrored items"
        )
    if not np.isin(a, (0, 1)).all():
        raise DataError(f"neighbour matrix {path} has values other than 0/1")
    empty = np.flatnonzero(a.sum(1) == 0)
    if len(empty):
        raise DataError(
            f"neighbour matrix {path} has {len(empty)} empty rows (first: item {empty[0]}): "
            "every speaker needs at least one appropriate reaction"
        )
    return a.astype(bool)


# ------------------------------------------------------------------------------ files
def emotion_person(person: str) -> str | None:
    """2024 Emotion person name of a video person: Expert/Novice -> P1/P2; RECOLA P25/P41/P45
    (odd) -> P1, even -> P2. None when the name has no P1/P2 form (or already is one)."""
    if person in EMOTION_PERSON:
        return EMOTION_PERSON[person]
    m = re.fullmatch(r"P(\d+)", person)
    return None if m is None or person in ("P1", "P2") else ("P1" if int(m.group(1)) % 2 else "P2")


def emotion_csv_2024(split_dir: Path, clip: str) -> Path | None:
    """Where the 2024 release files a clip's Emotion CSV: ``Emotion/<site>/<session>/P1|P2/<n>.csv``
    (None when the person has no P1/P2 name). The generator writes there too."""
    parent, _, name = clip.rpartition("/")
    mapped = emotion_person(Path(parent).name)
    return None if mapped is None else split_dir / "Emotion" / Path(parent).parent / mapped / f"{name}.csv"


def clip_files(root: str | Path, split: str, clip: str) -> dict[str, Path | None]:
    """Where each modality of one person-clip lives (None when no candidate exists).

    Tries the layout variants: ``Video_files`` or ``cropped_face``, mp4 or a PNG folder,
    Emotion under the video person name or its P1/P2 name.
    """
    base = Path(root) / split
    found: dict[str, Path | None] = {}
    video = [base / d / f"{clip}.mp4" for d in _VIDEO_DIRS] + [base / d / clip for d in _VIDEO_DIRS]
    found["frames"] = next((p for p in video if p.is_file() or (p.is_dir() and any(p.glob("*.png")))), None)
    emotion = [base / "Emotion" / f"{clip}.csv", emotion_csv_2024(base, clip)]
    found["emotion"] = next((p for p in emotion if p is not None and p.is_file()), None)
    tdmm = base / "3D_FV_files" / f"{clip}.npy"
    found["tdmm"] = tdmm if tdmm.is_file() else None
    audio = base / "Audio_files" / f"{clip}.wav"
    found["audio"] = audio if audio.is_file() else None
    return found


def expected_location(root: str | Path, split: str, clip: str, modality: str) -> str:
    """Where a missing file of ``modality`` should be, for error messages."""
    base = Path(root) / split
    where = {
        "frames": f"{base}/Video_files/{clip}.mp4 (or cropped_face/, or a PNG folder)",
        "emotion": f"{base}/Emotion/{clip}.csv (or its P1/P2 name)",
        "tdmm": f"{base}/3D_FV_files/{clip}.npy",
        "audio": f"{base}/Audio_files/{clip}.wav",
    }
    return where[modality]


def _require_finite(path: Path, kind: str, a: np.ndarray) -> np.ndarray:
    """``a`` unchanged, or a DataError naming the file and the first frame with NaN/inf."""
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
    return _require_finite(path, "Emotion CSV", values)


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
    return _require_finite(path, "3DMM npy", a.astype(np.float32))


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
    return _require_finite(path, "audio WAV", x)


def probe_audio(path: Path) -> tuple[int, int, int]:
    """(whole video frames, sample rate, channels) of a wav without reading the samples."""
    import soundfile as sf

    try:
        meta = sf.info(path)
    except Exception as err:  # noqa: BLE001
        raise DataError(f"audio WAV {path} is unreadable: {err}") from err
    return int(meta.frames * FPS / meta.samplerate), meta.samplerate, meta.channels


def _grey(frame) -> np.ndarray:
    """A decoded PyAV frame -> (H, W) uint8 luma in full range."""
    if frame.format.name in ("yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p"):
        plane = frame.planes[0]
        y = np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)[:, : frame.width]
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


def _read_png_folder(path: Path, size: int, max_frames: int | None) -> torch.Tensor:
    """A REACT 2023 frame folder ``1.png, 2.png, ..`` -> (F, size, size) uint8 grey."""
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


def read_video(path: str | Path, size: int, max_frames: int | None = None) -> torch.Tensor:
    """mp4 file or PNG frame folder (``1.png..``) -> (F, size, size) uint8 grey."""
    path = Path(path)
    if path.is_dir():
        return _read_png_folder(path, size, max_frames)
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


def probe_video(path: Path) -> tuple[int, float]:
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
