"""The REACT metrics in torch (float64), for a GPU (``device="cuda"``) or the CPU.

Same definitions as :mod:`reactdiff_lite.metrics` (see its docstring), another engine:
:func:`reactdiff_lite.metrics.evaluate` and the metric functions there call these when
given ``device=``. Inputs are the checked numpy arrays; outputs are numpy.

* **FRCorr** table: ``max_{j∈app(n)} CCC_D(L_j, pred[n,k])`` with
  ``CCC = 2 r σx σy / (σx² + σy² + (μx − μy)² + 1e-8)``, r = cov / (σx σy) with NaN -> 0 and
  clipped to [-1, 1]; covariances of all (item, prediction, listener) triples as batched
  matrix products over T, items in chunks, non-appropriate listeners masked to −inf.
* **FRDist** table: ``min_{j∈app(n)} Σ_g w_g sqrt(C_g[T−1, T−1])`` with tslearn's DTW table

      ``C_g[i, j] = d_g(i, j) + min(C_g[i−1, j], C_g[i−1, j−1], C_g[i, j−1])``,
      ``d_g(i, j) = Σ_{k∈g} (x_ik − y_jk)²``,  ``C_g[−1, −1] = 0``.

  :func:`dtw_wavefront` computes it as an **anti-diagonal wavefront**: every cell of the
  diagonal ``i + j = s`` depends only on diagonals s−1 and s−2, so one step computes a
  whole diagonal for every (prediction, candidate) pair of a batch at once: ``n + m − 1``
  steps of vector work instead of ``n·m`` scalar steps. The cell costs of a batch of pairs
  are computed first (:func:`pair_costs`, exact differences, y reversed in time, so that
  each anti-diagonal is a strided diagonal view). Every candidate is computed fully (no
  early abandoning: the GPU has lanes to spare).
* **FRDiv**, **FRVar**, **FRDvs**: the shifted formulas of the numba path (K identical
  predictions give exactly 0).

FRSyn has no torch path (its official NaN quirks are sequential); :func:`evaluate`
computes it with the numba kernel.
"""

from __future__ import annotations

import numpy as np
import torch

# Values per float64 temporary (about 256 MB) when sizing batches of pairs or items.
CHUNK_VALUES = 32_000_000


def _dev(device) -> torch.device:
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r}, but torch finds no CUDA device; use device='cpu' or None")
    return dev


def _t(x: np.ndarray, device) -> torch.Tensor:
    """float64 tensor on ``device`` (inputs are float32 by the data contract: exact)."""
    return torch.as_tensor(np.asarray(x), dtype=torch.float64, device=_dev(device))


# ---------------------------------------------------------------------------- FRCorr
def _ccc_from_moments(mx, my, sx, sy, cov):
    """CCC from means, population σ and covariance (official: Pearson NaN -> 0, clipped)."""
    r = torch.nan_to_num(cov / (sx * sy)).clamp(-1.0, 1.0)
    return 2 * r * sx * sy / (sx**2 + sy**2 + (mx - my) ** 2 + 1e-8)


