"""REACT metrics, exactly as the official challenge code computes them, and fast.

Definitions: ``react_benchmark.md`` (REACT 2023/2024 baseline repositories,
``metric/*.py``). N items, K predictions each, T frames, D = 25 attributes;
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

DTW is a numba kernel, exact to tslearn (same cell costs, same recurrence, no
approximation), that fuses the three groups in one pass over the cost table, keeps
two rolling rows instead of the table, and runs the (item, prediction) tasks in
parallel on a thread pool. FRDist's minimum over the appropriate set uses exact pruning: candidates are
visited in order of their lock-step (diagonal-path) cost, an upper bound of DTW, and a
candidate is abandoned as soon as ``Σ_g w_g sqrt(min_j C_g[i, j])`` exceeds the best
value so far (every warping path crosses row i, and accumulated costs only grow, so
the row minimum of the accumulated cost table lower-bounds the final cost of each
group). A relative margin of 1e-9 keeps the test safe from rounding; pruning never
changes a value.

Also here: :func:`frechet_distance` and :func:`realism_proxy`, a *proxy* for the official
FRRea (an FID of rendered faces, which needs a proprietary renderer).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable

import numpy as np
from numba import njit, uint64

from .data.schema import AU, EMOTION_DIM, FE, VA

# (start, stop, weight) per DTW group: AU 1/15, VA 1, FE 1/8 (the official weights).
REACT_GROUPS: tuple[tuple[int, int, float], ...] = ((AU.start, AU.stop, 1 / 15), (VA.start, VA.stop, 1.0),
                                                    (FE.start, FE.stop, 1 / 8))
MAX_LAG = 49                 # FRSyn lags -49..49 (2 s at 25 fps, minus one frame)
PRUNE_MARGIN = 1e-9          # abandon only when the lower bound exceeds best * (1 + margin)
METRICS = ("FRCorr", "FRDist", "FRDiv", "FRVar", "FRDvs", "FRSyn")
HIGHER_IS_BETTER = {"FRCorr": True, "FRDist": False, "FRDiv": True, "FRVar": True, "FRDvs": True,
                    "FRSyn": False, "FRRea_proxy": False}

_FM = {"contract"}           # let LLVM fuse e*e + d into an FMA; nothing else is relaxed


# ----------------------------------------------------------------------------- inputs
def as_array(x, name: str = "array") -> np.ndarray:
    """numpy view/copy of a numpy array or a torch tensor on any device."""
    if hasattr(x, "detach"):                       # torch.Tensor, CPU or GPU
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.number) and x.dtype != bool:
        raise TypeError(f"{name} has dtype {x.dtype}, expected numbers")
    return x


def _finite(x: np.ndarray, name: str) -> np.ndarray:
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        bad = np.argwhere(~np.isfinite(x))[0]
        raise ValueError(f"{name} has {int((~np.isfinite(x)).sum())} NaN/inf values "
                         f"(first at index {tuple(int(i) for i in bad)})")
    return x


def _pred(pred, name: str = "pred") -> np.ndarray:
    p = as_array(pred, name)
    if p.ndim != 4:
        raise ValueError(f"{name} must have shape (N, K, T, D), got {p.shape}")
    if min(p.shape) == 0:
        raise ValueError(f"{name} is empty: shape {p.shape}")
    return _finite(p, name)


def _people(x, name: str, pred: np.ndarray) -> np.ndarray:
    a = as_array(x, name)
    N, _, T, D = pred.shape
    if a.shape != (N, T, D):
        raise ValueError(f"{name} must have shape (N, T, D) = {(N, T, D)} to match pred {pred.shape}, got {a.shape}")
    return _finite(a, name)


def _neighbours(neighbours, N: int) -> np.ndarray:
    A = as_array(neighbours, "neighbours")
    if A.shape != (N, N):
        raise ValueError(f"neighbours must have shape (N, N) = {(N, N)} for N = {N} items, got {A.shape}")
    if not np.isin(A, (0, 1)).all():
        raise ValueError("neighbours must hold only 0/1 values")
    A = A.astype(bool)
    empty = np.flatnonzero(~A.any(1))
    if empty.size:
        raise ValueError(f"neighbours: item(s) {empty[:5].tolist()} have no appropriate reaction (empty row)")
    return A


def _reduce(per_item_k: np.ndarray, reduce: str) -> float:
    """(N, K) -> official sum over K then mean over N, or the per-prediction mean."""
    if reduce == "sum":
        return float(per_item_k.sum(1).mean())
    if reduce == "mean":
        return float(per_item_k.mean())
    raise ValueError(f"reduce must be 'sum' (official) or 'mean', got {reduce!r}")


def _groups(groups, D: int) -> tuple[np.ndarray, np.ndarray]:
    """``groups=None``: the REACT groups for D = 25, else one group of all D dims with
    weight 1 (e.g. the 58-d 3DMM: plain DTW over all coefficients)."""
    if groups is None:
        groups = REACT_GROUPS if D == EMOTION_DIM else ((0, D, 1.0),)
    bounds, weights = [groups[0][0]], []
    for start, stop, w in groups:
        if start != bounds[-1] or not 0 <= start < stop <= D:
            raise ValueError(f"groups must be contiguous (start, stop, weight) slices of 0..{D}, got {groups}")
        bounds.append(stop)
        weights.append(float(w))
    return np.asarray(bounds, np.int64), np.asarray(weights, np.float64)


def default_threads() -> int:
    """Worker threads for the compiled kernels: ``$REACTDIFF_THREADS``, else all CPUs."""
    return int(os.environ.get("REACTDIFF_THREADS", 0)) or os.cpu_count() or 1


def _parallel(work: Callable[[int, int], None], n: int, chunk: int, threads: int | None,
              progress: bool = False, desc: str = "", unit: str = "task") -> None:
    """Run ``work(start, stop)`` over [0, n) in chunks on a thread pool (the kernels release
    the GIL). Small chunks balance the uneven cost that pruning creates."""
    spans = [(a, min(n, a + chunk)) for a in range(0, n, chunk)]
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=n, desc=desc, unit=unit)
    threads = threads or default_threads()
    if threads == 1:
        for a, b in spans:
            work(a, b)
            bar is not None and bar.update(b - a)
    else:
        with ThreadPoolExecutor(threads) as pool:
            for (a, b), f in zip(spans, [pool.submit(work, a, b) for a, b in spans]):
                f.result()
                bar is not None and bar.update(b - a)
    if bar is not None:
        bar.close()


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
    mx, my = x.mean(-2), y.mean(-2)                                   # (..., D)
    sx, sy = x.std(-2), y.std(-2)                                     # population σ
    cov = ((x - mx[..., None, :]) * (y - my[..., None, :])).mean(-2)
    return _ccc_from_moments(mx, my, sx, sy, cov)


def _ccc_from_moments(mx, my, sx, sy, cov):
    with np.errstate(divide="ignore", invalid="ignore"):
        r = cov / (sx * sy)                                           # Pearson
    r = np.clip(np.nan_to_num(r), -1.0, 1.0)                          # official corrcoef: NaN -> 0, clip
    return 2 * r * sx * sy / (sx ** 2 + sy ** 2 + (mx - my) ** 2 + 1e-8)


def frcorr(pred, listener, neighbours, *, reduce: str = "sum") -> float:
    """FRCorr: ``(1/N) Σ_n Σ_k max_{j∈app(n)} CCC_D(L_j, pred[n,k])`` (higher is better).

    Args:
        pred: (N, K, T, D) predictions; listener: (N, T, D) real listeners;
        neighbours: (N, N) 0/1 appropriateness matrix.
        reduce: ``"sum"`` over K (official) or ``"mean"`` (divide by K).
    """
    p = _pred(pred)
    L = _people(listener, "listener", p).astype(np.float64)
    A = _neighbours(neighbours, p.shape[0])
    mL, sL = L.mean(1), L.std(1)                                      # (N, D)
    Lc = np.ascontiguousarray((L - mL[:, None]).transpose(2, 1, 0))   # (D, T, N) centred
    best = np.empty(p.shape[:2])
    for n in range(p.shape[0]):
        x = p[n].astype(np.float64)                                   # (K, T, D)
        mx, sx = x.mean(1), x.std(1)                                  # (K, D)
        j = np.flatnonzero(A[n])
        xc = (x - mx[:, None]).transpose(2, 0, 1)                     # (D, K, T)
        cov = np.matmul(xc, Lc[:, :, j]).transpose(1, 2, 0) / x.shape[1]   # (K, C, D)
        c = _ccc_from_moments(mx[:, None], mL[j][None], sx[:, None], sL[j][None], cov)
        best[n] = c.mean(-1).max(1)                                   # max over app(n)
    return _reduce(best, reduce)


# --------------------------------------------------------------------------------- DTW
@njit(inline="always")
def _mn(a, b):
    return a if a < b else b


@njit(inline="always", fastmath=_FM)
def _acc4(d, xi, yt, k, m):
    a0 = xi[k]; a1 = xi[k + 1]; a2 = xi[k + 2]; a3 = xi[k + 3]
    r0 = yt[k]; r1 = yt[k + 1]; r2 = yt[k + 2]; r3 = yt[k + 3]
    for j in range(uint64(0), m):                  # unsigned index: no wrap-around, vectorises
        e0 = a0 - r0[j]; e1 = a1 - r1[j]; e2 = a2 - r2[j]; e3 = a3 - r3[j]
        d[j] = d[j] + e0 * e0 + e1 * e1 + e2 * e2 + e3 * e3


@njit(inline="always", fastmath=_FM)
def _acc2(d, xi, yt, k, m):
    a0 = xi[k]; a1 = xi[k + 1]
    r0 = yt[k]; r1 = yt[k + 1]
    for j in range(uint64(0), m):
        e0 = a0 - r0[j]; e1 = a1 - r1[j]
        d[j] = d[j] + e0 * e0 + e1 * e1


@njit(inline="always", fastmath=_FM)
def _acc1(d, xi, yt, k, m):
    a0 = xi[k]
    r0 = yt[k]
    for j in range(uint64(0), m):
        e0 = a0 - r0[j]
        d[j] = d[j] + e0 * e0


@njit(inline="always", fastmath=_FM)
def _row_cost(d, xi, yt, k0, k1, m):
    """d[j] = Σ_{k0<=k<k1} (x_ik − y_jk)², summed in k order like tslearn."""
    for j in range(uint64(0), m):
        d[j] = 0.0
    k = k0
    while k + 4 <= k1:
        _acc4(d, xi, yt, k, m)
        k += 4
    if k + 2 <= k1:
        _acc2(d, xi, yt, k, m)
        k += 2
    if k < k1:
        _acc1(d, xi, yt, k, m)


@njit(inline="always", fastmath=_FM)
def _acc4x2(da, db, xa, xb, yt, k, m):
    a0 = xa[k]; a1 = xa[k + 1]; a2 = xa[k + 2]; a3 = xa[k + 3]
    b0 = xb[k]; b1 = xb[k + 1]; b2 = xb[k + 2]; b3 = xb[k + 3]
    r0 = yt[k]; r1 = yt[k + 1]; r2 = yt[k + 2]; r3 = yt[k + 3]
    for j in range(uint64(0), m):
        y0 = r0[j]; y1 = r1[j]; y2 = r2[j]; y3 = r3[j]
        e0 = a0 - y0; e1 = a1 - y1; e2 = a2 - y2; e3 = a3 - y3
        da[j] = da[j] + e0 * e0 + e1 * e1 + e2 * e2 + e3 * e3
        e0 = b0 - y0; e1 = b1 - y1; e2 = b2 - y2; e3 = b3 - y3
        db[j] = db[j] + e0 * e0 + e1 * e1 + e2 * e2 + e3 * e3


@njit(inline="always", fastmath=_FM)
def _acc2x2(da, db, xa, xb, yt, k, m):
    a0 = xa[k]; a1 = xa[k + 1]
    b0 = xb[k]; b1 = xb[k + 1]
    r0 = yt[k]; r1 = yt[k + 1]
    for j in range(uint64(0), m):
        y0 = r0[j]; y1 = r1[j]
        e0 = a0 - y0; e1 = a1 - y1
        da[j] = da[j] + e0 * e0 + e1 * e1
        e0 = b0 - y0; e1 = b1 - y1
        db[j] = db[j] + e0 * e0 + e1 * e1


@njit(inline="always", fastmath=_FM)
def _acc1x2(da, db, xa, xb, yt, k, m):
    a0 = xa[k]
    b0 = xb[k]
    r0 = yt[k]
    for j in range(uint64(0), m):
        y0 = r0[j]
        e0 = a0 - y0
        da[j] = da[j] + e0 * e0
        e0 = b0 - y0
        db[j] = db[j] + e0 * e0


@njit(inline="always", fastmath=_FM)
def _row_cost2(da, db, xa, xb, yt, k0, k1, m):
    """:func:`_row_cost` for two rows at once: each y value is loaded once for both."""
    for j in range(uint64(0), m):
        da[j] = 0.0
        db[j] = 0.0
    k = k0
    while k + 4 <= k1:
        _acc4x2(da, db, xa, xb, yt, k, m)
        k += 4
    if k + 2 <= k1:
        _acc2x2(da, db, xa, xb, yt, k, m)
        k += 2
    if k < k1:
        _acc1x2(da, db, xa, xb, yt, k, m)


@njit(inline="always", fastmath=_FM)
def _dp1(d, prev, cur, m):
    """One row of C[i, j] = d(i, j) + min(C[i−1, j], C[i−1, j−1], C[i, j−1]); returns min_j C[i, j]."""
    c = cur[0]
    rm = np.inf
    for j in range(m):
        c = d[j] + _mn(_mn(prev[j + 1], prev[j]), c)
        cur[j + 1] = c
        rm = _mn(rm, c)
    return rm


@njit(inline="always", fastmath=_FM)
def _dp3(d0, d1, d2, p0, p1, p2, c0, c1, c2, m):
    """:func:`_dp1` for three groups at once: three independent dependency chains."""
    x0 = c0[0]; x1 = c1[0]; x2 = c2[0]
    r0 = np.inf; r1 = np.inf; r2 = np.inf
    for j in range(m):
        x0 = d0[j] + _mn(_mn(p0[j + 1], p0[j]), x0)
        x1 = d1[j] + _mn(_mn(p1[j + 1], p1[j]), x1)
        x2 = d2[j] + _mn(_mn(p2[j + 1], p2[j]), x2)
        c0[j + 1] = x0; c1[j + 1] = x1; c2[j + 1] = x2
        r0 = _mn(r0, x0); r1 = _mn(r1, x1); r2 = _mn(r2, x2)
    return r0, r1, r2


@njit(inline="always", fastmath=_FM)
def _dp1x2(da, db, p, c, m):
    """Rows i (a) and i+1 (b) in one sweep, b one column behind a, so that two dependency
    chains run side by side. Row a stays in registers; c receives row b; returns min of row b."""
    a = da[0] + _mn(p[1], p[0])                    # C[i, 0]; C[i, -1] = inf
    am = np.inf                                    # C[i, j-1]
    b = np.inf                                     # C[i+1, j-2]
    r = np.inf
    for j in range(1, m):
        b = db[j - 1] + _mn(_mn(a, am), b)         # C[i+1, j-1]
        c[j] = b
        r = _mn(r, b)
        am = a
        a = da[j] + _mn(_mn(p[j + 1], p[j]), a)    # C[i, j]
    b = db[m - 1] + _mn(_mn(a, am), b)
    c[m] = b
    return _mn(r, b)


@njit(inline="always", fastmath=_FM)
def _dp3x2(da0, da1, da2, db0, db1, db2, p0, p1, p2, c0, c1, c2, m):
    """:func:`_dp1x2` for three groups: six independent chains per step."""
    a0 = da0[0] + _mn(p0[1], p0[0]); a1 = da1[0] + _mn(p1[1], p1[0]); a2 = da2[0] + _mn(p2[1], p2[0])
    am0 = np.inf; am1 = np.inf; am2 = np.inf
    b0 = np.inf; b1 = np.inf; b2 = np.inf
    r0 = np.inf; r1 = np.inf; r2 = np.inf
    for j in range(1, m):
        b0 = db0[j - 1] + _mn(_mn(a0, am0), b0)
        b1 = db1[j - 1] + _mn(_mn(a1, am1), b1)
        b2 = db2[j - 1] + _mn(_mn(a2, am2), b2)
        c0[j] = b0; c1[j] = b1; c2[j] = b2
        r0 = _mn(r0, b0); r1 = _mn(r1, b1); r2 = _mn(r2, b2)
        am0 = a0; am1 = a1; am2 = a2
        a0 = da0[j] + _mn(_mn(p0[j + 1], p0[j]), a0)
        a1 = da1[j] + _mn(_mn(p1[j + 1], p1[j]), a1)
        a2 = da2[j] + _mn(_mn(p2[j + 1], p2[j]), a2)
    b0 = db0[m - 1] + _mn(_mn(a0, am0), b0)
    b1 = db1[m - 1] + _mn(_mn(a1, am1), b1)
    b2 = db2[m - 1] + _mn(_mn(a2, am2), b2)
    c0[m] = b0; c1[m] = b1; c2[m] = b2
    return _mn(r0, b0), _mn(r1, b1), _mn(r2, b2)


@njit(cache=True, fastmath=_FM)
def _dtw_groups(x, yt, n, m, bounds, weights, bound):
    """``Σ_g w_g sqrt(DTW²_g)`` of x[:n] (frames, dims) against yt[:, :m] (dims, frames).

    The accumulated cost ``C[i, j] = d(i, j) + min(C[i−1, j], C[i−1, j−1], C[i, j−1])``,
    ``C[−1, −1] = 0``, is swept two rows at a time with two rolling rows of memory.
    Returns inf as soon as the lower bound ``Σ_g w_g sqrt(min_j C_g[i, j])`` exceeds
    ``bound`` (early abandoning); ``bound = inf`` gives the plain value.
    """
    G = weights.shape[0]
    um = uint64(m)
    prev = np.full((G, m + 1), np.inf)             # C[i-1, j-1] at index j; C[-1, -1] = 0
    cur = np.full((G, m + 1), np.inf)              # index 0 stays inf: C[i, -1]
    d = np.empty((2, G, m))                        # cell costs of the rows being swept
    rmin = np.empty(G)
    prev[:, 0] = 0.0
    i = 0
    while i < n:
        if i + 1 < n and (G == 1 or G == 3):
            for g in range(G):
                _row_cost2(d[0, g], d[1, g], x[i], x[i + 1], yt, bounds[g], bounds[g + 1], um)
            if G == 3:
                r = _dp3x2(d[0, 0], d[0, 1], d[0, 2], d[1, 0], d[1, 1], d[1, 2],
                           prev[0], prev[1], prev[2], cur[0], cur[1], cur[2], m)
                rmin[0] = r[0]
                rmin[1] = r[1]
                rmin[2] = r[2]
            else:
                rmin[0] = _dp1x2(d[0, 0], d[1, 0], prev[0], cur[0], m)
            i += 2
        else:
            for g in range(G):
                _row_cost(d[0, g], x[i], yt, bounds[g], bounds[g + 1], um)
            for g in range(G):
                rmin[g] = _dp1(d[0, g], prev[g], cur[g], m)
            i += 1
        prev, cur = cur, prev
        cur[:, 0] = np.inf
        if bound < np.inf:
            lb = 0.0
            for g in range(G):
                lb += weights[g] * np.sqrt(rmin[g])
            if lb > bound:
                return np.inf
    total = 0.0
    for g in range(G):
        total += weights[g] * np.sqrt(prev[g, m])
    return total


@njit(cache=True, nogil=True)
def _dtw_pairs(X, Yt, nx, my, ix, iy, bounds, weights, out, start, stop):
    for t in range(start, stop):
        a = ix[t]
        b = iy[t]
        out[t] = _dtw_groups(X[a], Yt[b], nx[a], my[b], bounds, weights, np.inf)


def _lengths(x: np.ndarray, name: str) -> np.ndarray:
    """Frames before the trailing all-NaN padding (tslearn's ``remove_nans``); any other
    NaN or inf is an error."""
    nan = np.isnan(x)
    frame_all = nan.all(-1)                                           # (..., T)
    T = x.shape[-2]
    # length = index after the last frame that is not all-NaN
    has = ~frame_all
    length = np.where(has.any(-1), T - np.argmax(has[..., ::-1], -1), 0)
    inside = np.arange(T) < length[..., None]
    if (nan & inside[..., None]).any() or np.isinf(x).any():
        raise ValueError(f"{name} has NaN/inf inside a sequence; only trailing all-NaN frames "
                         f"(padding of a shorter sequence) are allowed")
    if (length == 0).any():
        raise ValueError(f"{name} holds a sequence of length 0 (empty or all NaN)")
    return length.astype(np.int64)


def dtw(x, y, *, groups=None, threads: int | None = None) -> np.ndarray | float:
    """Batched DTW with tslearn's definition (``tslearn.metrics.dtw``).

    ``DTW(x, y) = sqrt(min_path Σ_(i,j)∈path ‖x_i − y_j‖²)`` over unconstrained warping
    paths from (0, 0) to (n−1, m−1) with steps (1,0), (0,1), (1,1). Lengths may differ;
    like tslearn, trailing frames that are all NaN are dropped (so shorter sequences can
    be NaN-padded into one batch); any other NaN is an error.

    Args:
        x: (..., n, D) and y: (..., m, D), numpy or torch; the batch dims broadcast.
        groups: optional ``[(start, stop, weight), ...]`` to return ``Σ_g w_g DTW(x[..., g], y[..., g])``.
        threads: worker threads (default :func:`default_threads`).

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
    bounds, weights = _groups(groups if groups is not None else ((0, x.shape[-1], 1.0),), x.shape[-1])
    batch = np.broadcast_shapes(x.shape[:-2], y.shape[:-2])
    nx, my = _lengths(x, "x"), _lengths(y, "y")
    X = np.ascontiguousarray(np.nan_to_num(x).reshape(-1, *x.shape[-2:]))
    Yt = np.ascontiguousarray(np.nan_to_num(y).reshape(-1, *y.shape[-2:]).transpose(0, 2, 1))
    ix = np.broadcast_to(np.arange(X.shape[0]).reshape(x.shape[:-2]), batch).ravel()
    iy = np.broadcast_to(np.arange(Yt.shape[0]).reshape(y.shape[:-2]), batch).ravel()
    out = np.empty(ix.size)
    nx, my, ix, iy = nx.ravel(), my.ravel(), ix.astype(np.int64), iy.astype(np.int64)
    chunk = min(64, -(-ix.size // (4 * (threads or default_threads()))))
    _parallel(lambda a, b: _dtw_pairs(X, Yt, nx, my, ix, iy, bounds, weights, out, a, b), ix.size, chunk, threads)
    return float(out[0]) if out.ndim and batch == () else out.reshape(batch)


@njit(cache=True, nogil=True)
def _frdist_items(P, Lt, ptr, idx, bounds, weights, prune, out, visited):
    """out[n, k] = min over app(n) of the weighted group DTW of P[n, k]; visited[n, k]
    counts the candidates that were not abandoned. P: (n, K, T, D) float64 items."""
    K = P.shape[1]
    T = P.shape[2]
    G = weights.shape[0]
    for n in range(P.shape[0]):
        cand = idx[ptr[n]:ptr[n + 1]]
        C = cand.shape[0]
        ub = np.empty(C)
        for k in range(K):
            x = P[n, k]                                    # (T, D)
            xt = np.ascontiguousarray(x.T)                 # (D, T)
            for c in range(C):                             # lock-step (diagonal path) cost >= DTW
                y = Lt[cand[c]]
                s = 0.0
                for g in range(G):
                    acc = 0.0
                    for d in range(bounds[g], bounds[g + 1]):
                        xd = xt[d]
                        yd = y[d]
                        for i in range(uint64(0), uint64(T)):
                            e = xd[i] - yd[i]
                            acc += e * e
                    s += weights[g] * np.sqrt(acc)
                ub[c] = s
            order = np.argsort(ub)                         # likely best first
            bound = ub[order[0]] * (1.0 + PRUNE_MARGIN) if prune else np.inf
            best = np.inf
            used = 0
            for c in order:
                v = _dtw_groups(x, Lt[cand[c]], T, T, bounds, weights, bound)
                if v < np.inf:
                    used += 1
                if v < best:
                    best = v
                    if prune:
                        bound = min(bound, best * (1.0 + PRUNE_MARGIN))
            out[n, k] = best
            visited[n, k] = used


def frdist_table(pred, listener, neighbours, *, groups=None, prune: bool = True, progress: bool = False,
                 threads: int | None = None, return_visited: bool = False):
    """(N, K) table of ``min_{j∈app(n)} Σ_g w_g DTW(pred[n,k,:,g], L_j[:,g])``; see :func:`frdist`.

    With ``return_visited`` also the (N, K) number of candidates computed to the end
    (the others were abandoned early)."""
    p = _pred(pred)
    L = _people(listener, "listener", p)
    A = _neighbours(neighbours, p.shape[0])
    bounds, weights = _groups(groups, p.shape[-1])
    N, K = p.shape[:2]
    Lt = np.ascontiguousarray(L.astype(np.float64).transpose(0, 2, 1))     # (N, D, T)
    ptr = np.concatenate([[0], np.cumsum(A.sum(1))]).astype(np.int64)
    idx = np.nonzero(A)[1].astype(np.int64)
    out = np.empty((N, K))
    visited = np.empty((N, K), np.int64)

    def work(a: int, b: int) -> None:
        _frdist_items(np.ascontiguousarray(p[a:b], dtype=np.float64), Lt, ptr[a:b + 1], idx, bounds, weights,
                      prune, out[a:b], visited[a:b])

    _parallel(work, N, 1, threads, progress, "FRDist (DTW)", "item")
    return (out, visited) if return_visited else out


def frdist(pred, listener, neighbours, *, reduce: str = "sum", groups=None, prune: bool = True,
           progress: bool = False, threads: int | None = None) -> float:
    """FRDist: ``(1/N) Σ_n Σ_k min_{j∈app(n)} Σ_g w_g DTW(pred[n,k,:,g], L_j[:,g])`` (lower is better).

    Args:
        pred: (N, K, T, D); listener: (N, T, D); neighbours: (N, N) 0/1.
        reduce: ``"sum"`` over K (official) or ``"mean"``.
        groups: ``[(start, stop, weight), ...]``; default the REACT groups AU/VA/FE with
            weights 1/15, 1, 1/8 for D = 25, and plain DTW over all dims (weight 1) for any
            other D, e.g. the 58-d 3DMM.
        prune: exact early abandoning (never changes the value); False checks every pair fully.
        progress: show a tqdm bar; threads: worker threads (default :func:`default_threads`).
    """
    table = frdist_table(pred, listener, neighbours, groups=groups, prune=prune, progress=progress, threads=threads)
    return _reduce(table, reduce)


# --------------------------------------------------------------------------- diversity
def _chunks(N: int, size: int) -> Iterable[slice]:
    return (slice(a, min(N, a + size)) for a in range(0, N, size))


def frdiv(pred) -> float:
    """FRDiv: ``(1/N) Σ_n Σ_{k,k'} ‖pred[n,k] − pred[n,k']‖² / (K(K−1)·T·D)`` (higher is better).

    Uses ``Σ_{k,k'} ‖a_k − a_k'‖² = 2K Σ_k ‖a_k − ā‖²`` on predictions shifted by the first
    one (so K identical predictions give exactly 0). K = 1 gives 0, as officially.
    """
    p = _pred(pred)
    N, K, T, D = p.shape
    if K == 1:
        return 0.0
    total = 0.0
    for s in _chunks(N, max(1, 2_000_000 // (K * T * D))):
        b = p[s].astype(np.float64) - p[s, :1]                         # (n, K, T, D)
        total += 2 * K * ((b - b.mean(1, keepdims=True)) ** 2).sum()
    return float(total / (K * (K - 1) * T * D) / N)


def frdvs(pred) -> float:
    """FRDvs: ``Σ_k Σ_{n,m} ‖pred[n,k] − pred[m,k]‖² / (N(N−1)·K·T·D)`` in float64 (higher is better)."""
    p = _pred(pred)
    N, K, T, D = p.shape
    if N == 1:
        return 0.0
    step = max(1, 2_000_000 // (K * T * D))
    ref = p[0].astype(np.float64)                                      # shift: constant -> exactly 0
    mean = np.zeros((K, T, D))
    for s in _chunks(N, step):
        mean += (p[s] - ref).sum(0)
    mean /= N
    total = 0.0
    for s in _chunks(N, step):
        total += (((p[s] - ref) - mean) ** 2).sum()
    return float(2 * N * total / (N * (N - 1) * K * T * D))


def frvar(pred) -> float:
    """FRVar: mean over (n, k, d) of the unbiased variance over time (higher is better)."""
    p = _pred(pred)
    N, K, T, D = p.shape
    if T < 2:
        raise ValueError(f"FRVar needs T >= 2 frames, got {T}")
    total = 0.0
    for s in _chunks(N, max(1, 2_000_000 // (K * T * D))):
        b = p[s].astype(np.float64) - p[s, :, :1]
        total += b.var(2, ddof=1).sum()
    return float(total / (N * K * D))


# ------------------------------------------------------------------------------ FRSyn
@njit(cache=True)
def _constant_runs(x):
    """Per dim: length of the initial constant run and start of the final one."""
    T, D = x.shape
    head = np.empty(D, np.int64)
    tail = np.empty(D, np.int64)
    for d in range(D):
        h = 1
        while h < T and x[h, d] == x[0, d]:
            h += 1
        head[d] = h
        s = T - 1
        while s > 0 and x[s - 1, d] == x[T - 1, d]:
            s -= 1
        tail[d] = s
    return head, tail


@njit(cache=True)
def _window_constant(head, tail, d, start, stop, T):
    # windows are prefixes (start 0) or suffixes (stop T) of the sequence
    return (start == 0 and stop <= head[d]) or (stop == T and start >= tail[d])


@njit(cache=True, nogil=True)
def _tlcc_offsets(X, S, max_lag, ignore_constant, out):
    """out[n, k] = |49 − argmax_lag mean_d Pearson(X[n, k] shifted, S[n])|, the official TLCC.
    ``ignore_constant`` averages over the channels that vary in the lag window instead."""
    T, D = X.shape[2], X.shape[3]
    for t in range(X.shape[0] * X.shape[1]):
        x = X[t // X.shape[1], t % X.shape[1]]
        y = S[t // X.shape[1]]
        hx, tx = _constant_runs(x)
        hy, ty = _constant_runs(y)
        xt = np.ascontiguousarray(x.T)                      # (D, T): contiguous windows
        yt = np.ascontiguousarray(y.T)
        best = -np.inf
        arg = 0
        for a in range(2 * max_lag + 1):
            lag = a - max_lag
            xs = lag if lag > 0 else 0                      # x[lag:], y[:-lag] for lag > 0
            ys = -lag if lag < 0 else 0                     # x[:lag], y[-lag:] for lag < 0
            n = T - abs(lag)
            tot = 0.0
            used = 0
            for d in range(D):
                if _window_constant(hx, tx, d, xs, xs + n, T) or _window_constant(hy, ty, d, ys, ys + n, T):
                    if ignore_constant:
                        continue
                    used = 0
                    break
                xw = xt[d, xs:xs + n]
                yw = yt[d, ys:ys + n]
                mx = 0.0
                my = 0.0
                for i in range(uint64(0), uint64(n)):
                    mx += xw[i]
                    my += yw[i]
                mx /= n
                my /= n
                sxy = 0.0
                sxx = 0.0
                syy = 0.0
                for i in range(uint64(0), uint64(n)):
                    u = xw[i] - mx
                    v = yw[i] - my
                    sxy += u * v
                    sxx += u * u
                    syy += v * v
                r = sxy / np.sqrt(sxx * syy)
                r = min(1.0, max(-1.0, r))
                tot += np.float32(r)                        # the official list -> float32 tensor
                used += 1
            if used == 0:                                   # NaN mean; torch.argmax: the first NaN wins
                arg = a
                break
            v = np.float32(tot / used)
            if v > best:
                best = v
                arg = a
        out[t // X.shape[1], t % X.shape[1]] = abs(max_lag - arg)


def frsyn(pred, speaker, *, all_predictions: bool = False, ignore_constant: bool = False,
          max_lag: int = MAX_LAG, threads: int | None = None) -> float:
    """FRSyn: mean |offset| of the TLCC peak against the speaker, lags ±49 (lower is better).

    Args:
        pred: (N, K, T, D); speaker: (N, T, D).
        all_predictions: False (official) uses only ``pred[:, 0]``; True averages all K.
        ignore_constant: False (official): a channel that is constant in a lag window makes
            that lag NaN, and the first NaN lag wins the argmax (a constant channel anywhere
            gives offset 49). True: average the correlations of the varying channels only.
        max_lag: 49 officially (``seconds * fps - 1`` with 2 s at 25 fps).
    """
    p = _pred(pred)
    S = np.ascontiguousarray(_people(speaker, "speaker", p), dtype=np.float64)
    N, K, T, D = p.shape
    if T <= max_lag + 1:
        raise ValueError(f"FRSyn needs T > {max_lag + 1} frames, got {T}")
    X = p if all_predictions else p[:, :1]
    out = np.empty(X.shape[:2], np.int64)

    def work(a: int, b: int) -> None:
        _tlcc_offsets(np.ascontiguousarray(X[a:b], dtype=np.float64), S[a:b], max_lag, ignore_constant, out[a:b])

    _parallel(work, N, 2, threads)
    return float(out.mean())


# ----------------------------------------------------------------------------- realism
def frechet_distance(real, fake) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (as in FID).

    ``‖μr − μf‖² + tr(Σr + Σf − 2 (Σr^½ Σf Σr^½)^½)`` with population covariances.

    Args:
        real, fake: (n_samples, F) feature arrays.
    """
    a = as_array(real, "real").astype(np.float64)
    b = as_array(fake, "fake").astype(np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"real and fake must be (n, F) with the same F, got {a.shape} and {b.shape}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = np.cov(a, rowvar=False, bias=True), np.cov(b, rowvar=False, bias=True)
    w, v = np.linalg.eigh(np.atleast_2d(ca))
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T                 # Σr^½
    middle = np.linalg.eigvalsh(root_a @ np.atleast_2d(cb) @ root_a)   # eigenvalues of Σr^½ Σf Σr^½
    trace_sqrt = np.sqrt(np.clip(middle, 0, None)).sum()
    fd = ((mu_a - mu_b) ** 2).sum() + np.trace(np.atleast_2d(ca)) + np.trace(np.atleast_2d(cb)) - 2 * trace_sqrt
    return float(max(fd, 0.0))                                         # >= 0; rounding can dip below


def behaviour_windows(x, window: int = 5) -> np.ndarray:
    """Non-overlapping windows of ``window`` frames, flattened: (..., T, D) -> (n, window*D)."""
    a = as_array(x, "x").astype(np.float64)
    T, D = a.shape[-2:]
    w = T // window
    if w == 0:
        raise ValueError(f"window {window} is longer than the sequences (T = {T})")
    return a[..., :w * window, :].reshape(-1, window * D)


def realism_proxy(pred, listener, *, window: int = 5) -> float:
    """**FRRea-proxy** (lower is better): the Fréchet distance between real listener behaviour
    windows and generated ones, in the 25-d attribute space.

    A proxy, not FRRea: the official FRRea is an FID of face images rendered from the
    predicted 3DMM with a proprietary renderer. Here each sample is ``window``
    consecutive frames of the 25 attributes flattened (5 frames = 0.2 s, 125-d), so the
    score sees the distribution of poses *and* short-term motion, but not identity or
    appearance. Real windows come from ``listener`` (N, T, 25), generated windows from all
    K predictions (N, K, T, 25). The GT baseline scores 0 by construction.
    """
    p = _pred(pred)
    L = _people(listener, "listener", p)
    return frechet_distance(behaviour_windows(L, window), behaviour_windows(p, window))


# ----------------------------------------------------------------------------- evaluate
def evaluate(pred, listener, speaker, neighbours, *, reduce: str = "sum", all_predictions: bool = False,
             groups=None, realism: bool = False, window: int = 5, progress: bool = False,
             threads: int | None = None) -> dict[str, float]:
    """All six REACT metrics, official definitions by default.

    Args:
        pred: (N, K, T, D) predictions (D = 25 emotion, or 58 3DMM for FRCorr/FRDist-style use).
        listener: (N, T, D) real listeners; speaker: (N, T, D) speakers (mirrored item order).
        neighbours: (N, N) 0/1 appropriateness matrix.
        reduce: ``"sum"`` over K for FRCorr/FRDist (official) or ``"mean"``.
        all_predictions: FRSyn over all K predictions instead of the first (official).
        groups: DTW groups, see :func:`frdist`.
        realism: also return ``FRRea_proxy`` (:func:`realism_proxy`).
        progress: tqdm bar for the DTW part; threads: worker threads (default :func:`default_threads`).

    Returns:
        ``{"FRCorr", "FRDist", "FRDiv", "FRVar", "FRDvs", "FRSyn"}`` (+ ``"FRRea_proxy"``) floats.
    """
    p = _pred(pred)
    L = _people(listener, "listener", p)
    S = _people(speaker, "speaker", p)
    A = _neighbours(neighbours, p.shape[0])
    out = {
        "FRCorr": frcorr(p, L, A, reduce=reduce),
        "FRDist": frdist(p, L, A, reduce=reduce, groups=groups, progress=progress, threads=threads),
        "FRDiv": frdiv(p),
        "FRVar": frvar(p),
        "FRDvs": frdvs(p),
        "FRSyn": frsyn(p, S, all_predictions=all_predictions, threads=threads),
    }
    if realism:
        out["FRRea_proxy"] = realism_proxy(p, L, window=window)
    return out
