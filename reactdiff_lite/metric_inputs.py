"""Input checks of the REACT metrics (:mod:`reactdiff_lite.metrics`): numpy or torch in,
numpy out; shapes, finiteness and the appropriateness matrix checked with messages that
name the argument and the problem.
"""

from __future__ import annotations

import numpy as np


def as_array(x, name: str = "array") -> np.ndarray:
    """numpy view/copy of a numpy array or a torch tensor on any device."""
    if hasattr(x, "detach"):  # torch.Tensor, CPU or GPU
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.number) and x.dtype != bool:
        raise TypeError(f"{name} has dtype {x.dtype}, expected numbers")
    return x


def _require_finite(x: np.ndarray, name: str) -> np.ndarray:
    """``x`` unchanged, or a ValueError counting its NaN/inf values and naming the first."""
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        bad = np.argwhere(~np.isfinite(x))[0]
        raise ValueError(
            f"{name} has {int((~np.isfinite(x)).sum())} NaN/inf values (first at index {tuple(int(i) for i in bad)})"
        )
    return x


def checked_pred(pred, name: str = "pred") -> np.ndarray:
    """Predictions as a finite, non-empty (N, K, T, D) array."""
    p = as_array(pred, name)
    if p.ndim != 4:
        raise ValueError(f"{name} must have shape (N, K, T, D), got {p.shape}")
    if min(p.shape) == 0:
        raise ValueError(f"{name} is empty: shape {p.shape}")
    return _require_finite(p, name)


def checked_people(x, name: str, pred: np.ndarray) -> np.ndarray:
    """Listeners or speakers as a finite (N, T, D) array matching ``pred``."""
    a = as_array(x, name)
    N, _, T, D = pred.shape
    if a.shape != (N, T, D):
        raise ValueError(f"{name} must have shape (N, T, D) = {(N, T, D)} to match pred {pred.shape}, got {a.shape}")
    return _require_finite(a, name)


def checked_neighbours(neighbours, N: int) -> np.ndarray:
    """The (N, N) 0/1 appropriateness matrix as bool, every item with at least one reaction."""
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


def sequence_lengths(x: np.ndarray, name: str) -> np.ndarray:
    """Frames before the trailing all-NaN padding (tslearn's ``remove_nans``); any other
    NaN or inf is an error."""
    nan = np.isnan(x)
    frame_all = nan.all(-1)  # (..., T)
    T = x.shape[-2]
    # length = index after the last frame that is not all-NaN
    has = ~frame_all
    length = np.where(has.any(-1), T - np.argmax(has[..., ::-1], -1), 0)
    inside = np.arange(T) < length[..., None]
    if (nan & inside[..., None]).any() or np.isinf(x).any():
        raise ValueError(
            f"{name} has NaN/inf inside a sequence; only trailing all-NaN frames "
            f"(padding of a shorter sequence) are allowed"
        )
    if (length == 0).any():
        raise ValueError(f"{name} holds a sequence of length 0 (empty or all NaN)")
    return length.astype(np.int64)
