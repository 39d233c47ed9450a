"""The dyadic world: synthetic two-person conversations written in REACT 2024 layout.

The REACT data needs a licence, so reactdiff-lite ships a generator (``data/README.md``,
notebook 01). Two persons take turns; who says what and when is
:mod:`reactdiff_lite.data.people` (personas, scripts, session plans), how they behave
is :mod:`reactdiff_lite.data.behaviour` (the listener is caused by the speaker: lagged,
damped mimicry and backchannels), their voices are :mod:`reactdiff_lite.data.audio`,
and fresh appropriate listeners for any speaker come from :mod:`reactdiff_lite.data.oracle`.
Since generator 1.1 phrase ends are questions or statements and phrases carry pitch
accents, heard in the audio only (:mod:`reactdiff_lite.data.cues`); listeners answer
them. A world's ``cues`` (on by default) and leakage ``rho`` (0 by default) are preset
fields; the manifest records them, the cue law (``cue_law``) and every cue per clip.
Sessions of one script give similar speakers and different listeners: the appropriate
set ``A[k, j] = 1`` iff items k and j share script and speaker role.

This module plans a dataset (presets, the manifest of scripts, personas and sessions)
and writes it. Per person-clip: an emotion CSV (15 binary AUs thresholded from
continuous intensities, valence/arousal in [-1, 1], 8 expression probabilities), a 3DMM
npy (52 expression coefficients, pitch/yaw/roll with nods in pitch, translation), a
16 kHz mono wav and a 64x64 mp4 of cartoon faces (:mod:`reactdiff_lite.render`).
"""

from __future__ import annotations

import json
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ..render import render_faces
from ..schema import AU, AUDIO_RATE, EMOTION_NAMES, FPS, SPLITS
from ..utils import atomic_write, atomic_write_json, atomic_write_text
from .audio import synth_audio
from .behaviour import perform_session
from .cues import cue_law_spec
from .people import Turn, draw_persona, keyed_rng, make_script
from .reader import emotion_csv_2024, read_items

GENERATOR_VERSION = "1.1"
VIDEO_SIZE = 64


# ----------------------------------------------------------------------------- presets
@dataclass(frozen=True)
class Preset:
    clip_frames: int  # frames per clip file (models use clip_frames - 1)
    scripts: tuple[int, int, int]  # scripts per split (train, val, test)
    personas: tuple[int, int, int]  # persona pool per split, disjoint across splits
    sessions_per_script: int  # performances of each script: the appropriate-set size
    clips_per_recording: int  # clips (sessions) recorded by one persona pair
    cues: bool = True  # speech acts and accents in the audio, and listeners' responses to them
    rho: float = 0.0  # probability that a question or accent also shows on the speaker's face


PRESETS = {
    "smoke": Preset(
        clip_frames=151, scripts=(2, 2, 2), personas=(4, 3, 3), sessions_per_script=3, clips_per_recording=3
    ),
    "default": Preset(
        clip_frames=751, scripts=(25, 16, 16), personas=(16, 12, 12), sessions_per_script=4, clips_per_recording=4
    ),
    # the tiny format sample committed under data/sample/ (one train pair of 11 frames)
    "sample": Preset(
        clip_frames=11, scripts=(1, 0, 0), personas=(2, 0, 0), sessions_per_script=1, clips_per_recording=1
    ),
}

# Site-like names, as in the real 2024 release: NoXI sessions with Expert/Novice video
# folders, RECOLA groups with P25/P26-style persons (the reader maps them to Emotion's P1/P2).
_NOXI = ("Expert_video", "Novice_video")
_RECOLA = (("P25", "P26"), ("P41", "P42"), ("P45", "P46"))


# --------------------------------------------------------------------------- writing
def _csv_text(emotion: np.ndarray) -> str:
    """REACT emotion CSV: a header row, then T rows x 25 columns (AUs as 0.0/1.0)."""
    head = ",".join(EMOTION_NAMES)
    rows = [",".join([*(f"{v:.1f}" for v in row[AU]), *(f"{v:.5f}" for v in row[AU.stop :])]) for row in emotion]
    return head + "\n" + "\n".join(rows) + "\n"


