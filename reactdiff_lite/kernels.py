"""Compiled kernels behind the REACT metrics: DTW for FRDist and the TLCC offsets of FRSyn.

The definitions live in :mod:`reactdiff_lite.metrics`; this module only makes them fast.

**DTW** (tslearn's definition). For a group g of dimensions, the accumulated cost table

    ``C_g[i, j] = d_g(i, j) + min(C_g[i−1, j], C_g[i−1, j−1], C_g[i, j−1])``,  ``C_g[−1, −1] = 0``,

with the cell cost ``d_g(i, j) = Σ_{k∈g} (x_ik − y_jk)²`` summed in k order (as tslearn
does), gives ``DTW_g = sqrt(C_g[n−1, m−1])``. :func:`dtw_groups` computes the weighted sum
``Σ_g w_g DTW_g`` for all groups in one pass over the table: it keeps two rolling rows
instead of the table and sweeps two rows at a time, row i+1 one column behind row i, so
that two (with the three REACT groups: six) independent dependency chains run side by
side (for one or three groups; other group counts go row by row). Cell costs of both
rows are computed together, loading each y value once, in unrolled blocks of 4, 2 and 1
dimensions.

**Early abandoning, exact.** Every warping path crosses row i, and accumulated costs only
grow along a path, so ``min_j C_g[i, j]`` lower-bounds the final ``C_g[n−1, m−1]``, and
``Σ_g w_g sqrt(min_j C_g[i, j])`` lower-bounds the weighted DTW. :func:`frdist_items`
visits the candidates of ``min_{j∈app(n)}`` in order of their lock-step (diagonal-path)
cost, an upper bound of DTW, and abandons a candidate as soon as its lower bound exceeds
the best value so far times ``1 + PRUNE_MARGIN`` (a relative margin that keeps the test
safe from rounding). An abandoned candidate could never have been the minimum, so pruning
never changes a value.

**FMA.** The DTW kernels compile with ``fastmath={"contract"}``: LLVM may fuse
``e * e + d`` into one fused multiply-add (one rounding instead of two). Nothing else is
relaxed (no reassociation, no finite-math assumptions), so the summation order stays
tslearn's and the values agree with tslearn to rounding (``tests/test_metrics.py``
checks 1e-12 relative).

**TLCC** (:func:`tlcc_offsets`): per lag −L..L, the mean over dims of the Pearson
correlation of the shifted prediction and the speaker, with the official quirks (a
constant window makes the lag NaN, and the first NaN wins the argmax; per-lag means are
rounded to float32); see :func:`reactdiff_lite.metrics.frsyn`.

The kernels release the GIL; :func:`run_parallel` runs them on a thread pool.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit, uint64

FASTMATH_FLAGS = {"contract"}  # let LLVM fuse e*e + d into an FMA; nothing else is relaxed
PRUNE_MARGIN = 1e-9  # abandon only when the lower bound exceeds best * (1 + margin)


# ------------------------------------------------------------------------ thread pool
def default_threads() -> int:
    """Worker threads for the compiled kernels: ``$REACTDIFF_THREADS``, else all CPUs."""
    return int(os.environ.get("REACTDIFF_THREADS", 0)) or os.cpu_count() or 1


def run_parallel(
    work: Callable[[int, int], None],
    n: int,
    chunk: int,
    threads: int | None,
    progress: bool = False,
    desc: str = "",
    unit: str = "task",
) -> None:
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
            if bar is not None:
                bar.update(b - a)
    else:
        with ThreadPoolExecutor(threads) as pool:
            futures = [pool.submit(work, a, b) for a, b in spans]
            for (a, b), future in zip(spans, futures, strict=True):
                future.result()
                if bar is not None:
                    bar.update(b - a)
    if bar is not None:
        bar.close()


# ------------------------------------------------------------------------- cell costs
@njit(inline="always")
def _min2(a, b):
    return a if a < b else b


@njit(inline="always", fastmath=FASTMATH_FLAGS)
def _add_squares4(d, xi, yt, k, m):
    """d[j] += Σ_{k<=k'<k+4} (x_ik' − y_jk')², in k order."""
    a0, a1, a2, a3 = xi[k], xi[k + 1], xi[k + 2], xi[k + 3]
    r0, r1, r2, r3 = yt[k], yt[k + 1], yt[k + 2], yt[k + 3]
    for j in range(uint64(0), m):  # unsigned index: no wrap-around, vectorises
        e0, e1, e2, e3 = a0 - r0[j], a1 - r1[j], a2 - r2[j], a3 - r3[j]
        d[j] = d[j] + e0 * e0 + e1 * e1 + e2 * e2 + e3 * e3


@njit(inline="always", fastmath=FASTMATH_FLAGS)
def _add_squares2(d, xi, yt, k, m):
    a0, a1 = xi[k], xi[k + 1]
    r0, r1 = yt[k], yt[k + 1]
    for j in range(uint64(0), m):
        e0, e1 = a0 - r0[j], a1 - r1[j]
        d[j] = d[j] + e0 * e0 + e1 * e1


@njit(inline="always", fastmath=FASTMATH_FLAGS)
def _add_squares1(d, xi, yt, k, m):
    a0 = xi[k]
    r0 = yt[k]
    for j in range(uint64(0), m):
        e0 = a0 - r0[j]
        d[j] = d[j] + e0 * e0


@njit(inline="always", fastmath=FASTMATH_FLAGS)
def _row_cost(d, xi, yt, k0, k1, m):
    """d[j] = Σ_{k0<=k<k1} (x_ik − y_jk)², summed in k order like tslearn."""
    for j in range(uint64(0), m):
        d[j] = 0.0
    k = k0
    while k + 4 <= k1:
        _add_squares4(d, xi, yt, k, m)
        k += 4
    if k + 2 <= k1:
        _add_squares2(d, xi, yt, k, m)
        k += 2
    if k < k1:
        _add_squares1(d, xi, yt, k, m)


@njit(inline="always", fastmath=FASTMATH_FLAGS)
def _add_squares4_pair(da, db, xa, xb, yt, k, m):
    """:func:`_add_squares4` for two rows x_a, x_b at once."""
    a0, a1, a2, a3 = xa[k], xa[k + 1], xa[k + 2], xa[k + 3]
    b0, b1, b2, b3 = xb[k], xb[k + 1], xb[k + 2], xb[k + 3]
    r0, r1, r2, r3 = yt[k], yt[k + 1], yt[k + 2], yt[k + 3]
    for j in range(uint64(0), m):
        y0, y1, y2, y3 = r0[j], r1[j], r2[j], r3[j]
        e0, e1, e2, e3 = a0 - y0, a1 - y1, a2 - y2, a3 - y3
        da[j] = da[j] + e0 * e0 + e1 * e1 + e2 * e2 + e3 * e3
        e0, e1, e2, e3 = b0 - y0, b1 - y1, b2 - y2, b3 - y3
        db[j] = db[j] + e0 * e0 + e1 * e1 + e2 * e2 + e3 * e3


@njit(inline="always", fastmath=FASTMATH_FLAGS)
def _add_squares2_pair(da, db, xa, xb, yt, k, m):
    a0, a1 = xa[k], xa[k + 1]
    b0, b1 = xb[k], xb[k + 1]
    r0, r1 = yt[k], yt[k + 1]
    for j in range(uint64(0), m):
        y0, y1 = r0[j], r1[j]
        e0, e1 = a0 - y0, a1 - y1
        da[j] = da[j] + e0 * e0 + e1 * e1
        e0, e1 = b0 - y0, b1 - y1
        db[j] = db[j] + e0 * e0 + e1 * e1


@njit(inline="always", fastmath=FASTMATH_FLAGS)
def _add_squares1_pair(da, db, xa, xb, yt, k, m):
    a0 = xa[k]
    b0 = xb[k]
    r0 = yt[k]
    for j in range(uint64(0), m):
        y0 = r0[j]
        e0 = a0 - y0
        da[j] = da[j] + e0 * e0
        e0 = b0 - y0
        db[j] = db[j] + e0 * e0


@njit(inline="always", fastmath=FASTMATH_FLAGS)
def _row_cost_pair(da, db, xa, xb, yt, k0, k1, m):
    """:func:`_row_cost` for two rows at once: each y value is loaded once for both."""
    for j in range(uint64(0), m):
        da[j] = 0.0
        db[j] = 0.0
    k = k0
    while k + 4 <= k1:
        _add_squares4_pair(da, db, xa, xb, yt, k, m)
        k += 4
    if k + 2 <= k1:
        _add_squares2_pair(da, db, xa, xb, yt, k, m)
        k += 2
    if k < k1:
        _add_squares1_pair(da, db, xa, xb, yt, k, m)


# ------------------------------------------------------------------ accumulated costs
@njit(inline="always", fastmath=FASTMATH_FLAGS)
def _dtw_row(d, prev, cur, m):
    """One row of C[i, j] = d(i, j) + min(C[i−1, j], C[i−1, j−1], C[i, j−1]); returns min_j C[i, j]."""
    c = cur[0]
    row_min = np.inf
    for j in range(m):
        c = d[j] + _min2(_min2(prev[j + 1], prev[j]), c)
        cur[j + 1] = c
        row_min = _min2(row_min, c)
    return row_min


@njit(inline="always", fastmath=FASTMATH_FLAGS)
def _dtw_row_pair(da, db, p, c, m):
    """Rows i (a) and i+1 (b) in one sweep, b one column behind a, so that two dependency
    chains run side by side. Row a stays in registers; c receives row b; returns min of row b."""
    a = da[0] + _min2(p[1], p[0])  # C[i, 0]; C[i, -1] = inf
    am = np.inf  # C[i, j-1]
    b = np.inf  # C[i+1, j-2]
    r = np.inf
    for j in range(1, m):
        b = db[j - 1] + _min2(_min2(a, am), b)  # C[i+1, j-1]
        c[j] = b
        r = _min2(r, b)
        am = a
        a = da[j] + _min2(_min2(p[j + 1], p[j]), a)  # C[i, j]
    b = db[m - 1] + _min2(_min2(a, am), b)
    c[m] = b
    return _min2(r, b)


@njit(inline="always", fastmath=FASTMATH_FLAGS)
def _dtw_row_pair3(da, db, p, c, m):
    """:func:`_dtw_row_pair` for three groups (the first index of every (3, m) array): six
    independent chains per step. Returns the three row minima."""
    da0, da1, da2, db0, db1, db2 = da[0], da[1], da[2], db[0], db[1], db[2]
    p0, p1, p2, c0, c1, c2 = p[0], p[1], p[2], c[0], c[1], c[2]
    a0, a1, a2 = da0[0] + _min2(p0[1], p0[0]), da1[0] + _min2(p1[1], p1[0]), da2[0] + _min2(p2[1], p2[0])
    am0, am1, am2 = np.inf, np.inf, np.inf
    b0, b1, b2 = np.inf, np.inf, np.inf
    r0, r1, r2 = np.inf, np.inf, np.inf
    for j in range(1, m):
        b0 = db0[j - 1] + _min2(_min2(a0, am0), b0)
        b1 = db1[j - 1] + _min2(_min2(a1, am1), b1)
        b2 = db2[j - 1] + _min2(_min2(a2, am2), b2)
        c0[j], c1[j], c2[j] = b0, b1, b2
        r0, r1, r2 = _min2(r0, b0), _min2(r1, b1), _min2(r2, b2)
        am0, am1, am2 = a0, a1, a2
        a0 = da0[j] + _min2(_min2(p0[j + 1], p0[j]), a0)
        a1 = da1[j] + _min2(_min2(p1[j + 1], p1[j]), a1)
        a2 = da2[j] + _min2(_min2(p2[j + 1], p2[j]), a2)
    b0 = db0[m - 1] + _min2(_min2(a0, am0), b0)
    b1 = db1[m - 1] + _min2(_min2(a1, am1), b1)
    b2 = db2[m - 1] + _min2(_min2(a2, am2), b2)
    c0[m], c1[m], c2[m] = b0, b1, b2
    return _min2(r0, b0), _min2(r1, b1), _min2(r2, b2)


@njit(cache=True, fastmath=FASTMATH_FLAGS)
def dtw_groups(x, yt, n, m, bounds, weights, bound):
    """``Σ_g w_g sqrt(DTW²_g)`` of x[:n] (frames, dims) against yt[:, :m] (dims, frames).

    Group g is dims ``bounds[g]:bounds[g + 1]`` with weight ``weights[g]``. The table is
    swept two rows at a time with two rolling rows of memory. Returns inf as soon as the
    lower bound ``Σ_g w_g sqrt(min_j C_g[i, j])`` exceeds ``bound`` (early abandoning);
    ``bound = inf`` gives the plain value.
    """
    G = weights.shape[0]
    um = uint64(m)
    prev = np.full((G, m + 1), np.inf)  # C[i-1, j-1] at index j; C[-1, -1] = 0
    cur = np.full((G, m + 1), np.inf)  # index 0 stays inf: C[i, -1]
    d = np.empty((2, G, m))  # cell costs of the rows being swept
    row_min = np.empty(G)
    prev[:, 0] = 0.0
    i = 0
    while i < n:
        if i + 1 < n and (G == 1 or G == 3):
            for g in range(G):
                _row_cost_pair(d[0, g], d[1, g], x[i], x[i + 1], yt, bounds[g], bounds[g + 1], um)
            if G == 3:
                row_min[0], row_min[1], row_min[2] = _dtw_row_pair3(d[0], d[1], prev, cur, m)
            else:
                row_min[0] = _dtw_row_pair(d[0, 0], d[1, 0], prev[0], cur[0], m)
            i += 2
        else:
            for g in range(G):
                _row_cost(d[0, g], x[i], yt, bounds[g], bounds[g + 1], um)
            for g in range(G):
                row_min[g] = _dtw_row(d[0, g], prev[g], cur[g], m)
            i += 1
        prev, cur = cur, prev
        cur[:, 0] = np.inf
        if bound < np.inf:
            lower = 0.0
            for g in range(G):
                lower += weights[g] * np.sqrt(row_min[g])
            if lower > bound:
                return np.inf
    total = 0.0
    for g in range(G):
        total += weights[g] * np.sqrt(prev[g, m])
    return total


# ------------------------------------------------------------------------ batched DTW
@njit(cache=True, nogil=True)
def dtw_pairs(X, Yt, nx, my, ix, iy, bounds, weights, out, start, stop):
    """out[t] = :func:`dtw_groups` of X[ix[t], :nx] and Yt[iy[t], :, :my] for start <= t < stop."""
    for t in range(start, stop):
        a = ix[t]
        b = iy[t]
        out[t] = dtw_groups(X[a], Yt[b], nx[a], my[b], bounds, weights, np.inf)


@njit(cache=True, nogil=True)
def frdist_items(P, Lt, ptr, idx, bounds, weights, prune, out, visited):
    """out[n, k] = min over app(n) of the weighted group DTW of P[n, k]; visited[n, k]
    counts the candidates that were not abandoned.

    P: (n, K, T, D) float64 items; Lt: (N, D, T) listeners; the candidates of item n are
    ``idx[ptr[n]:ptr[n + 1]]`` (CSR rows of the appropriateness matrix).
    """
    K = P.shape[1]
    T = P.shape[2]
    G = weights.shape[0]
    for n in range(P.shape[0]):
        cand = idx[ptr[n] : ptr[n + 1]]
        C = cand.shape[0]
        upper = np.empty(C)
        for k in range(K):
            x = P[n, k]  # (T, D)
            xt = np.ascontiguousarray(x.T)  # (D, T)
            for c in range(C):  # lock-step (diagonal path) cost >= DTW
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
                upper[c] = s
            order = np.argsort(upper)  # likely best first
            bound = upper[order[0]] * (1.0 + PRUNE_MARGIN) if prune else np.inf
            best = np.inf
            used = 0
            for c in order:
                v = dtw_groups(x, Lt[cand[c]], T, T, bounds, weights, bound)
                if v < np.inf:
                    used += 1
                if v < best:
                    best = v
                    if prune:
                        bound = min(bound, best * (1.0 + PRUNE_MARGIN))
            out[n, k] = best
            visited[n, k] = used


# ------------------------------------------------------------------------------- TLCC
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


@njit(cache=True)
def _pearson(xw, yw, n):
    """Pearson correlation of two length-n windows (two passes: means, then moments)."""
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
    return sxy / np.sqrt(sxx * syy)


@njit(cache=True, nogil=True)
def tlcc_offsets(X, S, max_lag, ignore_constant, out):
    """out[n, k] = |max_lag − argmax_lag mean_d Pearson(X[n, k] shifted, S[n])|, the official TLCC.
    ``ignore_constant`` averages over the channels that vary in the lag window instead."""
    T, D = X.shape[2], X.shape[3]
    for t in range(X.shape[0] * X.shape[1]):
        x = X[t // X.shape[1], t % X.shape[1]]
        y = S[t // X.shape[1]]
        hx, tx = _constant_runs(x)
        hy, ty = _constant_runs(y)
        xt = np.ascontiguousarray(x.T)  # (D, T): contiguous windows
        yt = np.ascontiguousarray(y.T)
        best = -np.inf
        arg = 0
        for a in range(2 * max_lag + 1):
            lag = a - max_lag
            xs = lag if lag > 0 else 0  # x[lag:], y[:-lag] for lag > 0
            ys = -lag if lag < 0 else 0  # x[:lag], y[-lag:] for lag < 0
            n = T - abs(lag)
            tot = 0.0
            used = 0
            for d in range(D):
                if _window_constant(hx, tx, d, xs, xs + n, T) or _window_constant(hy, ty, d, ys, ys + n, T):
                    if ignore_constant:
                        continue
                    used = 0
                    break
                r = _pearson(xt[d, xs : xs + n], yt[d, ys : ys + n], n)
                r = min(1.0, max(-1.0, r))
                tot += np.float32(r)  # the official list -> float32 tensor
                used += 1
            if used == 0:  # NaN mean; torch.argmax: the first NaN wins
                arg = a
                break
            v = np.float32(tot / used)
            if v > best:
                best = v
                arg = a
        out[t // X.shape[1], t % X.shape[1]] = abs(max_lag - arg)
