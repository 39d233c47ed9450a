"""Cluster bootstrap, seeds and paired differences (reactdiff_lite.stats)."""

import numpy as np
import pytest

from reactdiff_lite import stats


def blocks(*sizes: int) -> np.ndarray:
    """A neighbour matrix of disjoint appropriate sets of the given sizes."""
    N = sum(sizes)
    A = np.zeros((N, N), int)
    start = 0
    for size in sizes:
        A[start : start + size, start : start + size] = 1
        start += size
    return A


def test_clusters_are_the_connected_components():
    A = blocks(3, 2, 4)
    assert stats.clusters(A).tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 2]
    A[2, 3] = 1  # one directed link joins the first two sets
    assert stats.clusters(A).tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 1]
    assert stats.clusters(np.eye(4)).tolist() == [0, 1, 2, 3]


def test_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    labels = stats.clusters(blocks(*[4] * 30))
    hits = 0
    for trial in range(200):
        cluster_effect = rng.normal(size=30).repeat(4)  # items of one set are correlated
        scores = 1.0 + cluster_effect + 0.5 * rng.normal(size=120)
        est = stats.bootstrap(scores, labels, resamples=2000, seed=trial)
        hits += est.ci[0] <= 1.0 <= est.ci[1]
    assert 0.88 <= hits / 200 <= 0.99


def test_item_bootstrap_would_be_too_narrow_for_correlated_items():
    rng = np.random.default_rng(1)
    scores = rng.normal(size=25).repeat(8) + 0.1 * rng.normal(size=200)
    by_set = stats.bootstrap(scores, stats.clusters(blocks(*[8] * 25)))
    by_item = stats.bootstrap(scores, np.arange(200))
    assert by_set.ci[1] - by_set.ci[0] > 2 * (by_item.ci[1] - by_item.ci[0])


def test_seeds_are_averaged_per_item_and_their_spread_reported_apart():
    rng = np.random.default_rng(2)
    scores = rng.normal(size=(3, 12))
    est = stats.bootstrap(scores, stats.clusters(blocks(4, 4, 4)), seed=5)
    assert est.mean == pytest.approx(scores.mean()) and est.seeds == 3 and est.clusters == 3
    assert est.seed_std == pytest.approx(scores.mean(1).std(ddof=1))
    assert stats.bootstrap(scores[0], np.arange(12)).seed_std is None
    again = stats.bootstrap(scores, stats.clusters(blocks(4, 4, 4)), seed=5)
    assert again == est  # same resampling seed, same interval


def test_paired_difference_resamples_both_methods_together():
    rng = np.random.default_rng(3)
    labels = stats.clusters(blocks(*[5] * 10))
    b = rng.normal(size=50) * 3  # large item-to-item spread shared by both methods
    diff = stats.paired(b + 0.2, b, labels)
    assert diff.ci == pytest.approx((0.2, 0.2)) and diff.excludes_zero
    unpaired_width = np.subtract(*stats.bootstrap(b, labels).ci[::-1])
    assert diff.ci[1] - diff.ci[0] < 1e-9 < unpaired_width
    with pytest.raises(ValueError, match="same items"):
        stats.paired(b, b[:10], labels)
