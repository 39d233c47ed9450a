"""Does only the voice carry the speech acts? A logistic probe at the speaker's phrase ends.

Among phrase ends only (accents left out), classify question vs statement with one linear
probe on two inputs of the **speaker** around the phrase end:

- the face: emotion (25) and 3DMM (58) per frame;
- the voice: a 64-band log-mel spectrogram (torchaudio ``MelSpectrogram``, 512-point FFT,
  10 ms hop) of the speaker's audio.

Both are cut to the window [-0.6, +0.4] s around the phrase end and averaged over five
0.2 s sub-windows, so each input gives 5 x D features. The probe is an L2-regularised
logistic regression on standardised features (statistics of the training folds), fitted
by Newton steps in numpy; phrase ends are split into folds **by script** (the sessions of
one script share their cue kinds), and the AUC is that of the pooled out-of-fold scores.
At rho = 0 the face should be at chance (AUC about 0.5) and the voice near 1.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torchaudio

from ..schema import AUDIO_RATE, FPS, SAMPLES_PER_FRAME, SPLITS
from .audio import synth_audio
from .behaviour import perform_session
from .people import make_script

BEFORE, AFTER, PARTS = 0.6, 0.4, 5  # window around a phrase end (s) and its sub-windows
N_MELS, HOP = 64, 160
L2 = 1.0  # ridge: minimise mean log-loss + (L2 / 100) |w|^2 / 2 (fixed, not tuned)
FOLDS = 5


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run BLAS and torch on one thread: these small problems only lose to threading
    (on a busy 2-core machine a 2-thread OpenBLAS solve is ~20x slower)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: then BLAS keeps its threads
        threadpool_limits = None
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1) if threadpool_limits else contextlib.nullcontext():
            yield
    finally:
        torch.set_num_threads(before)


def pool_window(x: np.ndarray, centre: float, rate: float) -> np.ndarray | None:
    """Mean of ``x`` (frames at ``rate`` Hz, (F, D)) over PARTS sub-windows of the window
    around ``centre`` s, flattened; None when the window leaves the clip."""
    a, b = int(round((centre - BEFORE) * rate)), int(round((centre + AFTER) * rate))
    if a < 0 or b > len(x):
        return None
    return np.stack([part.mean(0) for part in np.array_split(x[a:b], PARTS)]).ravel()


def log_mel(audio: np.ndarray) -> np.ndarray:
    """(samples,) 16 kHz -> (frames, 64) log-mel at 100 frames per second."""
    mel = torchaudio.transforms.MelSpectrogram(AUDIO_RATE, n_fft=512, hop_length=HOP, n_mels=N_MELS)
    return torch.log(mel(torch.as_tensor(audio, dtype=torch.float32)) + 1e-6).T.numpy()


def phrase_end_features(emotion: np.ndarray, tdmm: np.ndarray, audio: np.ndarray, cues: list) -> tuple:
    """Features of one person-clip's phrase ends (its own cues, accents left out).

    Returns (face (n, 5*83), voice (n, 5*64), is_question (n,)).
    """
    face_track = np.concatenate([emotion, tdmm], 1).astype(np.float64)
    mel = log_mel(audio).astype(np.float64)
    face, voice, label = [], [], []
    for time, kind in cues:
        if kind == "accent":
            continue
        f, v = pool_window(face_track, time, FPS), pool_window(mel, time, AUDIO_RATE / HOP)
        if f is not None and v is not None:
            face.append(f)
            voice.append(v)
            label.append(kind == "question")
    return face, voice, label


def _collect(samples) -> dict:
    """Stack (face, voice, label, script) per clip into arrays."""
    out = {"face": [], "voice": [], "question": [], "script": []}
    for face, voice, label, script in samples:
        out["face"] += face
        out["voice"] += voice
        out["question"] += label
        out["script"] += [script] * len(label)
    return {k: np.array(v) for k, v in out.items()}


def probe_files(root: str | Path, splits=SPLITS) -> dict:
    """Phrase-end features of every person-clip of a generated world, read from its files
    (cues from the manifest). Returns dict(face, voice, question, script) arrays."""
    from .cache import load_split
    from .synthetic import read_manifest

    m = read_manifest(root)
    samples = []
    for split in splits:
        if split not in m["splits"]:
            continue
        data = load_split(root, split, modalities=("emotion", "tdmm", "audio"), cache_dir=False)
        index = {c: i for i, c in enumerate(data.clip_ids)}
        for pair in m["splits"][split]["pairs"]:
            for c in range(2):
                i = index[pair["paths"][c]]
                audio = data.audio[i].float().numpy() / 32768.0
                clip = phrase_end_features(data.emotion[i].numpy(), data.tdmm[i].numpy(), audio, pair["cues"][c])
                samples.append((*clip, pair["script"]))
    return _collect(samples)


def probe_in_memory(manifest: dict, split: str = "train", sessions: int = 14) -> dict:
    """Phrase-end features of the first ``sessions`` sessions of a planned world, performed
    in memory (no files; a few seconds for 751-frame clips). Same output as :func:`probe_files`."""
    frames, world = manifest["config"]["clip_frames"], manifest["config"]
    samples = []
    with one_thread():
        for pair in manifest["splits"][split]["pairs"][:sessions]:
            samples += _perform_clips(manifest, pair, frames, world)
    return _collect(samples)


def _perform_clips(manifest: dict, pair: dict, frames: int, world: dict) -> list:
    """Phrase-end features of both person-clips of one session, performed in memory."""
    samples = []
    script = make_script(manifest["scripts"][pair["script"]], frames / FPS)
    s = perform_session(pair, script, frames, manifest["personas"], world["cues"], world["rho"])
    for c in range(2):
        role, b = pair["roles"][c], s.behaviour[c]
        audio = synth_audio(s.plan, role, b, s.people[c], s.rngs[c])
        T = frames - 1  # as the files are read by models
        clip = phrase_end_features(b.emotion[:T], b.tdmm[:T], audio[: T * SAMPLES_PER_FRAME], s.plan.cues[role])
        samples.append((*clip, pair["script"]))
    return samples


def auc(score: np.ndarray, label: np.ndarray) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties 1/2."""
    pos, neg = score[label], score[~label]
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = L2, steps: int = 25) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression by Newton steps: minimise
    sum log-loss + l2 * n / 100 * |w|^2 / 2 (bias unpenalised). Returns (w, b)."""
    n, d = x.shape
    xb = np.concatenate([x, np.ones((n, 1))], 1)
    theta, penalty = np.zeros(d + 1), np.full(d + 1, l2 * n / 100)
    penalty[-1] = 0.0
    for _ in range(steps):
        p = 1 / (1 + np.exp(-xb @ theta))
        grad = xb.T @ (p - y) + penalty * theta
        hess = (xb * (p * (1 - p))[:, None]).T @ xb + np.diag(penalty) + 1e-9 * np.eye(d + 1)
        theta -= np.linalg.solve(hess, grad)
    return theta[:-1], float(theta[-1])


def probe_auc(x: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int = FOLDS, seed: int = 0) -> float:
    """Out-of-fold AUC of the logistic probe, folds by ``groups`` (scripts held out)."""
    names = np.unique(groups)
    fold_of = dict(zip(names, np.random.default_rng(seed).permutation(len(names)) % folds, strict=True))
    fold = np.array([fold_of[g] for g in groups])
    score = np.zeros(len(y))
    for k in range(folds):
        test = fold == k
        if not test.any():
            continue
        mean, std = x[~test].mean(0), x[~test].std(0) + 1e-8
        w, b = fit_logistic((x[~test] - mean) / std, y[~test].astype(float))
        score[test] = ((x[test] - mean) / std) @ w + b
    return auc(score, y.astype(bool))


def probe_report(samples: dict) -> dict:
    """Face and voice AUCs of one set of phrase ends, with its counts."""
    y, groups = samples["question"].astype(bool), samples["script"]
    with one_thread():
        face, voice = probe_auc(samples["face"], y, groups), probe_auc(samples["voice"], y, groups)
    return {
        "phrase_ends": int(len(y)),
        "questions": int(y.sum()),
        "scripts": int(len(np.unique(groups))),
        "face_auc": face,
        "audio_auc": voice,
    }