def _write_npy(path: Path, array: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, array)

    atomic_write(path, write)


def _write_wav(path: Path, audio: np.ndarray) -> None:
    atomic_write(path, lambda tmp: sf.write(tmp, audio, AUDIO_RATE, subtype="PCM_16", format="WAV"))


def write_mp4(path: Path, frames: np.ndarray, fps: int = FPS) -> None:
    """(T, H, W, 3) uint8 -> an H.264 mp4 at ``fps`` (PyAV), written atomically."""
    import av

    def write(tmp: Path) -> None:
        with av.open(str(tmp), "w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
            stream.options = {"preset": "ultrafast", "crf": "26"}
            stream.codec_context.thread_count = 1  # tiny frames: threads cost more than they give
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())

    atomic_write(path, write)


def _write_session(
    root: str, split: str, pair: dict, script: tuple[Turn, ...], frames: int, personas: dict, world: dict | None = None
) -> list[list]:
    """Perform one session of the manifest and write both persons' four files.

    ``world`` holds the preset's ``cues`` and ``rho`` (default: cues on, rho 0). Returns
    each column's own cues as [[time s, kind], ...] for the manifest.
    """
    torch.set_num_threads(1)
    world = world or {}
    session = perform_session(pair, script, frames, personas, world.get("cues", True), world.get("rho", 0.0))
    base = Path(root) / split
    for c in range(2):
        behaviour, clip = session.behaviour[c], pair["paths"][c]
        voice = synth_audio(session.plan, pair["roles"][c], behaviour, session.people[c], session.rngs[c])
        atomic_write_text(emotion_csv_2024(base, clip), _csv_text(behaviour.emotion))
        _write_npy(base / "3D_FV_files" / f"{clip}.npy", behaviour.tdmm.astype(np.float32)[:, None, :])  # (T, 1, 58)
        _write_wav(base / "Audio_files" / f"{clip}.wav", voice)
        faces = render_faces(behaviour.emotion_intensity, behaviour.tdmm, VIDEO_SIZE)  # (T, 64, 64, 3)
        write_mp4(base / "Video_files" / f"{clip}.mp4", faces)
    return [[[t, kind] for t, kind in session.plan.cues[pair["roles"][c]]] for c in range(2)]


