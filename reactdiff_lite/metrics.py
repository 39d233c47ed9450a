"""REACT metrics, exactly as the official challenge code computes them, and fast.

Definitions: the official REACT 2023/2024 challenge code (``metric/*.py`` of the baseline
repositories). N items, K predictions each, T frames, D = 25 attributes;
``app(n) = {j : A[n, j] = 1}`` is the appropriate set of item n.

* **CCC** per dimension (Lin 1989), ``r`` Pearson with NaN -> 0 and clipped to [-1, 1],
  population standard deviations::

      CCC(x, y) = 2 r σx σy / (σx² + σy² + (μx − μy)² + 1e-8),   CCC_D = mean over dims

* **FRCorr** (↑) ``= (1/N) Σ_n Σ_k max_{j∈app(n)} CCC_D(L_j, pred[n,k])``: a *sum* over K.
* **FRDist** (↓) ``= (1/N) Σ_n Σ_k min_{j∈app(n)} Σ_g w_g DTW(pred[n,k,:,g], L_j[:,g])`` with the
  groups AU 0:15 (w = 1/15), VA 15:17 (w = 1) and FE 17:25 (w = 1/8). DTW is tslearn's:
  ``sqrt(min_path Σ_(i,j)∈path ‖x_i − y_j‖²)`` over an unconstrained warping path.
* **FRDiv** (↑) ``= (1/N) Σ_n Σ_{k,k'} ‖pred[n,k] − pred[n,k']‖² / (K(K−1)·T·D)``.
* **FRVar** (↑) = mean over n, k, d of the unbiased variance over time.
* **FRDvs** (↑) ``= Σ_k Σ_{n,m} ‖pred[n,k] − pred[m,k]‖² / (N(N−1)·K·T·D)``.
* **FRSyn** (↓): time-lagged cross-correlation with the speaker, lags −49..49; per lag the
  mean over dims of Pearson(shifted prediction, speaker); ``offset = 49 − argmax``;
  FRSyn is the mean of ``|offset|``.

Official quirks reproduced by default (each has an option for the corrected variant):

1. FRCorr and FRDist *sum* over the K predictions (range 0..K); ``reduce="mean"`` divides by K.
2. FRSyn uses only the first prediction of each item; ``frsyn(..., all_predictions=True)``
   averages over all K.
3. A constant channel in a lag window makes that lag's mean correlation NaN, and
   ``torch.argmax`` returns the *first NaN*: when a channel is constant throughout,
   that is lag −49 and the offset is 49. We reproduce this (``argmax`` NaN-first), and
   the per-lag means are rounded to float32 as the official ``torch.Tensor`` does.
   ``frsyn(..., ignore_constant=True)`` averages over the varying channels instead.
4. A constant channel gives Pearson NaN, mapped to 0, so it contributes CCC = 0.

Numerics: everything is computed in float64. The official code casts predictions to
float32 first; our inputs are float32 by the data contract, so the values agree. A
window is "constant" when all its values are equal, as ``np.corrcoef`` finds for
float32 data.

DTW and TLCC run as numba kernels (:mod:`reactdiff_lite.kernels`): DTW exact to tslearn
(same cell costs, same recurrence, no approximation), the three groups fused in one pass,
the (item, prediction) tasks in parallel on a thread pool, and FRDist's minimum over the
appropriate set with exact pruning: banded tables, group by group, and early abandoning
(pruning never changes a value). Input checks
(shapes, NaN, the appropriateness matrix) are in :mod:`reactdiff_lite.metric_inputs`.

Also here: :func:`frechet_distance` and :func:`realism_proxy`, a *proxy* for the official
FRRea (an FID of rendered faces, which needs a proprietary renderer).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .kernels import default_threads, dtw_pairs, frdist_items, run_parallel, tlcc_offsets
from .metric_inputs import as_array, checked_neighbours, checked_people, checked_pred, sequence_lengths
from .realism import realism_proxy
from .schema import AU, AU_NAMES, EMOTION_DIM, FE, FE_NAMES, FPS, VA

# (start, stop, weight) per DTW group: AU 1/15, VA 1, FE 1/8 (the official weights).
REACT_GROUPS: tuple[tuple[int, int, float], ...] = (
    (AU.start, AU.stop, 1 / len(AU_NAMES)),
    (VA.start, VA.stop, 1.0),
    (FE.start, FE.stop, 1 / len(FE_NAMES)),
)
MAX_LAG = 2 * FPS - 1  # FRSyn lags -49..49 (2 s at 25 fps, minus one frame)
METRICS = ("FRCorr", "FRDist", "FRDiv", "FRVar", "FRDvs", "FRSyn")  # the six REACT metrics
# ↑: FRCorr, FRDiv, FRVar, FRDvs; ↓: FRDist, FRSyn and the realism proxy
HIGHER_IS_BETTER = {**dict(zip(METRICS, (True, False, True, True, True, False), strict=True)), "FRRea_proxy": False}


# ---------------------------------------------------------------------------- options
def _per_item(per_item_k: np.ndarray, reduce: str) -> np.ndarray:
    """(N, K) -> (N,): the official sum over K, or the mean over K."""
    if reduce == "sum":
        return per_item_k.sum(1)
    if reduce == "mean":
        return per_item_k.mean(1)
    raise ValueError(f"reduce must be 'sum' (official) or 'mean', got {reduce!r}")


def _torch_engine(device):
    """The torch engine (:mod:`reactdiff_lite.metrics_torch`), imported on first use."""
    from . import metrics_torch

    return metrics_torch


def _reduce(per_item_k: np.ndarray, reduce: str) -> float:
    """(N, K) -> official sum over K then mean over N, or the per-prediction mean."""
    return float(_per_item(per_item_k, reduce).mean())


def _group_bounds(groups, D: int) -> tuple[np.ndarray, np.ndarray]:
    """(bounds, weights) for the kernels: group g is dims ``bounds[g]:bounds[g + 1]``.

    ``groups=None``: the REACT groups for D = 25, else one group of all D dims with
    weight 1 (e.g. the 58-d 3DMM: plain DTW over all coefficients)."""
    if groups is None:
        groups = REACT_GROUPS if D == EMOTION_DIM else ((0, D, 1.0),)
    bounds, weights = [groups[0][0]], []
    for start, stop, w in groups:
        if start != bounds[-1] or not 0 <= start < stop <= D:
            raise ValueError(f"groups must be contiguous (start, stop, weight) slices of 0..{D}, got {groups}")
        if not w >= 0:  # FRDist's pruning needs every group to add >= 0
            raise ValueError(f"group weights must be >= 0, got {groups}")
        bounds.append(stop)
        weights.append(float(w))
    return np.asarray(bounds, np.int64), np.asarray(weights, np.float64)


# --------------------------------------------------------------------------------- CCC
def ccc(x, y) -> np.ndarray:
    """Concordance correlation per dimension, official definition.

    Args:
        x, y: (..., T, D) arrays (broadcast against each other).

    Returns:
        (..., D) float64: ``2 r σx σy / (σx² + σy² + (μx − μy)² + 1e-8)``.
    """
    x = as_array(x, "x").astype(np.float64)
    y = as_array(y, "y").astype(np.float64)
    mx, my = x.mean(-2), y.mean(-2)  # (..., D)
    sx, sy = x.std(-2), y.std(-2)  # population σ
    cov = ((x - mx[..., None, :]) * (y - my[..., None, :])).mean(-2)
    return _ccc_from_moments(mx, my, sx, sy, cov)


def _ccc_from_moments(mx, my, sx, sy, cov):
    with np.errstate(divide="ignore", invalid="ignore"):
        r = cov / (sx * sy)  # Pearson
    r = np.clip(np.nan_to_num(r), -1.0, 1.0)  # official corrcoef: NaN -> 0, clip
    return 2 * r * sx * sy / (sx**2 + sy**2 + (mx - my) ** 2 + 1e-8)


def frcorr(pred, listener, neighbours, *, reduce: str = "sum", device=None) -> float:
    """FRCorr: ``(1/N) Σ_n Σ_k max_{j∈app(n)} CCC_D(L_j, pred[n,k])`` (higher is better).

    Args:
        pred: (N, K, T, D) predictions; listener: (N, T, D) real listeners;
        neighbours: (N, N) 0/1 appropriateness matrix.
        reduce: ``"sum"`` over K (official) or ``"mean"`` (divide by K).
        device: None (numpy), or ``"cuda"``/``"cpu"``/a torch device: the torch engine
            (:mod:`reactdiff_lite.metrics_torch`, float64) on that device.
    """
    return _reduce(frcorr_table(pred, listener, neighbours, device=device), reduce)


def frcorr_table(pred, listener, neighbours, *, device=None) -> np.ndarray:
    """(N, K) table of ``max_{j∈app(n)} CCC_D(L_j, pred[n,k])``; see :func:`frcorr`."""
    p = checked_pred(pred)
    L = checked_people(listener, "listener", p).astype(np.float64)
    A = checked_neighbours(neighbours, p.shape[0])
    if device is not None:
        return _torch_engine(device).frcorr_table(p, L, A, device)
    mL, sL = L.mean(1), L.std(1)  # (N, D)
    Lc = np.ascontiguousarray((L - mL[:, None]).transpose(0, 2, 1))  # (N, D, T) centred
    best = np.empty(p.shape[:2])
    for n in range(p.shape[0]):
        x = p[n].astype(np.float64)  # (K, T, D)
        mx, sx = x.mean(1), x.std(1)  # (K, D)
        j = np.flatnonzero(A[n])
        # contiguous GEMM operands: twice as fast as strided ones at REACT size
        xc = np.ascontiguousarray((x - mx[:, None]).transpose(2, 0, 1))  # (D, K, T)
        Lj = np.ascontiguousarray(Lc[j].transpose(1, 2, 0))  # (D, T, C)
        cov = np.matmul(xc, Lj).transpose(1, 2, 0) / x.shape[1]  # (K, C, D)
        c = _ccc_from_moments(mx[:, None], mL[j][None], sx[:, None], sL[j][None], cov)
        best[n] = c.mean(-1).max(1)  # max over app(n)
    return best


# --------------------------------------------------------------------------------- DTW
def dtw(x, y, *, groups=None, threads: int | None = None) -> np.ndarray | float:
    """Batched DTW with tslearn's definition (``tslearn.metrics.dtw``).

    ``DTW(x, y) = sqrt(min_path Σ_(i,j)∈path ‖x_i − y_j‖²)`` over unconstrained warping
    paths from (0, 0) to (n−1, m−1) with steps (1,0), (0,1), (1,1). Lengths may differ;
    like tslearn, trailing frames that are all NaN are dropped (so shorter sequences can
    be NaN-padded into one batch); any other NaN is an error.

    Args:
        x: (..., n, D) and y: (..., m, D), numpy or torch; the batch dims broadcast.
        groups: optional ``[(start, stop, weight), ...]`` to return ``Σ_g w_g DTW(x[..., g], y[..., g])``.
        threads: worker threads (default :func:`~reactdiff_lite.kernels.default_threads`).

    Returns:
        float for 2-d inputs, else a float64 array of the broadcast batch shape.
    """
    x = as_array(x, "x").astype(np.float64)
    y = as_array(y, "y").astype(np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if y.ndim == 1:
        y = y[:, None]
    if x.shape[-1] != y.shape[-1]:
        raise ValueError(f"x and y must have the same feature size, got {x.shape[-1]} and {y.shape[-1]}")
    bounds, weights = _group_bounds(groups if groups is not None else ((0, x.shape[-1], 1.0),), x.shape[-1])
    batch = np.broadcast_shapes(x.shape[:-2], y.shape[:-2])
    nx, my = sequence_lengths(x, "x"), sequence_lengths(y, "y")
    X = np.ascontiguousarray(np.nan_to_num(x).reshape(-1, *x.shape[-2:]))  # (Bx, n, D)
    Yt = np.ascontiguousarray(np.nan_to_num(y).reshape(-1, *y.shape[-2:]).transpose(0, 2, 1))  # (By, D, m)
    ix = np.broadcast_to(np.arange(X.shape[0]).reshape(x.shape[:-2]), batch).ravel()
    iy = np.broadcast_to(np.arange(Yt.shape[0]).reshape(y.shape[:-2]), batch).ravel()
    out = np.empty(ix.size)
    nx, my, ix, iy = nx.ravel(), my.ravel(), ix.astype(np.int64), iy.astype(np.int64)
    chunk = min(64, -(-ix.size // (4 * (threads or default_threads()))))
    run_parallel(lambda a, b: dtw_pairs(X, Yt, nx, my, ix, iy, bounds, weights, out, a, b), ix.size, chunk, threads)
    return float(out[0]) if out.ndim and batch == () else out.reshape(batch)


def frdist_table(
    pred,
    listener,
    neighbours,
    *,
    groups=None,
    prune: bool = True,
    progress: bool = False,
    threads: int | None = None,
    return_visited: bool = False,
    device=None,
):
    """(N, K) table of ``min_{j∈app(n)} Σ_g w_g DTW(pred[n,k,:,g], L_j[:,g])``; see :func:`frdist`.

    With ``return_visited`` also the (N, K) number of candidates computed to the end
    (the others were abandoned early). ``device``: see :func:`frdist`."""
    p = checked_pred(pred)
    L = checked_people(listener, "listener", p)
    A = checked_neighbours(neighbours, p.shape[0])
    bounds, weights = _group_bounds(groups, p.shape[-1])
    if device is not None:  # every candidate computed fully: all visited
        out = _torch_engine(device).frdist_table(p, L, A, bounds, weights, device)
        return (out, np.repeat(A.sum(1, keepdims=True), p.shape[1], 1)) if return_visited else out
    N, K = p.shape[:2]
    Lt = np.ascontiguousarray(L.astype(np.float64).transpose(0, 2, 1))  # (N, D, T)
    ptr = np.concatenate([[0], np.cumsum(A.sum(1))]).astype(np.int64)  # CSR rows of A
    idx = np.nonzero(A)[1].astype(np.int64)
    out = np.empty((N, K))
    visited = np.empty((N, K), np.int64)

    def work(a: int, b: int) -> None:
        items = np.ascontiguousarray(p[a:b], dtype=np.float64)  # (b - a, K, T, D)
        frdist_items(items, Lt, ptr[a : b + 1], idx, bounds, weights, prune, out[a:b], visited[a:b])

    run_parallel(work, N, 1, threads, progress, "FRDist (DTW)", "item")
    return (out, visited) if return_visited else out


def frdist(
    pred,
    listener,
    neighbours,
    *,
    reduce: str = "sum",
    groups=None,
    prune: bool = True,
    progress: bool = False,
    threads: int | None = None,
    device=None,
) -> float:
    """FRDist: ``(1/N) Σ_n Σ_k min_{j∈app(n)} Σ_g w_g DTW(pred[n,k,:,g], L_j[:,g])`` (lower is better).

    Args:
        pred: (N, K, T, D); listener: (N, T, D); neighbours: (N, N) 0/1.
        reduce: ``"sum"`` over K (official) or ``"mean"``.
        groups: ``[(start, stop, weight), ...]``; default the REACT groups AU/VA/FE with
            weights 1/15, 1, 1/8 for D = 25, and plain DTW over all dims (weight 1) for any
            other D, e.g. the 58-d 3DMM.
        prune: exact pruning (banded tables, early abandoning; never changes the value); False
            checks every pair fully.
        progress: show a tqdm bar; threads: worker threads (default
            :func:`~reactdiff_lite.kernels.default_threads`).
        device: None (numba kernels), or ``"cuda"``/``"cpu"``/a torch device: the torch
            anti-diagonal wavefront (:func:`reactdiff_lite.metrics_torch.dtw_wavefront`).
    """
    table = frdist_table(
        pred, listener, neighbours, groups=groups, prune=prune, progress=progress, threads=threads, device=device
    )
    return _reduce(table, reduce)


# --------------------------------------------------------------------------- diversity
def _item_chunks(shape: tuple[int, ...]) -> Iterable[slice]:
    """Slices of the N items of an (N, K, T, D) array, about 2 million values (16 MB of
    float64 temporaries) each."""
    N, K, T, D = shape
    size = max(1, 2_000_000 // (K * T * D))
    return (slice(a, min(N, a + size)) for a in range(0, N, size))


def frdiv(pred, *, device=None) -> float:
    """FRDiv: ``(1/N) Σ_n Σ_{k,k'} ‖pred[n,k] − pred[n,k']‖² / (K(K−1)·T·D)`` (higher is better).

    Uses ``Σ_{k,k'} ‖a_k − a_k'‖² = 2K Σ_k ‖a_k − ā‖²`` on predictions shifted by the first
    one (so K identical predictions give exactly 0). K = 1 gives 0, as officially.
    """
    return float(frdiv_items(pred, device=device).mean())


def frdiv_items(pred, *, device=None) -> np.ndarray:
    """(N,) per-item terms of :func:`frdiv` (their mean is FRDiv); ``device``: torch engine."""
    p = checked_pred(pred)
    if device is not None:
        return _torch_engine(device).frdiv_items(p, device)
    N, K, T, D = p.shape
    if K == 1:
        return np.zeros(N)
    out = np.empty(N)
    for s in _item_chunks(p.shape):
        b = p[s].astype(np.float64) - p[s, :1]  # (n, K, T, D)
        out[s] = 2 * K * ((b - b.mean(1, keepdims=True)) ** 2).sum((1, 2, 3))
    return out / (K * (K - 1) * T * D)


def item_scores(
    pred,
    listener,
    neighbours,
    *,
    reduce: str = "sum",
    groups=None,
    progress: bool = False,
    threads: int | None = None,
    device=None,
) -> dict[str, np.ndarray]:
    """Per-item FRCorr, FRDist and FRDiv, (N,) each: their means are the metrics.

    What confidence intervals resample (``reactdiff_lite.stats``). FRVar, FRDvs and FRSyn
    are not means of per-item terms (FRDvs compares items), so they have no per-item form.
    """
    table = frdist_table(pred, listener, neighbours, groups=groups, progress=progress, threads=threads, device=device)
    return {
        "FRCorr": _per_item(frcorr_table(pred, listener, neighbours, device=device), reduce),
        "FRDist": _per_item(table, reduce),
        "FRDiv": frdiv_items(pred, device=device),
    }


def frdvs(pred, *, device=None) -> float:
    """FRDvs: ``Σ_k Σ_{n,m} ‖pred[n,k] − pred[m,k]‖² / (N(N−1)·K·T·D)`` in float64 (higher is better)."""
    p = checked_pred(pred)
    if device is not None:
        return _torch_engine(device).frdvs(p, device)
    N, K, T, D = p.shape
    if N == 1:
        return 0.0
    ref = p[0].astype(np.float64)  # shift: constant -> exactly 0
    mean = np.zeros((K, T, D))
    for s in _item_chunks(p.shape):
        mean += (p[s] - ref).sum(0)
    mean /= N
    total = 0.0
    for s in _item_chunks(p.shape):
        total += (((p[s] - ref) - mean) ** 2).sum()
    return float(2 * N * total / (N * (N - 1) * K * T * D))


def frvar(pred, *, device=None) -> float:
    """FRVar: mean over (n, k, d) of the unbiased variance over time (higher is better)."""
    p = checked_pred(pred)
    if device is not None:
        return _torch_engine(device).frvar(p, device)
    N, K, T, D = p.shape
    if T < 2:
        raise ValueError(f"FRVar needs T >= 2 frames, got {T}")
    total = 0.0
    for s in _item_chunks(p.shape):
        b = p[s].astype(np.float64) - p[s, :, :1]
        total += b.var(2, ddof=1).sum()
    return float(total / (N * K * D))


# ------------------------------------------------------------------------------ FRSyn
def frsyn(
    pred,
    speaker,
    *,
    all_predictions: bool = False,
    ignore_constant: bool = False,
    max_lag: int = MAX_LAG,
    threads: int | None = None,
) -> float:
    """FRSyn: mean |offset| of the TLCC peak against the speaker, lags ±49 (lower is better).

    Args:
        pred: (N, K, T, D); speaker: (N, T, D).
        all_predictions: False (official) uses only ``pred[:, 0]``; True averages all K.
        ignore_constant: False (official): a channel that is constant in a lag window makes
            that lag NaN, and the first NaN lag wins the argmax (a constant channel anywhere
            gives offset 49). True: average the correlations of the varying channels only.
        max_lag: 49 officially (``seconds * fps - 1`` with 2 s at 25 fps).
    """
    p = checked_pred(pred)
    S = np.ascontiguousarray(checked_people(speaker, "speaker", p), dtype=np.float64)
    N, K, T, D = p.shape
    if T <= max_lag + 1:
        raise ValueError(f"FRSyn needs T > {max_lag + 1} frames, got {T}")
    X = p if all_predictions else p[:, :1]
    out = np.empty(X.shape[:2], np.int64)

    def work(a: int, b: int) -> None:
        tlcc_offsets(np.ascontiguousarray(X[a:b], dtype=np.float64), S[a:b], max_lag, ignore_constant, out[a:b])

    run_parallel(work, N, 2, threads)
    return float(out.mean())


# ----------------------------------------------------------------------------- AUs
def binarize_au(emotion):
    """A copy of emotion rows (..., 25), numpy or torch, with the 15 AU probabilities turned
    into occurrences: 1 where p > 0.5, else 0 (the official evaluation's ``--binarize``).

    The data's AUs are binary; soft probabilities shrink DTW costs and never trip FRSyn's
    constant-channel rule, so a model is scored both ways."""
    out = emotion.clone() if hasattr(emotion, "clone") else np.array(emotion, copy=True)
    out[..., AU] = (out[..., AU] > 0.5) * 1.0
    return out


# ----------------------------------------------------------------------------- evaluate
def evaluate(
    pred,
    listener,
    speaker,
    neighbours,
    *,
    reduce: str = "sum",
    all_predictions: bool = False,
    groups=None,
    realism: bool = False,
    window: int = 5,
    per_item: bool = False,
    progress: bool = False,
    threads: int | None = None,
    device=None,
) -> dict:
    """All six REACT metrics, official definitions by default.

    Args:
        pred: (N, K, T, D) predictions (D = 25 emotion, or 58 3DMM for FRCorr/FRDist-style use).
        listener: (N, T, D) real listeners; speaker: (N, T, D) speakers (mirrored item order).
        neighbours: (N, N) 0/1 appropriateness matrix.
        reduce: ``"sum"`` over K for FRCorr/FRDist (official) or ``"mean"``.
        all_predictions: FRSyn over all K predictions instead of the first (official).
        groups: DTW groups, see :func:`frdist`.
        realism: also return ``FRRea_proxy`` (:func:`realism_proxy`).
        per_item: also return ``"per_item"``: ``{"FRCorr", "FRDist", "FRDiv"}`` (N,) arrays whose
            means are the metrics (see :func:`item_scores`), from the same DTW run.
        progress: tqdm bar for the DTW part; threads: worker threads (default
            :func:`~reactdiff_lite.kernels.default_threads`).
        device: None (numba/numpy), or ``"cuda"``/``"cpu"``/a torch device: FRCorr, FRDist,
            FRDiv, FRVar and FRDvs by the torch engine on it; FRSyn stays on the numba kernel.

    Returns:
        ``{"FRCorr", "FRDist", "FRDiv", "FRVar", "FRDvs", "FRSyn"}`` (+ ``"FRRea_proxy"``) floats.
    """
    p = checked_pred(pred)
    L = checked_people(listener, "listener", p)
    S = checked_people(speaker, "speaker", p)
    A = checked_neighbours(neighbours, p.shape[0])
    items = item_scores(p, L, A, reduce=reduce, groups=groups, progress=progress, threads=threads, device=device)
    out: dict = {
        **{name: float(values.mean()) for name, values in items.items()},
        "FRVar": frvar(p, device=device),
        "FRDvs": frdvs(p, device=device),
        "FRSyn": frsyn(p, S, all_predictions=all_predictions, threads=threads),
    }
    if realism:
        out["FRRea_proxy"] = realism_proxy(p, L, window=window)
    if per_item:
        out["per_item"] = items
    return out
