"""REACT metrics: DTW against tslearn, hand-computed cases, sanity values, invariances,
and agreement with an independent implementation of the official definitions
(``tests/react_reference.py``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import react_reference as official
import torch
from tslearn.metrics import dtw as tslearn_dtw

from reactdiff_lite import kernels, metrics
from reactdiff_lite.metrics import (
    REACT_GROUPS,
    ccc,
    dtw,
    evaluate,
    frcorr,
    frdist,
    frdist_table,
    frdiv,
    frdvs,
    frsyn,
    frvar,
)
from reactdiff_lite.realism import frechet_distance, realism_proxy
from reactdiff_lite.schema import AU_NAMES, EMOTION_DIM, FE_NAMES, TDMM_DIM, VA_NAMES


def smooth(rng, shape, width=6.0):
    """Smooth random signals along axis -2 (moving average of white noise)."""
    x = rng.normal(size=shape)
    k = np.ones(int(width)) / width
    return np.apply_along_axis(lambda v: np.convolve(v, k, "same"), -2, x)


def react_like(rng, n, T):
    """(n, T, 25) float32: binary AUs, VA in [-1, 1], FE in [0, 1]."""
    au = (smooth(rng, (n, T, len(AU_NAMES))) > 0.3).astype(np.float32)
    va = np.tanh(smooth(rng, (n, T, len(VA_NAMES))))
    fe = 1 / (1 + np.exp(-smooth(rng, (n, T, len(FE_NAMES)))))
    return np.concatenate([au, va, fe], -1).astype(np.float32)


@pytest.fixture(scope="module")
def world():
    """Small random inputs with constant channels in every role."""
    rng = np.random.default_rng(0)
    N, K, T = 5, 3, 90
    pred = rng.random((N, K, T, EMOTION_DIM)).astype(np.float32)
    L, S = react_like(rng, N, T), react_like(rng, N, T)
    pred[1, :, :, 3] = 0.5  # constant prediction channel
    L[2, :, 4] = 1.0  # constant listener channel
    S[3, :, 5] = 0.2  # constant speaker channel: FRSyn offset 49
    pred[0, 0, 20:, 7] = 0.1  # constant after frame 20: NaN from lag +20 on
    A = (rng.random((N, N)) < 0.4).astype(np.int64)
    np.fill_diagonal(A, 1)
    return pred, L, S, A


# ------------------------------------------------------------------------------- DTW
def test_dtw_hand_computed():
    # cost table of x=[1,2,3], y=[3,4,-3]: rows (4,13,29), (5,8,33), (5,6,42) -> sqrt(42)
    assert dtw(np.array([1.0, 2, 3]), np.array([3.0, 4, -3])) == pytest.approx(math.sqrt(42), rel=1e-15)
    # x=[0,1,2], y=[0,2]: 0 -> 0, 1 -> 0 or 2 (cost 1), 2 -> 2: sqrt(1)
    assert dtw(np.array([0.0, 1, 2]), np.array([0.0, 2])) == pytest.approx(1.0, rel=1e-15)
    assert dtw(np.array([[0.0, 0]]), np.array([[3.0, 4]])) == pytest.approx(5.0)  # one cell: ‖(3,4)‖
    assert dtw(np.zeros((4, 3)), np.zeros((7, 3))) == 0.0


@pytest.mark.parametrize(
    "n,m,D", [(1, 1, 1), (1, 6, 3), (5, 1, 2), (2, 3, EMOTION_DIM), (7, 7, 4), (13, 9, EMOTION_DIM), (40, 33, TDMM_DIM)]
)
def test_dtw_matches_tslearn(n, m, D):
    rng = np.random.default_rng(n * 100 + m + D)
    x, y = rng.normal(size=(3, n, D)), rng.normal(size=(3, m, D))
    x[0, :, 0] = 1.5  # a constant channel
    ours = dtw(x, y)
    ref = np.array([tslearn_dtw(a, b) for a, b in zip(x, y, strict=True)])
    np.testing.assert_allclose(ours, ref, rtol=1e-12)


def test_dtw_batch_broadcast_and_torch():
    rng = np.random.default_rng(1)
    x, y = rng.random((4, 1, 12, 3)), rng.random((5, 10, 3))
    ours = dtw(torch.from_numpy(x), y)  # torch input; (4, 1) x (5,) -> (4, 5)
    assert ours.shape == (4, 5)
    ref = np.array([[tslearn_dtw(x[i, 0], y[j]) for j in range(5)] for i in range(4)])
    np.testing.assert_allclose(ours, ref, rtol=1e-12)


def test_dtw_groups_match_weighted_tslearn():
    rng = np.random.default_rng(2)
    x, y = rng.random((17, EMOTION_DIM)), rng.random((11, EMOTION_DIM))
    ref = sum(w * tslearn_dtw(x[:, s:e], y[:, s:e]) for s, e, w in REACT_GROUPS)
    assert dtw(x, y, groups=REACT_GROUPS) == pytest.approx(ref, rel=1e-12)


def test_dtw_nan_padding_is_trailing_only():
    """Like tslearn, trailing all-NaN frames are dropped (NaN-padded batches of unequal
    lengths); NaN anywhere else is an error, not a silent number."""
    rng = np.random.default_rng(3)
    x, y = rng.random((2, 10, 3)), rng.random((2, 8, 3))
    x[1, 6:] = np.nan
    y[0, 5:] = np.nan
    ours = dtw(x, y)
    assert ours[0] == pytest.approx(tslearn_dtw(x[0], y[0, :5]), rel=1e-12)
    assert ours[1] == pytest.approx(tslearn_dtw(x[1, :6], y[1]), rel=1e-12)
    assert ours[1] == pytest.approx(tslearn_dtw(x[1], y[1]), rel=1e-12)  # tslearn agrees
    bad = x.copy()
    bad[0, 2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN/inf inside"):
        dtw(bad, y)
    with pytest.raises(ValueError, match="length 0"):
        dtw(np.full((4, 3), np.nan), y[0])
    with pytest.raises(ValueError, match="feature size"):
        dtw(x, rng.random((2, 8, 4)))
    with pytest.raises(ValueError, match="weights must be >= 0"):
        dtw(x, y, groups=((0, 1, 1.0), (1, 3, -0.5)))


def test_frdist_t750_equals_tslearn():
    rng = np.random.default_rng(4)
    L = react_like(rng, 2, 750)
    pred = react_like(rng, 2, 750)[:, None]
    A = np.ones((2, 2), np.int64)
    table = frdist_table(pred, L, A)
    for n in range(2):
        ref = min(official.dtw_official(pred[n, 0], L[j]) for j in range(2))
        assert table[n, 0] == pytest.approx(ref, rel=1e-9)


def noisy_copy(rng, y, sigma, shift=0):
    """A model-like prediction: y shifted in time plus Gaussian noise."""
    return np.roll(y, shift, axis=0) + sigma * rng.normal(size=y.shape)


@pytest.mark.parametrize("kind", ["unrelated", "model"])
@pytest.mark.parametrize(
    "n,m,groups",
    [
        (750, 750, None),  # the REACT groups at full length
        (61, 40, None),  # odd n, n != m
        (3, 17, None),
        (1, 5, None),
        (30, 1, None),
        (45, 52, ((0, 3, 0.5), (3, 25, 2.0))),  # two groups
        (20, 24, ((0, 5, 0.0), (5, 25, 1.0))),  # a group of weight 0
        (37, 37, ((0, 25, 1.0),)),  # one group
    ],
)
def test_pruned_dtw_is_exact_within_the_bound(kind, n, m, groups):
    """dtw_groups_pruned (banded tables, groups one after the other) returns the full
    table's value bit for bit whenever the bound admits it (with FRDist's margin), and never
    a value within a bound that the true value exceeds: its pruning rules are exact."""
    rng = np.random.default_rng(n * 1000 + m)
    y = react_like(rng, 1, max(m, 8))[0, :m].astype(np.float64)  # (smoothing needs >= 6 frames)
    if kind == "model":
        x = noisy_copy(rng, np.resize(y, (n, EMOTION_DIM)), 0.05, shift=int(rng.integers(-3, 4)))
    else:
        x = rng.random((n, EMOTION_DIM))
    bounds, weights = metrics._group_bounds(groups, EMOTION_DIM)
    yt = np.ascontiguousarray(y.T)
    order = kernels._group_order(bounds, weights)
    full = kernels.dtw_groups(x, yt, n, m, bounds, weights)
    ref = sum(w * tslearn_dtw(x[:, s:e], y[:, s:e]) for s, e, w in (groups or REACT_GROUPS))
    assert full == pytest.approx(ref, rel=1e-12)
    for factor in [np.inf, 2.0, 1.01, 1 + kernels.PRUNE_MARGIN, 1 - 1e-6, 0.99, 0.8, 0.3]:
        bound = full * factor
        value, share = kernels.dtw_groups_pruned(x, yt, n, m, bounds, weights, order, bound)
        assert 0.0 < share <= 1.0
        if factor > 1:
            assert value == full  # bit for bit
        else:
            assert value > bound  # abandoned (inf) or above the bound, never a wrong value within it
        if value <= bound:
            assert value == full


def test_pruned_dtw_drops_cells_of_model_like_predictions():
    """The bands do drop cells: a noisy copy of the listener, bounded by its lock-step
    cost (FRDist's first bound), needs well under half of its tables."""
    rng = np.random.default_rng(11)
    y = react_like(rng, 1, 300)[0].astype(np.float64)
    x = noisy_copy(rng, y, 0.05)
    bounds, weights = metrics._group_bounds(None, EMOTION_DIM)
    lockstep = sum(w * np.sqrt(((x[:, s:e] - y[:, s:e]) ** 2).sum()) for s, e, w in REACT_GROUPS)
    yt = np.ascontiguousarray(y.T)
    value, share = kernels.dtw_groups_pruned(
        x, yt, 300, 300, bounds, weights, kernels._group_order(bounds, weights), lockstep * 1.000001
    )
    assert value == kernels.dtw_groups(x, yt, 300, 300, bounds, weights)
    assert share < 0.5
    assert list(kernels._group_order(bounds, weights)) == [1, 2, 0]  # VA, FE, AU


def test_frdist_t750_model_like_equals_tslearn():
    """Model-like predictions (a listener plus noise of σ 0.05, issue 13's bar) at T = 750:
    exact to tslearn, pruned == unpruned bit for bit."""
    rng = np.random.default_rng(12)
    L = react_like(rng, 3, 750)
    pred = np.stack([[noisy_copy(rng, L[(n + k) % 3], 0.05) for k in range(2)] for n in range(3)]).astype(np.float32)
    A = np.ones((3, 3), np.int64)
    table = frdist_table(pred, L, A)
    np.testing.assert_array_equal(table, frdist_table(pred, L, A, prune=False))
    for n in range(2):
        for k in range(2):
            ref = min(official.dtw_official(pred[n, k], L[j]) for j in range(3))
            assert table[n, k] == pytest.approx(ref, rel=1e-12)


@pytest.mark.parametrize("kind", ["near", "unrelated", "mixed"])
def test_pruning_never_changes_a_value(kind):
    rng = np.random.default_rng(5)
    N, K, T = 8, 3, 120
    L = react_like(rng, N, T)
    A = (rng.random((N, N)) < 0.6).astype(np.int64)
    np.fill_diagonal(A, 1)
    if kind == "near":  # each prediction a noisy copy of one appropriate listener
        pred = np.stack(
            [
                np.stack(
                    [L[rng.choice(np.flatnonzero(A[n]))] + 0.1 * rng.normal(size=(T, EMOTION_DIM)) for _ in range(K)]
                )
                for n in range(N)
            ]
        ).astype(np.float32)
    else:
        pred = react_like(rng, N * K, T).reshape(N, K, T, EMOTION_DIM)
    if kind == "mixed":  # first prediction unrelated (the item's later first candidates take the fused sweep)
        pred[:, 1:] = L[np.argmax(A, 1)][:, None] + 0.05 * rng.normal(size=(N, K - 1, T, EMOTION_DIM))
    pruned, full = frdist_table(pred, L, A), frdist_table(pred, L, A, prune=False)
    np.testing.assert_array_equal(pruned, full)
    np.testing.assert_array_equal(frdist_table(pred, L, A, threads=1), frdist_table(pred, L, A, threads=3))
    ref = [
        [min(official.dtw_official(pred[n, k], L[j]) for j in np.flatnonzero(A[n])) for k in range(K)] for n in range(2)
    ]
    np.testing.assert_allclose(full[:2], ref, rtol=1e-9)


# ------------------------------------------------------------------------------- CCC
def test_ccc_hand_computed():
    x = np.array([[1.0], [2], [3], [4]])
    # μ 2.5 vs 5, σ² 1.25 vs 5, r = 1: 2·√1.25·√5 / (1.25 + 5 + 6.25 + 1e-8) = 5 / 12.5
    assert ccc(x, 2 * x)[0] == pytest.approx(5 / (12.5 + 1e-8), rel=1e-14)
    assert ccc(x, x)[0] == pytest.approx(2.5 / (2.5 + 1e-8), rel=1e-14)
    assert ccc(x, -x + 5)[0] == pytest.approx(-2.5 / (2.5 + 1e-8), rel=1e-14)
    assert ccc(x, np.full_like(x, 3.0))[0] == 0.0  # constant channel: r NaN -> 0


# -------------------------------------------------------------- agreement with the reference
def test_evaluate_matches_independent_official_implementation(world):
    pred, L, S, A = world
    ours, ref = evaluate(pred, L, S, A), official.evaluate(pred, L, S, A)
    assert set(ours) == set(metrics.METRICS)
    for key in metrics.METRICS:
        assert ours[key] == pytest.approx(ref[key], rel=1e-4, abs=1e-12), key


def test_frsyn_all_predictions_matches_reference(world):
    pred, L, S, A = world
    assert frsyn(pred, S, all_predictions=True) == pytest.approx(
        official.frsyn(pred, S, all_predictions=True), rel=1e-12
    )
    assert frsyn(pred, S, all_predictions=True) != frsyn(pred, S)


def test_frsyn_nan_quirks():
    """A constant speaker channel makes every lag NaN: argmax 0, offset 49. A channel that
    is constant after frame 20 makes lag +20 the first NaN, which torch.argmax picks."""
    rng = np.random.default_rng(6)
    T = 100
    x, s = rng.random((1, 1, T, 3)), rng.random((1, T, 3))
    s_const = s.copy()
    s_const[0, :, 1] = 0.3
    assert frsyn(x, s_const) == 49.0 == official.frsyn(x, s_const)
    x_tail = x.copy()
    x_tail[0, 0, 20:, 2] = 0.7
    assert frsyn(x_tail, s) == 20.0 == official.frsyn(x_tail, s)
    assert frsyn(s[:, None], s) == 0.0  # the mime: peak at lag 0
    assert frsyn(s_const[:, None], s_const) == 49.0  # ... unless a channel is constant
    assert frsyn(s_const[:, None], s_const, ignore_constant=True) == 0.0
    assert frsyn(x_tail, s, ignore_constant=True) == official_offset_without(x_tail[0, 0], s[0], drop=2)


def official_offset_without(x, s, drop):
    """The reference TLCC on the channels other than ``drop``, for lags where ``drop`` is
    constant; equal to the full reference where it varies (here: lag < 20)."""
    rs = []
    for lag in range(-49, 50):
        a, b = official._shift(x, s, lag)
        keep = [d for d in range(x.shape[1]) if not (d == drop and np.ptp(a[:, d]) == 0)]
        rs.append(np.mean([np.float32(np.corrcoef(a[:, d], b[:, d])[0, 1]) for d in keep]))
    return abs(49 - int(np.argmax(np.float32(rs))))


# ----------------------------------------------------------------- sanity values, invariances
def test_uniform_random_sanity_values():
    rng = np.random.default_rng(7)
    pred = rng.random((40, 10, 100, EMOTION_DIM)).astype(np.float32)
    assert frdiv(pred) == pytest.approx(1 / 6, rel=0.01)
    assert frdvs(pred) == pytest.approx(1 / 6, rel=0.01)
    assert frvar(pred) == pytest.approx(1 / 12, rel=0.01)


def test_constant_predictor():
    rng = np.random.default_rng(8)
    N, T = 6, 80
    L, S = react_like(rng, N, T), react_like(rng, N, T)
    pred = np.full((N, 10, T, EMOTION_DIM), 0.37, np.float32)
    out = evaluate(pred, L, S, np.eye(N))
    assert out["FRVar"] == out["FRDiv"] == out["FRDvs"] == out["FRCorr"] == 0.0
    assert out["FRSyn"] == 49.0


def test_diversity_invariances():
    rng = np.random.default_rng(9)
    one = rng.random((4, 1, 30, EMOTION_DIM))
    assert frdiv(np.repeat(one, 5, axis=1)) == 0.0  # K identical predictions
    assert frdvs(np.repeat(one[:1], 4, axis=0)) == 0.0  # the same for every item
    assert frdiv(one) == 0.0  # K = 1, as officially


def test_permuting_items_consistently_changes_nothing(world):
    pred, L, S, A = world
    perm = np.random.default_rng(10).permutation(len(L))
    a = evaluate(pred, L, S, A)
    b = evaluate(pred[perm], L[perm], S[perm], A[np.ix_(perm, perm)])
    for key in a:
        assert b[key] == pytest.approx(a[key], rel=1e-12), key


def test_reduce_mean_divides_by_k(world):
    pred, L, S, A = world
    K = pred.shape[1]
    assert frcorr(pred, L, A, reduce="mean") == pytest.approx(frcorr(pred, L, A) / K, rel=1e-12)
    assert frdist(pred, L, A, reduce="mean") == pytest.approx(frdist(pred, L, A) / K, rel=1e-12)
    with pytest.raises(ValueError, match="reduce"):
        frcorr(pred, L, A, reduce="max")


def test_3dmm_space_is_plain_dtw_over_all_dims():
    rng = np.random.default_rng(11)
    pred, L = (
        rng.normal(size=(3, 2, 20, TDMM_DIM)).astype(np.float32),
        rng.normal(size=(3, 20, TDMM_DIM)).astype(np.float32),
    )
    A = np.ones((3, 3), np.int64)
    ref = np.mean([sum(min(tslearn_dtw(pred[n, k], L[j]) for j in range(3)) for k in range(2)) for n in range(3)])
    assert frdist(pred, L, A) == pytest.approx(ref, rel=1e-9)
    assert frcorr(pred, L, A) == pytest.approx(official.frcorr(pred, L, A), rel=1e-4)


def test_torch_inputs_give_the_same_numbers(world):
    pred, L, S, A = world
    a = evaluate(pred, L, S, A)
    b = evaluate(*(torch.from_numpy(np.asarray(v)) for v in (pred, L, S, A)))
    assert a == b


# ---------------------------------------------------------------------------- bad input
def test_clear_errors(world):
    pred, L, S, A = world
    with pytest.raises(ValueError, match=r"pred must have shape \(N, K, T, D\)"):
        evaluate(pred[0], L, S, A)
    with pytest.raises(ValueError, match="listener must have shape"):
        evaluate(pred, L[:, :50], S, A)
    nan = pred.copy()
    nan[1, 2, 3, 4] = np.nan
    with pytest.raises(ValueError, match=r"pred has 1 NaN/inf values \(first at index \(1, 2, 3, 4\)\)"):
        evaluate(nan, L, S, A)
    with pytest.raises(ValueError, match=r"neighbours must have shape \(N, N\) = \(5, 5\)"):
        evaluate(pred, L, S, A[:4, :4])
    with pytest.raises(ValueError, match="only 0/1"):
        evaluate(pred, L, S, A * 2)
    empty = A.copy()
    empty[3] = 0
    with pytest.raises(ValueError, match=r"item\(s\) \[3\] have no appropriate reaction"):
        frcorr(pred, L, empty)


# ----------------------------------------------------------------------------- realism
def test_frechet_distance_hand_computed():
    real, fake = np.array([[-1.0], [1.0]]), np.array([[-1.0], [3.0]])  # N(0, 1) vs N(1, 4)
    assert frechet_distance(real, fake) == pytest.approx(1 + 1 + 4 - 2 * 2, rel=1e-12)
    x = np.random.default_rng(12).normal(size=(200, 6))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)


def test_realism_proxy_ranks_gt_first(world):
    pred, L, S, A = world
    gt = np.repeat(L[:, None], 3, axis=1)
    assert realism_proxy(gt, L) == pytest.approx(0.0, abs=1e-6)
    assert realism_proxy(pred, L) > 0.1