# ------------------------------------------------------------------------ dataset plan
def _world_config(preset: str, cues: bool | None, rho: float | None) -> Preset:
    """The preset with its world parameters overridden where given."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    cfg = PRESETS[preset]
    cfg = replace(cfg, cues=cfg.cues if cues is None else bool(cues), rho=cfg.rho if rho is None else float(rho))
    if not 0 <= cfg.rho <= 1:
        raise ValueError(f"rho must lie in [0, 1], got {cfg.rho}")
    return cfg


def _recording_site(recording: int) -> tuple[str, str, tuple[str, str]]:
    """(site, session folder, the two person folders) of the recording-th persona-pair
    recording: every fourth one is a RECOLA-style group, the others NoXI sessions."""
    if recording % 4 == 0:
        return "RECOLA", f"group-{recording // 4}", _RECOLA[(recording // 4) % len(_RECOLA)]
    return "NoXI", f"{recording:03d}_2016-04-{1 + recording % 28:02d}_Synthville", _NOXI


def plan_dataset(preset: str, seed: int, cues: bool | None = None, rho: float | None = None) -> dict:
    """The manifest: scripts, personas and sessions (pairs) of every split (no files written).
    ``cues`` and ``rho`` override the preset's (recorded in ``config``)."""
    cfg = _world_config(preset, cues, rho)
    manifest: dict = {
        "generator_version": GENERATOR_VERSION,
        "preset": preset,
        "seed": seed,
        "config": asdict(cfg),
        "cue_law": cue_law_spec(),
        "fps": FPS,
        "audio_rate": AUDIO_RATE,
        "video_size": VIDEO_SIZE,
        "personas": {},
        "scripts": {},
        "splits": {},
    }
    recording = 0
    for s, split in enumerate(SPLITS):
        if cfg.scripts[s] == 0:
            continue
        rng = keyed_rng(seed, "plan", split)
        persona_ids = [f"{split}-p{i:02d}" for i in range(cfg.personas[s])]
        for pid in persona_ids:
            persona = draw_persona(keyed_rng(seed, "persona", pid), keyed_rng(seed, "persona-cues", pid))
            manifest["personas"][pid] = asdict(persona)
        script_ids = [f"{split}-s{i:02d}" for i in range(cfg.scripts[s])]
        for sid in script_ids:
            manifest["scripts"][sid] = int(keyed_rng(seed, "script", sid).integers(2**31))
        sessions = [sid for _ in range(cfg.sessions_per_script) for sid in script_ids]
        order = rng.permutation(len(sessions))
        pairs = []
        for start in range(0, len(sessions), cfg.clips_per_recording):
            recording += 1
            pair = [persona_ids[i] for i in rng.choice(len(persona_ids), 2, replace=False)]
            site, folder, persons = _recording_site(recording)
            for clip, idx in enumerate(order[start : start + cfg.clips_per_recording], 1):
                pairs.append(
                    {
                        "script": sessions[idx],
                        "personas": pair,
                        "roles": [int(r) for r in rng.permutation(2)],
                        "session_seed": int(rng.integers(2**31)),
                        "paths": [f"{site}/{folder}/{persons[c]}/{clip}" for c in range(2)],
                    }
                )
        manifest["splits"][split] = {"scripts": script_ids, "personas": persona_ids, "pairs": pairs}
    return manifest


def neighbour_matrix(pairs: list[dict]) -> np.ndarray:
    """(2M, 2M) 0/1 in mirrored item order: A[k, j] = 1 iff same script and same speaker role."""
    script = [p["script"] for p in pairs] * 2
    role = [p["roles"][0] for p in pairs] + [p["roles"][1] for p in pairs]
    same_script = np.array(script)[:, None] == np.array(script)[None, :]
    same_role = np.array(role)[:, None] == np.array(role)[None, :]
    return (same_script & same_role).astype(np.int64)


# ------------------------------------------------------------------------ generation
def _generated_paths(root: Path) -> list[Path]:
    """Everything a generation writes under ``root`` (removed before writing again)."""
    return [
        root / "manifest.json",
        root / ".cache",
        *(root / s for s in SPLITS),
        *(root / f"{s}.csv" for s in SPLITS),
        *(root / f"neighbour_emotion_{s}.npy" for s in SPLITS),
    ]


