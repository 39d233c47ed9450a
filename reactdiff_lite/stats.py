"""Uncertainty for REACT results: a cluster bootstrap over appropriate sets, seeds, paired differences.

A REACT metric such as FRCorr or FRDist is a mean over the N test items of a per-item
score s_n (``metrics.item_scores``). Items are not independent: the items of one
appropriate set (here, the sessions of one script) share their speaker stimulus and are
each other's references. So we resample **clusters**, the connected components of the
neighbour matrix A, not items (on real REACT data, which has no script labels, the
components of A play the same role)::

    clusters c = 1..C,   S_c = Σ_{n∈c} s_n,   N_c = |c|
    one resample: draw C clusters with replacement, c*_1..c*_C;   θ* = Σ_i S_{c*_i} / Σ_i N_{c*_i}
    95 % CI = the 2.5 and 97.5 percentiles of θ* over B = 10 000 resamples (percentile method)

With several training seeds, each item's score is first averaged over the seeds
(s_n = mean_r s_{r,n}), then bootstrapped; the spread due to training is reported
separately as the standard deviation of the per-seed metric. A one-seed interval is
therefore *conditional on that seed* (it says how much the test set moves the number,
not how much retraining would). A comparison A vs B uses the item-by-item difference
d_n = s^A_n − s^B_n with the same resampled clusters for both (a paired bootstrap).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

RESAMPLES = 10_000
LEVEL = 0.95


def clusters(neighbours: np.ndarray) -> np.ndarray:
    """(N,) component label of each item in the graph of the (N, N) neighbour matrix (0..C-1)."""
    A = np.asarray(neighbours) != 0
    A = A | A.T
    labels = np.full(A.shape[0], -1)
    for start in range(A.shape[0]):
        if labels[start] >= 0:
            continue
        label, frontier = labels.max() + 1, [start]
        labels[start] = label
        while frontier:
            reached = np.flatnonzero(A[frontier].any(0) & (labels < 0))
            labels[reached] = label
            frontier = list(reached)
    return labels


@dataclass
class Estimate:
    """A metric with its interval: ``mean`` over items (and seeds), ``ci`` = (lo, hi)."""

    mean: float
    ci: tuple[float, float]
    seeds: int  # training seeds averaged per item
    seed_std: float | None  # std over seeds of the per-seed metric (None for one seed)
    clusters: int  # resampled units
    resamples: int

    @property
    def excludes_zero(self) -> bool:
        return self.ci[0] > 0 or self.ci[1] < 0

    def to_dict(self) -> dict:
        return {**asdict(self), "ci": list(self.ci)}


def _by_seed(scores: np.ndarray) -> np.ndarray:
    """(N,) or (R, N) -> (R, N) float64."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim not in (1, 2):
        raise ValueError(f"scores must be (N,) or (seeds, N), got shape {s.shape}")
    return s[None] if s.ndim == 1 else s


def _resampled_means(
    values: np.ndarray, labels: np.ndarray, resamples: int, seed: int, weights: np.ndarray | None = None
) -> np.ndarray:
    """(B,) cluster-bootstrap (weighted) means of the (N,) ``values``.

    The draws depend only on ``seed``, ``resamples`` and the number of clusters, so two
    calls with the same seed resample the same clusters (what a difference needs). Items
    of weight 0 (whose value may be NaN) count for nothing."""
    _, labels = np.unique(labels, return_inverse=True)
    C = labels.max() + 1
    w = np.ones(len(values)) if weights is None else np.asarray(weights, dtype=np.float64)
    sums = np.bincount(labels, np.where(w > 0, values, 0.0) * w, C)  # (C,)
    sizes = np.bincount(labels, w, C)  # (C,)
    draws = np.random.default_rng(seed).integers(0, C, size=(resamples, C))  # (B, C) cluster indices
    with np.errstate(invalid="ignore", divide="ignore"):  # a resample may hold no weight at all
        return sums[draws].sum(1) / sizes[draws].sum(1)


def _estimate(means: np.ndarray, value: float, level: float, labels: np.ndarray, seeds: np.ndarray) -> Estimate:
    """The percentile interval of the resampled ``means`` around ``value``; ``seeds``: (R,) per-seed values."""
    alpha = (1 - level) / 2
    lo, hi = np.nanquantile(means, [alpha, 1 - alpha])
    seed_std = float(np.std(seeds, ddof=1)) if len(seeds) > 1 else None
    return Estimate(float(value), (float(lo), float(hi)), len(seeds), seed_std, int(np.unique(labels).size), len(means))


def bootstrap(
    scores: np.ndarray, labels: np.ndarray, *, resamples: int = RESAMPLES, level: float = LEVEL, seed: int = 0
) -> Estimate:
    """Mean and percentile CI of per-item scores under a cluster bootstrap.

    Args:
        scores: (N,) per-item scores of one run, or (R, N) of R training seeds (averaged per
            item before resampling; their spread is ``Estimate.seed_std``).
        labels: (N,) cluster of each item (:func:`clusters` of the neighbour matrix).
        resamples: B. level: coverage of the interval. seed: the resampling generator's seed.
    """
    s = _by_seed(scores)
    if s.shape[1] != len(labels):
        raise ValueError(f"{s.shape[1]} item scores but {len(labels)} cluster labels")
    values = s.mean(0)  # (N,) averaged over seeds
    means = _resampled_means(values, labels, resamples, seed)
    return _estimate(means, values.mean(), level, labels, s.mean(1))


def _pooled(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(R, N) values, (N,) weights -> (R,) weighted means (weight-0 items ignored)."""
    return (np.where(weights > 0, values, 0.0) * weights).sum(-1) / weights.sum()


def weighted_difference(
    a: np.ndarray,
    weights_a: np.ndarray,
    b: np.ndarray,
    weights_b: np.ndarray,
    labels: np.ndarray,
    *,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    seed: int = 0,
) -> Estimate:
    """``Σ w_a a / Σ w_a − Σ w_b b / Σ w_b`` over items, both means resampled with the same clusters.

    For pooled statistics such as the cue response (the mean over all question ends minus
    the mean over all statement ends): ``a`` holds each item's mean over its question ends
    and ``weights_a`` their number (0 where it has none; its ``a`` may then be NaN). ``a``
    and ``b`` may be (R, N) over R seeds (averaged per item first, as in :func:`bootstrap`).
    """
    a, b = _by_seed(a), _by_seed(b)
    wa, wb = np.asarray(weights_a, dtype=np.float64), np.asarray(weights_b, dtype=np.float64)
    means = _resampled_means(a.mean(0), labels, resamples, seed, wa) - _resampled_means(
        b.mean(0), labels, resamples, seed, wb
    )
    per_seed = _pooled(a, wa) - _pooled(b, wb)  # (R,)
    return _estimate(means, per_seed.mean(), level, labels, per_seed)


def paired(scores_a: np.ndarray, scores_b: np.ndarray, labels: np.ndarray, **options) -> Estimate:
    """A − B item by item (same items, same seeds count or one each), cluster-bootstrapped."""
    a, b = _by_seed(scores_a), _by_seed(scores_b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"paired scores need the same items, got {a.shape[1]} and {b.shape[1]}")
    if len(a) != len(b):  # different seed counts: pair the seed means
        a, b = a.mean(0, keepdims=True), b.mean(0, keepdims=True)
    return bootstrap(a - b, labels, **options)
