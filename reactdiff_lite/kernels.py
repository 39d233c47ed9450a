"""Compiled kernels behind the REACT metrics: DTW for FRDist and the TLCC offsets of FRSyn.

The definitions live in :mod:`reactdiff_lite.metrics`; this module only makes them fast.

**DTW** (tslearn's definition). For a group g of dimensions, the accumulated cost table

    ``C_g[i, j] = d_g(i, j) + min(C_g[i−1, j], C_g[i−1, j−1], C_g[i, j−1])``,  ``C_g[−1, −1] = 0``,

with the cell cost ``d_g(i, j) = Σ_{k∈g} (x_ik − y_jk)²`` summed in k order (as tslearn
does), gives ``DTW_g = sqrt(C_g[n−1, m−1])``. :func:`dtw_groups` computes the weighted sum
``Σ_g w_g DTW_g`` of the whole tables: it keeps two rolling rows instead of a table and
sweeps two rows at a time, row i+1 one column behind row i, so that independent
dependency chains run side by side (with the three REACT groups all three tables go
together: six chains). Cell costs of both rows are computed together, loading each y
value once, in unrolled blocks of 4, 2 and 1 dimensions.

**Pruning, exact.** FRDist needs ``min_{j∈app(n)}`` of the weighted DTW. Accumulated
costs only grow along a warping path, so every cell of the optimal path of group g has
``C_g[i, j] <= C_g[n−1, m−1]``. If the weighted value is to be at most a bound B and the
groups h already computed sum to ``S = Σ_h w_h DTW_h``, the groups still to come add
>= 0, so a cell of group g with ``C_g[i, j] > thr_g = ((B − S) / w_g)²`` cannot be on an
optimal path of a value <= B. :func:`dtw_groups_pruned` computes the groups one after the
other (most weight per unit of work first: valence/arousal, then expressions, then AUs)
and each table with PrunedDTW (Silva & Batista 2016): a row's cells above thr_g are
dropped from its ends, so row i+1 is computed only from the first to one past the last
kept column of row i, and right of that only while its cells stay <= thr_g. A row with no
cell <= thr_g abandons the candidate (this is early abandoning on ``min_j C_g[i, j]``). The
cells of an optimal path are never dropped, and every kept cell is computed by the same
operations as in the full table, so the value of a candidate within the bound is the
full table's value bit for bit (``tests/test_metrics.py`` checks this against
:func:`dtw_groups`). :func:`frdist_items` visits the candidates in order of their
lock-step (diagonal-path) cost, an upper bound of DTW, with B the smaller of the best
lock-step cost and the best value so far, times ``1 + PRUNE_MARGIN`` (a relative margin
that keeps the comparisons safe from rounding). A candidate that is abandoned could never
have been the minimum, so pruning never changes a value. On model-like predictions most
cells of the best candidate's tables are dropped too (cells off its diagonal soon exceed
thr_g).

Two exact lower bounds that skip whole candidates before any table were measured on
issue 13's inputs and not kept: the endpoint bound ``Σ_g w_g sqrt(d_g(0, 0) + d_g(n−1,
m−1))`` (both cells are on every path) stays below the best value (at most 0.99 of it on
model-like, 0.11 on unrelated predictions), and the row-minima bound ``Σ_g w_g sqrt(Σ_i
min_j d_g(i, j))`` (every path visits every row) does exceed the best value for every
losing unrelated candidate, but it needs every cell cost (more than half of a full DTW)
while the banded tables abandon those candidates at about a third. Computing the cell
costs as a GEMM (``‖x‖² + ‖y‖² − 2 x·y``) was not kept either: with 2 to 15 dimensions per
group there is little to gain (one FMA per term instead of a subtraction and an FMA, which
run on separate pipes; numpy's GEMM route took 25 ms for one pair's three matrices, the
direct sums here ~1 ms), and its error is relative to ``‖x‖² + ‖y‖²``, not to the cell (up
to 3.9e-11 relative on near-zero valence/arousal cells of model-like inputs), so the 1e-12
agreement with tslearn would no longer be guaranteed. Sweeping the banded tables four rows
at a time (four chains instead of two) and cell costs in blocks of 8 dimensions measured
no faster.

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
EXTEND_CHUNK = 32  # cell costs right of a band are computed this many columns at a time
WIDE_BAND = 0.75  # share of cells above which frdist_items uses the fused sweep; see there


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
def _add_squares4(d, xi, yt, k, a, b):
    """d[j] += Σ_{k<=k'<k+4} (x_ik' − y_jk')² for a <= j < b, in k order."""
    a0, a1, a2, a3 = xi[k], xi[k + 1], xi[k + 2], xi[k + 3]
    r0, r1, r2, r3 = yt[k], yt[k + 1], yt[k + 2], yt[k + 3]
    for j in range(a, b):  # unsigned index: no wrap-around, vectorises
        e0, e1, e2, e3 = a0 - r0[j], a1 - r1[j], a2 - r2[j], a3 - r3[j]
        d[j] = d[j] + e0 * e0 + e1 * e1 + e2 * e2 + e3 * e3


@njit(inline="always", fastmath=FASTMATH_FLAGS)
def _add_squares2(d, xi, yt, k, a, b):
    a0, a1 = xi[k], xi[k + 1]
    r0, r1 = yt[k], yt[k + 1]
    for j in range(a, b):
        e0, e1 = a0 - r0[j], a1 - r1[j]
        d[j] = d[j] + e0 * e0 + e1 * e1


@njit(inline="always", fastmath=FASTMATH_FLAGS)
def _add_squares1(d, xi, yt, k, a, b):
    a0 = xi[k]
    r0 = yt[k]
    for j in range(a, b):
        e0 = a0 - r0[j]
        d[j] = d[j] + e0 * e0


@njit(inline="always", fastmath=FASTMATH_FLAGS)
def _row_cost(d, xi, yt, k0, k1, j0, j1):
    """d[j] = Σ_{k0<=k<k1} (x_ik − y_jk)² for j0 <= j < j1, summed in k order like tslearn."""
    a, b = uint64(j0), uint64(j1)
    for j in range(a, b):
        d[j] = 0.0
    k = k0
    while k + 4 <= k1:
        _add_squares4(d, xi, yt, k, a, b)
        k += 4
    if k + 2 <= k1:
        _add_squares2(d, xi, yt, k, a, b)
        k += 2
    if k < k1:
        _add_squares1(d, xi, yt, k, a, b)


@njit(inline="always", fastmath=FASTMATH_FLAGS)
def _add_squares4_pair(da, db, xa, xb, yt, k, a, b):
    """:func:`_add_squares4` for two rows x_a, x_b at once."""
    a0, a1, a2, a3 = xa[k], xa[k + 1], xa[k + 2], xa[k + 3]
    b0, b1, b2, b3 = xb[k], xb[k + 1], xb[k + 2], xb[k + 3]
    r0, r1, r2, r3 = yt[k], yt[k + 1], yt[k + 2], yt[k + 3]
    for j in range(a, b):
        y0, y1, y2, y3 = r0[j], r1[j], r2[j], r3[j]
        e0, e1, e2, e3 = a0 - y0, a1 - y1, a2 - y2, a3 - y3
        da[j] = da[j] + e0 * e0 + e1 * e1 + e2 * e2 + e3 * e3
        e0, e1, e2, e3 = b0 - y0, b1 - y1, b2 - y2, b3 - y3
        db[j] = db[j] + e0 * e0 + e1 * e1 + e2 * e2 + e3 * e3


@njit(inline="always", fastmath=FASTMATH_FLAGS)
def _add_squares2_pair(da, db, xa, xb, yt, k, a, b):
    a0, a1 = xa[k], xa[k + 1]
    b0, b1 = xb[k], xb[k + 1]
    r0, r1 = yt[k], yt[k + 1]
    for j in range(a, b):
        y0, y1 = r0[j], r1[j]
        e0, e1 = a0 - y0, a1 - y1
        da[j] = da[j] + e0 * e0 + e1 * e1
        e0, e1 = b0 - y0, b1 - y1
        db[j] = db[j] + e0 * e0 + e1 * e1


@njit(inline="always", fastmath=FASTMATH_FLAGS)
def _add_squares1_pair(da, db, xa, xb, yt, k, a, b):
    a0 = xa[k]
    b0 = xb[k]
    r0 = yt[k]
    for j in range(a, b):
        y0 = r0[j]
        e0 = a0 - y0
        da[j] = da[j] + e0 * e0
        e0 = b0 - y0
        db[j] = db[j] + e0 * e0


@njit(inline="always", fastmath=FASTMATH_FLAGS)
def _row_cost_pair(da, db, xa, xb, yt, k0, k1, j0, j1):
    """:func:`_row_cost` for two rows at once: each y value is loaded once for both."""
    a, b = uint64(j0), uint64(j1)
    for j in range(a, b):
        da[j] = 0.0
        db[j] = 0.0
    k = k0
    while k + 4 <= k1:
        _add_squares4_pair(da, db, xa, xb, yt, k, a, b)
        k += 4
    if k + 2 <= k1:
        _add_squares2_pair(da, db, xa, xb, yt, k, a, b)
        k += 2
    if k < k1:
        _add_squares1_pair(da, db, xa, xb, yt, k, a, b)


# ------------------------------------------------------------------ accumulated costs
@njit(inline="always", fastmath=FASTMATH_FLAGS)
def _dtw_row_pair3(da, db, p, c, m):
    """Rows i (a) and i+1 (b) of three groups (the first index of every (3, m) array) in
    one sweep, b one column behind a: six independent dependency chains per step. Row a
    stays in registers; c receives row b."""
    da0, da1, da2, db0, db1, db2 = da[0], da[1], da[2], db[0], db[1], db[2]
    p0, p1, p2, c0, c1, c2 = p[0], p[1], p[2], c[0], c[1], c[2]
    a0, a1, a2 = da0[0] + _min2(p0[1], p0[0]), da1[0] + _min2(p1[1], p1[0]), da2[0] + _min2(p2[1], p2[0])
    am0, am1, am2 = np.inf, np.inf, np.inf  # C[i, j-2]
    b0, b1, b2 = np.inf, np.inf, np.inf  # C[i+1, j-2]
    for j in range(1, m):
        b0 = db0[j - 1] + _min2(_min2(a0, am0), b0)  # C[i+1, j-1]
        b1 = db1[j - 1] + _min2(_min2(a1, am1), b1)
        b2 = db2[j - 1] + _min2(_min2(a2, am2), b2)
        c0[j], c1[j], c2[j] = b0, b1, b2
        am0, am1, am2 = a0, a1, a2
        a0 = da0[j] + _min2(_min2(p0[j + 1], p0[j]), a0)  # C[i, j]
        a1 = da1[j] + _min2(_min2(p1[j + 1], p1[j]), a1)
        a2 = da2[j] + _min2(_min2(p2[j + 1], p2[j]), a2)
    c0[m] = db0[m - 1] + _min2(_min2(a0, am0), b0)
    c1[m] = db1[m - 1] + _min2(_min2(a1, am1), b1)
    c2[m] = db2[m - 1] + _min2(_min2(a2, am2), b2)


@njit(cache=True, fastmath=FASTMATH_FLAGS)
def dtw_groups(x, yt, n, m, bounds, weights):
    """``Σ_g w_g sqrt(DTW²_g)`` of x[:n] (frames, dims) against yt[:, :m] (dims, frames).

    Group g is dims ``bounds[g]:bounds[g + 1]`` with weight ``weights[g]``. With three
    groups (REACT) the three tables are swept together, two rows at a time, with two
    rolling rows of memory; other group counts go group by group through
    :func:`dtw_groups_pruned` without a bound.
    """
    G = weights.shape[0]
    if G != 3:
        return dtw_groups_pruned(x, yt, n, m, bounds, weights, np.arange(G), np.inf)[0]
    prev = np.full((G, m + 1), np.inf)  # C[i-1, j-1] at index j; C[-1, -1] = 0
    cur = np.full((G, m + 1), np.inf)  # index 0 stays inf: C[i, -1]
    d = np.empty((2, G, m))  # cell costs of the rows being swept
    prev[:, 0] = 0.0
    i = 0
    while i + 1 < n:
        for g in range(G):
            _row_cost_pair(d[0, g], d[1, g], x[i], x[i + 1], yt, bounds[g], bounds[g + 1], 0, m)
        _dtw_row_pair3(d[0], d[1], prev, cur, m)
        prev, cur = cur, prev
        cur[:, 0] = np.inf
        i += 2
    if i < n:  # odd n: the last row alone
        for g in range(G):
            _band_row(d[0, g], x[i], yt, bounds[g], bounds[g + 1], prev[g], cur[g], 0, m, np.inf, m, np.inf)
        prev = cur
    total = 0.0
    for g in range(G):
        total += weights[g] * np.sqrt(prev[g, m])
    return total


# --------------------------------------------------------------- pruned DTW (banded)
@njit(inline="always", fastmath=FASTMATH_FLAGS)
def _extend(d, xi, yt, k0, k1, c, j, m, left, thr):
    """Continue a row rightwards from column j, where only the left neighbour (value
    ``left``) can be finite, while the cells stay <= thr; returns the end column."""
    while j < m and left <= thr:
        e = min(j + EXTEND_CHUNK, m)
        _row_cost(d, xi, yt, k0, k1, j, e)
        while j < e and left <= thr:
            left = d[j] + left
            c[j + 1] = left
            j += 1
    return j


@njit(inline="always", fastmath=FASTMATH_FLAGS)
def _band_row(d, xi, yt, k0, k1, p, c, j, jv, left, m, thr):
    """Row i from column j on: the full recurrence below the previous row's band (j < jv),
    then :func:`_extend`. ``left`` is C[i, j−1]; c[j'+1] receives C[i, j']; returns the end column."""
    _row_cost(d, xi, yt, k0, k1, j, jv)
    while j < jv:
        left = d[j] + _min2(_min2(p[j + 1], p[j]), left)
        c[j + 1] = left
        j += 1
    return _extend(d, xi, yt, k0, k1, c, jv, m, left, thr)


@njit(inline="always", fastmath=FASTMATH_FLAGS)
def _band_pair(da, db, p, ar, c, j0, j1):
    """Rows i (a) and i+1 (b) below the previous row's band, b one column behind a (two
    dependency chains): a over j0 <= j < j1 into ar, b over j0 <= j < j1−1 into c.
    Returns C[i, j1−1] and C[i+1, j1−2] to continue from."""
    a = da[j0] + _min2(p[j0 + 1], p[j0])  # C[i, j0]; C[i, j0 − 1] is outside the band
    ar[j0 + 1] = a
    am = np.inf  # C[i, j−2]
    b = np.inf  # C[i+1, j−2]
    for j in range(j0 + 1, j1):
        b = db[j - 1] + _min2(_min2(a, am), b)  # C[i+1, j−1]
        c[j] = b
        am = a
        a = da[j] + _min2(_min2(p[j + 1], p[j]), a)  # C[i, j]
        ar[j + 1] = a
    return a, b


@njit(inline="always")
def _band(c, start, stop, m, thr):
    """The band of a new row: first and last index in [start, stop] with c <= thr (−1, −1
    if none). Cells outside it are pruned: c[lo−1] and c[hi+1] become inf, the sentinels
    that keep the next row from reading stale cells."""
    lo = start
    while lo <= stop and not c[lo] <= thr:
        lo += 1
    if lo > stop:
        return -1, -1
    hi = stop
    while not c[hi] <= thr:
        hi -= 1
    c[lo - 1] = np.inf
    if hi < m:
        c[hi + 1] = np.inf
    return lo, hi


@njit(inline="always", fastmath=FASTMATH_FLAGS)
def _dtw_pruned(x, yt, n, m, k0, k1, thr, p, ar, c, da, db):
    """(C[n−1, m−1] of dims k0:k1 with every cell above ``thr`` pruned (PrunedDTW), or inf
    once a row has no cell <= thr (then the value exceeds thr); cells computed).

    Arrays hold C[i, j] at index j+1; the previous row's band [lo, hi] (indices) is
    bracketed by inf. Row i can only be finite from column lo−1 to hi below the band, and
    right of it only along the row while it stays <= thr. Rows go in pairs (two
    dependency chains) below the band; the parts right of it go cell by cell.
    """
    p[:] = np.inf
    p[0] = 0.0  # C[−1, −1]
    lo, hi = 0, 0
    cells = 0
    i = 0
    while i < n:
        j0 = max(lo - 1, 0)
        j1 = min(hi + 1, m)
        if i + 1 < n:
            _row_cost_pair(da, db, x[i], x[i + 1], yt, k0, k1, j0, j1)
            a, b = _band_pair(da, db, p, ar, c, j0, j1)
            ea = _extend(da, x[i], yt, k0, k1, ar, j1, m, a, thr)
            ar[j0] = np.inf
            if ea < m:
                ar[ea + 1] = np.inf
            end = _band_row(db, x[i + 1], yt, k0, k1, ar, c, j1 - 1, min(ea + 1, m), b, m, thr)
            cells += ea - j0
            i += 2
        else:
            end = _band_row(da, x[i], yt, k0, k1, p, c, j0, j1, np.inf, m, thr)
            i += 1
        cells += end - j0
        lo, hi = _band(c, j0 + 1, end, m, thr)
        if lo < 0:
            return np.inf, cells
        p, c = c, p
    return (p[m] if hi == m else np.inf), cells


@njit(inline="always")
def _group_order(bounds, weights):
    """Groups by decreasing ``w_g / sqrt(dims_g)``: a group's share of the weighted value
    grows like ``w_g sqrt(dims_g)`` and its cost like dims_g, so the groups that bound the
    value most per unit of work go first (REACT: valence/arousal, expressions, AUs)."""
    dims = (bounds[1:] - bounds[:-1]).astype(np.float64)
    return np.argsort(-weights / np.sqrt(dims))


@njit(cache=True, fastmath=FASTMATH_FLAGS)
def dtw_groups_pruned(x, yt, n, m, bounds, weights, order, bound):
    """(:func:`dtw_groups` if it is <= ``bound``, else inf or a value above bound; the
    fraction of the tables' cells computed).

    The groups go one after the other in ``order``; group g runs :func:`_dtw_pruned` with
    ``thr_g = ((bound − Σ_done w_h DTW_h) / w_g)²``: a cell above thr_g cannot lie on the
    optimal path of a total <= bound (accumulated costs grow along a path and the groups
    still to come add >= 0). The value is summed in group order, as :func:`dtw_groups` does.
    """
    G = weights.shape[0]
    p = np.empty(m + 1)
    ar = np.empty(m + 1)
    c = np.empty(m + 1)
    da = np.empty(m)
    db = np.empty(m)
    cost = np.empty(G)
    cells = 0
    done = 0.0
    for g in order:
        rest = bound - done
        if rest < 0.0:
            return np.inf, cells / (G * n * m)
        thr = (rest / weights[g]) ** 2 if weights[g] > 0.0 else np.inf
        cost[g], used = _dtw_pruned(x, yt, n, m, bounds[g], bounds[g + 1], thr, p, ar, c, da, db)
        cells += used
        if cost[g] == np.inf:
            return np.inf, cells / (G * n * m)
        done += weights[g] * np.sqrt(cost[g])
    total = 0.0
    for g in range(G):
        total += weights[g] * np.sqrt(cost[g])
    return total, cells / (G * n * m)


# ------------------------------------------------------------------------ batched DTW
@njit(cache=True, nogil=True)
def dtw_pairs(X, Yt, nx, my, ix, iy, bounds, weights, out, start, stop):
    """out[t] = :func:`dtw_groups` of X[ix[t], :nx] and Yt[iy[t], :, :my] for start <= t < stop."""
    for t in range(start, stop):
        a = ix[t]
        b = iy[t]
        out[t] = dtw_groups(X[a], Yt[b], nx[a], my[b], bounds, weights)


@njit(cache=True, nogil=True)
def frdist_items(P, Lt, ptr, idx, bounds, weights, prune, out, visited):
    """out[n, k] = min over app(n) of the weighted group DTW of P[n, k]; visited[n, k]
    counts the candidates that were not abandoned.

    P: (n, K, T, D) float64 items; Lt: (N, D, T) listeners; the candidates of item n are
    ``idx[ptr[n]:ptr[n + 1]]`` (CSR rows of the appropriateness matrix).

    With ``prune``, candidates go through :func:`dtw_groups_pruned`, best lock-step cost
    first. A prediction unrelated to every listener needs nearly the whole table of its
    best candidate, which the fused sweep of :func:`dtw_groups` computes faster (six
    chains instead of two): if the first candidate of an item's first prediction needed
    more than ``WIDE_BAND`` of its cells, the first candidate of the item's other
    predictions goes through :func:`dtw_groups` (both give the same bits).
    """
    K = P.shape[1]
    T = P.shape[2]
    G = weights.shape[0]
    groups = _group_order(bounds, weights)
    for n in range(P.shape[0]):
        cand = idx[ptr[n] : ptr[n + 1]]
        C = cand.shape[0]
        upper = np.empty(C)
        wide = False
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
            for pos, c in enumerate(order):
                if not prune or (pos == 0 and wide):
                    v = dtw_groups(x, Lt[cand[c]], T, T, bounds, weights)
                else:
                    v, frac = dtw_groups_pruned(x, Lt[cand[c]], T, T, bounds, weights, groups, bound)
                    if pos == 0 and k == 0:
                        wide = frac > WIDE_BAND
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
