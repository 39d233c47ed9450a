"""Cue response: does a listener answer the speaker's questions? A diagnostic of the dyadic world.

The dyadic world (generator 1.1, ``reactdiff_lite.data.cues``) marks every phrase end of a
speaker as a question or a statement, in the audio only; listeners answer questions more
often than statements (a brow flash and an arousal bump after their lag). A model that
hears the speaker can learn this; one that only sees the face cannot. This is a property
of this world, **not a REACT metric**: real REACT data has no cue labels.

For a reaction y (T, 25) and a phrase end at time t_c of its speaker::

    signal(t)  = ½ (AU1_t + AU2_t) + arousal_t          AUs thresholded at 0.5 first, so AU
                                                          probabilities and binary AUs score alike
    r(y, c)    = mean signal over [t_c + 0.2 s, t_c + 1.5 s)  −  mean signal over [t_c − 0.5 s, t_c)

    cue_response   = mean of r over every (reaction, question end)  −  mean of r over every
                     (reaction, statement end)                         over all items and their K reactions

Reported for every method, with the Oracle's (the world's own law) and GT's (the real
listener) values as references; ``reactdiff_lite.stats`` gives it a cluster-bootstrap CI.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .metrics import binarize_au
from .schema import AU_NAMES, FPS, VA

AFTER = (0.2, 1.5)  # s after the phrase end: the response window
BEFORE = 0.5  # s before the phrase end: the baseline
KINDS = ("question", "statement")
BROWS = [AU_NAMES.index("AU1"), AU_NAMES.index("AU2")]
AROUSAL = VA.start + 1


def cue_signal(emotion: np.ndarray) -> np.ndarray:
    """(..., T, 25) -> (..., T): mean of the thresholded brow AUs plus arousal."""
    e = binarize_au(np.asarray(emotion, dtype=np.float64))
    return e[..., BROWS].mean(-1) + e[..., AROUSAL]


def _window_mean(signal: np.ndarray, start: float, stop: float, fps: int) -> np.ndarray | None:
    """Mean of (K, T) over frames [start, stop) s, or None when no frame of the clip is inside."""
    first, stop_frame = (int(np.ceil(round(x * fps, 6))) for x in (start, stop))  # frames t/fps in [start, stop)
    a, b = max(0, first), min(signal.shape[-1], stop_frame)
    return signal[..., a:b].mean(-1) if b > a else None


def cue_parts(pred: np.ndarray, cues: Sequence[Sequence], fps: int = FPS) -> dict[str, np.ndarray]:
    """Per item, the mean response to its speaker's questions and statements and their counts.

    Args:
        pred: (N, K, T, 25) reactions (or (N, T, 25), one each).
        cues: per item, the speaker's ``(time s, kind)`` cues (``data.synthetic.item_cues``).
    Returns:
        ``{"question", "statement"}``: (N,) mean r over the item's K reactions and its cues of
        that kind (NaN where it has none), and ``{"question_n", "statement_n"}``: (N,) counts.
    """
    p = np.asarray(pred)
    p = p[:, None] if p.ndim == 3 else p
    if len(cues) != len(p):
        raise ValueError(f"{len(cues)} cue lists for {len(p)} items")
    out = {key: np.full(len(p), np.nan) for key in KINDS} | {f"{key}_n": np.zeros(len(p)) for key in KINDS}
    for n, item_cues in enumerate(cues):
        signal = cue_signal(p[n])  # (K, T)
        responses: dict[str, list] = {kind: [] for kind in KINDS}
        for time, kind in item_cues:
            after = _window_mean(signal, time + AFTER[0], time + AFTER[1], fps)
            before = _window_mean(signal, time - BEFORE, time, fps)
            if kind in responses and after is not None and before is not None:
                responses[kind].append(after - before)  # (K,)
        for kind, values in responses.items():
            if values:
                out[kind][n], out[f"{kind}_n"][n] = np.mean(values), len(values)
    return out


def pooled_response(parts: dict[str, np.ndarray]) -> float:
    """The cue response from :func:`cue_parts`: the mean over all question ends minus the mean
    over all statement ends (each item weighted by its number of cues of that kind)."""
    pooled = {kind: np.nansum(parts[kind] * parts[f"{kind}_n"]) / parts[f"{kind}_n"].sum() for kind in KINDS}
    return float(pooled["question"] - pooled["statement"])


def cue_response(pred: np.ndarray, cues: Sequence[Sequence], fps: int = FPS) -> float:
    """The pooled cue response of reactions (see the module docstring)."""
    return pooled_response(cue_parts(pred, cues, fps))


def latent_cue_probe(latents: np.ndarray, cues: Sequence[Sequence], groups: Sequence, fps: int = FPS) -> float:
    """Out-of-fold AUC of question vs statement from speaker latents around phrase ends.

    Where is the cue lost? The same logistic probe as the world's face/voice probe
    (``data.probe``: five 0.2 s parts of [-0.6, +0.4] s around each phrase end, folds by
    ``groups``, e.g. scripts) on the latents the denoiser is conditioned on.

    Args:
        latents: (N, T, Dz) speaker latents of N items. cues: per item, ``(time s, kind)``.
        groups: per item, its fold group (its script or appropriate set).
    """
    from .data.probe import pool_window, probe_auc

    rows, labels, folds = [], [], []
    for z, item_cues, group in zip(latents, cues, groups, strict=True):
        for time, kind in item_cues:
            pooled = pool_window(np.asarray(z), time, fps) if kind in KINDS else None
            if pooled is not None:
                rows.append(pooled)
                labels.append(kind == "question")
                folds.append(group)
    return probe_auc(np.stack(rows), np.array(labels), np.array(folds))
