"""``data check``: validate a REACT-format directory and report every problem at once.

Real downloads are known to miss files; :func:`check` lists every missing or malformed
file of every split (without decoding video or audio fully), and the CLI exits 1 when
it finds any.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..schema import EMOTION_DIM, FPS, SPLITS, TDMM_DIM
from .reader import (
    DataError,
    clip_files,
    clip_order,
    common_length,
    expected_location,
    load_neighbours,
    probe_audio,
    probe_video,
    read_emotion,
    read_items,
    read_tdmm,
)


def _frames_in(modality: str, path: Path, problems: list, info: dict) -> int:
    """Frames in one file (parsing CSV/npy, probing wav/mp4); records its format in ``info``."""
    if modality == "emotion":
        n = len(read_emotion(path))
        info.setdefault("emotion", [None, EMOTION_DIM])
    elif modality == "tdmm":
        n = len(read_tdmm(path))
        info.setdefault("tdmm", [None, 1, TDMM_DIM])
    elif modality == "audio":
        n, rate, channels = probe_audio(path)
        info.setdefault("audio", {"rate": rate, "channels": channels})
    else:
        n, rate = probe_video(path)
        info.setdefault("video", {"fps": rate, "layout": "png" if path.is_dir() else "mp4"})
        if path.is_file() and abs(rate - FPS) > 0.01:
            problems.append(f"video MP4 {path} has {rate} fps, expected {FPS}")
    return n


def _check_clip(root: Path, split: str, clip: str, problems: list, lengths: dict, info: dict) -> None:
    """Validate one person-clip's files without full decoding; append problems."""
    for modality, path in clip_files(root, split, clip).items():
        if path is None:
            where = expected_location(root, split, clip, modality)
            problems.append(f"missing {modality} file for clip {clip}: expected {where}")
            continue
        try:
            lengths.setdefault(modality, []).append((_frames_in(modality, path, problems, info), path))
        except DataError as err:
            problems.append(str(err))


def _short_files(lengths: dict) -> tuple[int | None, list[str]]:
    """The split's common clip length F and every file shorter than it."""
    if not lengths:
        return None, []
    _, frames = common_length({m: [n for n, _ in ns] for m, ns in lengths.items()})
    problems = []
    for modality, ns in lengths.items():
        slack = 1 if modality == "audio" else 0  # audio is counted in whole frames: one frame of rounding
        problems += [
            f"{modality} file {p} has too few frames: {n}, expected {frames}" for n, p in ns if n < frames - slack
        ]
    return frames, problems


def _check_split(root: Path, split: str, summary: dict) -> None:
    """Check one split; adds its summary and its problems to ``summary``."""
    try:
        items = read_items(root, split)
    except DataError as err:
        summary["problems"].append(str(err))
        return
    clips = clip_order(items)
    problems: list[str] = []
    lengths: dict = {}
    info: dict = {}
    for clip in clips:
        _check_clip(root, split, clip, problems, lengths, info)
    frames, short = _short_files(lengths)
    problems += short
    for key in ("emotion", "tdmm"):
        if key in info:
            info[key][0] = frames
    try:
        a = load_neighbours(root, split, len(items))
        neighbours = {"shape": list(a.shape), "mean_per_row": round(float(a.sum(1).mean()), 3)}
    except DataError as err:
        problems.append(str(err))
        neighbours = None
    summary["splits"][split] = {
        "pairs": len(items) // 2,
        "items": len(items),
        "clips": len(clips),
        "clip_frames": frames,
        "model_frames": None if frames is None else frames - 1,
        "files": info,
        "neighbours": neighbours,
        "problems": len(problems),
    }
    summary["problems"] += problems


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
        _check_split(root, s, summary)
    summary["ok"] = not summary["problems"]
    return summary


def cli_check(args) -> int:
    """``python -m reactdiff_lite data check --root DIR [--split S]``: the JSON summary on stdout;
    on problems, a ``DataError`` naming the first (the command line prints it and exits 2)."""
    summary = check(args.root, args.split)
    print(json.dumps(summary, indent=2))
    problems = summary["problems"]
    if problems:
        raise DataError(f"{args.root}: {len(problems)} problem(s), all in the JSON summary; the first: {problems[0]}")
    return 0