def frcorr_table(pred: np.ndarray, listener: np.ndarray, A: np.ndarray, device=None) -> np.ndarray:
    """(N, K) table of ``max_{j∈app(n)} CCC_D(L_j, pred[n,k])`` (inputs checked by the caller).

    Args:
        pred: (N, K, T, D); listener: (N, T, D); A: (N, N) bool appropriateness.
    """
    N, K, T, D = pred.shape
    L = _t(listener, device)  # (N, T, D)
    mL, sL = L.mean(1), L.std(1, correction=0)  # (N, D)
    Lc = (L - mL[:, None]).permute(2, 1, 0)  # (D, T, N) centred
    mask = torch.as_tensor(A, device=L.device)  # (N, N) bool
    out = torch.empty(N, K, dtype=torch.float64, device=L.device)
    size = max(1, CHUNK_VALUES // (K * N * D + K * T * D))
    for a in range(0, N, size):
        b = min(N, a + size)
        x = _t(pred[a:b], device)  # (n, K, T, D)
        mx, sx = x.mean(2), x.std(2, correction=0)  # (n, K, D)
        xc = (x - mx[:, :, None]).permute(3, 0, 1, 2).reshape(D, -1, T)  # (D, n*K, T)
        cov = torch.bmm(xc, Lc).reshape(D, b - a, K, N).permute(1, 2, 3, 0) / T  # (n, K, N, D)
        c = _ccc_from_moments(mx[:, :, None], mL[None, None], sx[:, :, None], sL[None, None], cov)
        score = c.mean(-1).masked_fill(~mask[a:b, None, :], -torch.inf)  # (n, K, N)
        out[a:b] = score.amax(-1)
    return out.cpu().numpy()


# ------------------------------------------------------------------------------- DTW
def pair_costs(x: torch.Tensor, y: torch.Tensor, bounds) -> torch.Tensor:
    """Cell costs of every pair against y reversed in time: (B, G, n, m).

    ``out[b, g, i, r] = d_g(i, m − 1 − r) = Σ_{k∈g} (x[b, i, k] − y[b, m − 1 − r, k])²``, summed
    in k order with exact differences (no ‖a‖² + ‖b‖² − 2ab: a prediction equal to a
    listener must give exactly 0). With y reversed, the anti-diagonal ``i + j = s`` of the
    DTW table is the ordinary diagonal ``r − i = m − 1 − s`` (a strided view)."""
    B, n, D = x.shape
    m = y.shape[1]
    G = len(bounds) - 1
    yr = y.flip(1)  # (B, m, D)
    out = torch.zeros(B, G, n, m, dtype=x.dtype, device=x.device)
    e = torch.empty(B, n, m, dtype=x.dtype, device=x.device)
    for g in range(G):
        for k in range(int(bounds[g]), int(bounds[g + 1])):
            torch.sub(x[:, :, None, k], yr[:, None, :, k], out=e)  # (B, n, m)
            out[:, g].addcmul_(e, e)
    return out


def dtw_wavefront(x: torch.Tensor, y: torch.Tensor, bounds, weights) -> torch.Tensor:
    """``Σ_g w_g DTW(x[b, :, g], y[b, :, g])`` for every pair b, by anti-diagonals.

    Args:
        x: (B, n, D) and y: (B, m, D) float64 tensors on one device.
        bounds: group g is dims ``bounds[g]:bounds[g + 1]``; weights: (G,) floats.

    Returns:
        (B,) float64 tensor. Diagonal s holds ``C[i, s − i]`` at index i + 1 of a (B, G, n + 1)
        buffer whose index 0 (row −1) and out-of-table cells are +inf.
    """
    B, n, _ = x.shape
    m = y.shape[1]
    G = len(weights)
    cost = pair_costs(x, y, bounds)  # (B, G, n, m), y reversed
    inf = torch.full((B, G, n + 1), torch.inf, dtype=x.dtype, device=x.device)
    prev2 = inf.clone()  # diagonal s − 2
    prev2[:, :, 0] = 0.0  # C[−1, −1] = 0
    prev1 = inf.clone()  # diagonal s − 1 (diagonal −1: all outside the table)
    for s in range(n + m - 1):
        lo, hi = max(0, s - m + 1), min(s, n - 1) + 1  # rows i of the diagonal
        d = torch.diagonal(cost, m - 1 - s, 2, 3)  # (B, G, hi − lo): d(i, s − i), lo <= i < hi
        # C[i−1, j] = prev1[i], C[i, j−1] = prev1[i + 1], C[i−1, j−1] = prev2[i]
        best = torch.minimum(torch.minimum(prev1[:, :, lo:hi], prev1[:, :, lo + 1 : hi + 1]), prev2[:, :, lo:hi])
        cur = torch.full_like(inf, torch.inf)
        torch.add(d, best, out=cur[:, :, lo + 1 : hi + 1])
        prev2, prev1 = prev1, cur
    final = prev1[:, :, n]  # C[n − 1, m − 1]: (B, G)
    total = torch.zeros(B, dtype=x.dtype, device=x.device)
    for g in range(G):  # in group order, as the numba kernel
        total = total + float(weights[g]) * torch.sqrt(final[:, g])
    return total


def _pairs_per_batch(device: torch.device, G: int, T: int) -> int:
    """Pairs per wavefront: the (B, G, T, T) cost tensor takes a quarter of the free GPU
    memory, or :data:`CHUNK_VALUES` values on the CPU."""
    values = CHUNK_VALUES
    if device.type == "cuda":
        values = torch.cuda.mem_get_info(device)[0] // 4 // 8
    return max(1, values // (G * T * T + 2 * T * T))


def frdist_table(
    pred: np.ndarray, listener: np.ndarray, A: np.ndarray, bounds, weights, device=None, batch: int | None = None
) -> np.ndarray:
    """(N, K) table of ``min_{j∈app(n)} Σ_g w_g DTW(pred[n,k,:,g], L_j[:,g])``, every
    (prediction, candidate) pair by :func:`dtw_wavefront` (inputs checked by the caller).

    Args:
        pred: (n, K, T, D); listener: (N, T, D); A: (n, N) bool (rows: items, columns:
            listeners; square for a test set); bounds, weights: the groups.
        batch: pairs per wavefront (default :func:`_pairs_per_batch`).
    """
    N, K, T, D = pred.shape
    P = _t(pred, device).reshape(N * K, T, D)  # (N*K, T, D)
    L = _t(listener, device)  # (N', T, D)
    item, cand = np.nonzero(A)  # candidate pairs (n, j)
    task = (item[:, None] * K + np.arange(K)).ravel()  # (pairs,) index of pred[n, k]
    other = np.repeat(cand, K)  # (pairs,) listener j
    batch = batch or _pairs_per_batch(P.device, len(weights), T)
    values = torch.empty(task.size, dtype=torch.float64, device=P.device)
    for a in range(0, task.size, batch):
        ti = torch.as_tensor(task[a : a + batch], device=P.device)
        oi = torch.as_tensor(other[a : a + batch], device=P.device)
        values[a : a + batch] = dtw_wavefront(P[ti], L[oi], bounds, weights)
    best = torch.full((N * K,), torch.inf, dtype=torch.float64, device=P.device)
    best = best.scatter_reduce(0, torch.as_tensor(task, device=P.device), values, "amin")
    return best.reshape(N, K).cpu().numpy()


# -------------------------------------------------------------------------- diversity
def _item_slices(N: int, per_item: int):
    size = max(1, CHUNK_VALUES // per_item)
    return (slice(a, min(N, a + size)) for a in range(0, N, size))


def frdiv_items(pred: np.ndarray, device=None) -> np.ndarray:
    """(N,) FRDiv terms ``2K Σ_k ‖a_k − ā‖² / (K(K−1)·T·D)`` with a_k = pred[n,k] − pred[n,0]."""
    N, K, T, D = pred.shape
    if K == 1:
        return np.zeros(N)
    out = np.empty(N)
    for s in _item_slices(N, K * T * D):
        b = _t(pred[s], device)
        b = b - b[:, :1]  # (n, K, T, D)
        out[s] = (2 * K * ((b - b.mean(1, keepdim=True)) ** 2).sum((1, 2, 3))).cpu().numpy()
    return out / (K * (K - 1) * T * D)


def frvar(pred: np.ndarray, device=None) -> float:
    """FRVar: mean over (n, k, d) of the unbiased variance over time."""
    N, K, T, D = pred.shape
    if T < 2:
        raise ValueError(f"FRVar needs T >= 2 frames, got {T}")
    total = 0.0
    for s in _item_slices(N, K * T * D):
        b = _t(pred[s], device)
        b = b - b[:, :, :1]  # (n, K, T, D), shifted by the first frame
        total += float(b.var(2, correction=1).sum())
    return total / (N * K * D)


def frdvs(pred: np.ndarray, device=None) -> float:
    """FRDvs: ``Σ_k Σ_{n,m} ‖pred[n,k] − pred[m,k]‖² / (N(N−1)·K·T·D)`` = ``2N Σ ‖a − ā‖² / …``."""
    N, K, T, D = pred.shape
    if N == 1:
        return 0.0
    ref = _t(pred[0], device)  # (K, T, D) shift: constant -> exactly 0
    mean = torch.zeros_like(ref)
    for s in _item_slices(N, K * T * D):
        mean += (_t(pred[s], device) - ref).sum(0)
    mean /= N
    total = 0.0
    for s in _item_slices(N, K * T * D):
        total += float((((_t(pred[s], device) - ref) - mean) ** 2).sum())
    return float(2 * N * total / (N * (N - 1) * K * T * D))