def generate_world(
    out: str | Path,
    preset: str = "default",
    seed: int = 0,
    workers: int | None = None,
    cues: bool | None = None,
    rho: float | None = None,
) -> Path:
    """Write the synthetic dyadic world in REACT 2024 layout under ``out``.

    Args:
        out: dataset root. Earlier generated content (our manifest, splits) is replaced.
        preset: ``"smoke"`` (151-frame clips, a handful of sessions), ``"default"``
            (751-frame clips, 100/64/64 pairs: 25/16/16 scripts) or ``"sample"`` (one 11-frame train pair).
        seed: everything is a function of it: same seed, byte-identical CSV/NPY files.
        workers: processes (default: 1 for smoke, 2 otherwise).
        cues, rho: override the preset's world parameters (speech acts and accents on/off,
            their leakage to the speaker's face); at rho = 0 the face files of a world
            without cues differ only in the response windows after the other person's cues.

    Returns:
        The root path. ``manifest.json`` is written last and marks a complete dataset.
    """
    manifest = plan_dataset(preset, seed, cues, rho)  # validates the preset and rho
    root = Path(out)
    for path in _generated_paths(root):
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    frames, world = PRESETS[preset].clip_frames, {k: manifest["config"][k] for k in ("cues", "rho")}
    scripts = {sid: make_script(s, frames / FPS) for sid, s in manifest["scripts"].items()}
    jobs = [
        (str(root), split, pair, scripts[pair["script"]], frames, manifest["personas"], world)
        for split in manifest["splits"]
        for pair in manifest["splits"][split]["pairs"]
    ]
    workers = workers or (2 if preset == "default" else 1)
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            cues_written = list(pool.map(_write_session, *zip(*jobs, strict=True), chunksize=4))
    else:
        cues_written = [_write_session(*job) for job in jobs]
    for job, clip_cues in zip(jobs, cues_written, strict=True):
        job[2]["cues"] = clip_cues  # per column: its own [time s, kind] cues
    for split in manifest["splits"]:
        pairs = manifest["splits"][split]["pairs"]
        rows = [",speaker_path,listener_path"] + [f"{i},{p['paths'][0]},{p['paths'][1]}" for i, p in enumerate(pairs)]
        atomic_write_text(root / f"{split}.csv", "\n".join(rows) + "\n")
        _write_npy(root / f"neighbour_emotion_{split}.npy", neighbour_matrix(pairs))
    atomic_write_json(root / "manifest.json", manifest)
    return root


def read_manifest(root: str | Path) -> dict | None:
    """The generator's ``manifest.json`` under ``root``, or None (real REACT data has none)."""
    path = Path(root) / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else None


def item_cues(root: str | Path, split: str) -> list[list[tuple[float, str]]] | None:
    """Per mirrored item of ``split``, its speaker's ``(time s, kind)`` cues from the manifest;
    None for data without cues (real REACT data, or a world generated before 1.1 or without cues)."""
    manifest = read_manifest(root)
    if not manifest or not manifest.get("config", {}).get("cues") or split not in manifest.get("splits", {}):
        return None
    own = {
        path: cues
        for pair in manifest["splits"][split]["pairs"]
        for path, cues in zip(pair["paths"], pair["cues"], strict=True)
    }
    return [[(float(t), kind) for t, kind in own[item.speaker]] for item in read_items(root, split)]


def ensure_dataset(root: str | Path, preset: str = "default", seed: int = 0) -> Path:
    """Generate under ``root`` unless a complete dataset of this preset (with its default
    world parameters), seed and generator version is already there."""
    m = read_manifest(root)
    config = json.loads(json.dumps(asdict(PRESETS[preset]))) if preset in PRESETS else None  # tuples -> lists
    want = (GENERATOR_VERSION, preset, seed, config)
    if m and (m.get("generator_version"), m.get("preset"), m.get("seed"), m.get("config")) == want:
        return Path(root)
    return generate_world(root, preset, seed)


# ------------------------------------------------------------------------------- CLI
def _disk_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def cli_synth(args) -> int:
    """``python -m reactdiff_lite data synth --out DIR --preset smoke|default --seed N [--no-cues] [--rho R]``."""
    start = time.perf_counter()
    cues, rho = getattr(args, "cues", True), getattr(args, "rho", None)
    root = generate_world(args.out, args.preset, args.seed, cues=None if cues else False, rho=rho)
    seconds = time.perf_counter() - start
    m = read_manifest(root)
    pairs = {s: len(m["splits"][s]["pairs"]) for s in m["splits"]}
    world = f"cues {'on' if m['config']['cues'] else 'off'}, rho {m['config']['rho']}"
    print(f"wrote {args.preset} dyadic world (seed {args.seed}, {world}) to {root} in {seconds:.1f} s")
    print(
        f"  pairs per split {pairs} (items = 2 x pairs), {m['config']['clip_frames']} frames per clip, "
        f"{len(m['scripts'])} scripts, {len(m['personas'])} personas, {_disk_size(root) / 1e6:.1f} MB"
    )
    print(f"  check it: python -m reactdiff_lite data check --root {root}")
    return 0
