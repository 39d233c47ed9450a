"""A straightforward implementation of the official REACT metrics, written from their
definitions and the official procedure (``metric/*.py`` of the REACT 2023/2024 baseline
repositories): plain loops, numpy, tslearn for DTW, torch where the official code reduces
with torch. Slow on purpose.

It is the oracle of ``tests/test_metrics.py`` and the "official approach" timed by
``benchmarks/metrics_speed.py``. It shares no code with ``reactdiff_lite``, not even the
schema constants: the group boundaries, weights, 2 s and 25 fps are typed out as the
official code has them, so that a wrong constant in the library cannot hide here.
"""

from __future__ import annotations

import numpy as np
import torch
from tslearn.metrics import dtw

GROUPS = [(0, 15, 1 / 15), (15, 17, 1.0), (17, 25, 1 / 8)]


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """np.cov-based correlation; NaN -> 0 and clipped, as the official FRC helper."""
    c = np.cov(x, y)
    with np.errstate(divide="ignore", invalid="ignore"):
        c = c / np.sqrt(np.diag(c))[:, None] / np.sqrt(np.diag(c))[None, :]
    return float(np.clip(np.nan_to_num(c), -1, 1)[0, 1])


def ccc_official(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean over dims of 2 r σt σp / (σt² + σp² + (μt − μp)² + 1e-8), float32 inputs."""
    y_true, y_pred = y_true.astype(np.float32), y_pred.astype(np.float32)
    out = []
    for i in range(y_true.shape[1]):
        t, p = y_true[:, i], y_pred[:, i]
        r = pearson(t, p)
        num = 2 * r * np.std(t) * np.std(p)
        den = np.var(t) + np.var(p) + (np.mean(t) - np.mean(p)) ** 2
        out.append(num / (den + 1e-8))
    return float(np.mean(out))


def dtw_official(a: np.ndarray, b: np.ndarray, groups=GROUPS) -> float:
    """Weighted sum of tslearn DTWs over the groups, on float32-cast inputs."""
    return sum(w * dtw(a.astype(np.float32)[:, s:e], b.astype(np.float32)[:, s:e]) for s, e, w in groups)


def frcorr(pred, listener, A) -> float:
    per_item = []
    for n in range(pred.shape[0]):
        js = np.argwhere(A[n] == 1).reshape(-1)
        per_item.append(sum(max(ccc_official(listener[j], pred[n, k]) for j in js) for k in range(pred.shape[1])))
    return float(np.mean(per_item))


def frdist(pred, listener, A, groups=GROUPS) -> float:
    per_item = []
    for n in range(pred.shape[0]):
        js = np.argwhere(A[n] == 1).reshape(-1)
        per_item.append(
            sum(min(dtw_official(pred[n, k], listener[j], groups) for j in js) for k in range(pred.shape[1]))
        )
    return float(np.mean(per_item))


def frdiv(pred) -> float:
    N, K, T, D = pred.shape
    if K == 1:
        return 0.0
    p = pred.astype(np.float64)
    total = 0.0
    for n in range(N):
        for k in range(K):
            for k2 in range(K):
                total += ((p[n, k] - p[n, k2]) ** 2).sum() / (K * (K - 1) * T * D)
    return total / N


def frvar(pred) -> float:
    return float(np.var(pred.astype(np.float64), axis=2, ddof=1).mean())


def frdvs(pred) -> float:
    N, K, T, D = pred.shape
    p = pred.astype(np.float64)
    total = 0.0
    for k in range(K):
        for n in range(N):
            for m in range(N):
                total += ((p[n, k] - p[m, k]) ** 2).sum()
    return total / (N * (N - 1) * K * T * D)


def _shift(x, y, lag):
    if lag > 0:
        return x[lag:], y[:-lag]
    if lag < 0:
        return x[:lag], y[-lag:]
    return x, y


def tlcc_offset(pred: np.ndarray, speaker: np.ndarray, seconds: int = 2, fps: int = 25) -> int:
    """|offset| of the official calculate_tlcc: per lag the torch float32 mean of per-dim
    np.corrcoef values; offset = len//2 − torch.argmax (NaN counts as the maximum)."""
    pred, speaker = pred.astype(np.float32), speaker.astype(np.float32)
    rs = []
    with np.errstate(divide="ignore", invalid="ignore"):
        for lag in range(-(seconds * fps - 1), seconds * fps):
            pcc = [np.corrcoef(*_shift(pred[:, d], speaker[:, d], lag))[0, 1] for d in range(speaker.shape[1])]
            rs.append(torch.mean(torch.tensor(pcc, dtype=torch.float32)))
    offset = len(rs) // 2 - torch.argmax(torch.stack(rs))
    return int(abs(offset))


def frsyn(pred, speaker, all_predictions: bool = False) -> float:
    ks = range(pred.shape[1]) if all_predictions else [0]
    return float(np.mean([tlcc_offset(pred[n, k], speaker[n]) for n in range(pred.shape[0]) for k in ks]))


def evaluate(pred, listener, speaker, A) -> dict:
    return {
        "FRCorr": frcorr(pred, listener, A),
        "FRDist": frdist(pred, listener, A),
        "FRDiv": frdiv(pred),
        "FRVar": frvar(pred),
        "FRDvs": frdvs(pred),
        "FRSyn": frsyn(pred, speaker),
    }
