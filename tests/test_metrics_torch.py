"""The torch engine of the metrics (``device=``, :mod:`reactdiff_lite.metrics_torch`)
against the numba/numpy path, on the CPU (the same code a GPU runs) and on CUDA.

Separate from ``test_metrics.py`` on purpose: no tslearn here, so that
``benchmarks/gpu_check.sh`` can run the CUDA-marked tests on a bare GPU machine."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reactdiff_lite import metrics
from reactdiff_lite.metrics import REACT_GROUPS, dtw, evaluate, frdist, frdist_table
from reactdiff_lite.schema import AU_NAMES, EMOTION_DIM

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def make_world(seed: int = 0, N: int = 5, K: int = 3, T: int = 90):
    """(pred, listener, speaker, A): random predictions with constant channels, REACT-like
    people (binary AUs), a random appropriateness matrix with the diagonal set."""
    rng = np.random.default_rng(seed)
    pred = rng.random((N, K, T, EMOTION_DIM)).astype(np.float32)
    L, S = rng.random((N, T, EMOTION_DIM)).astype(np.float32), rng.random((N, T, EMOTION_DIM)).astype(np.float32)
    L[..., : len(AU_NAMES)] = L[..., : len(AU_NAMES)] > 0.6  # binary AUs
    pred[1, :, :, 3] = 0.5  # constant prediction channel
    L[2, :, 4] = 1.0  # constant listener channel
    pred[0, 0, 20:, 7] = 0.1
    A = (rng.random((N, N)) < 0.4).astype(np.int64)
    np.fill_diagonal(A, 1)
    return pred, L, S, A


@pytest.fixture(scope="module")
def world():
    return make_world()


def check_engine(world, device) -> None:
    """All six metrics and the per-item terms equal the default path to 1e-9 relative."""
    pred, L, S, A = world
    ours, engine = evaluate(pred, L, S, A, per_item=True), evaluate(pred, L, S, A, per_item=True, device=device)
    for name in metrics.METRICS:
        assert engine[name] == pytest.approx(ours[name], rel=1e-9, abs=1e-12), name
    for name, values in ours["per_item"].items():
        np.testing.assert_allclose(engine["per_item"][name], values, rtol=1e-9, atol=1e-12, err_msg=name)
    table, visited = frdist_table(pred, L, A, device=device, return_visited=True)
    np.testing.assert_allclose(table, frdist_table(pred, L, A), rtol=1e-9)
    assert (visited == A.sum(1, keepdims=True)).all()  # every candidate computed


def check_wavefront(device) -> None:
    """Unequal lengths, the REACT groups and one plain group, several pairs in one wavefront."""
    from reactdiff_lite.metrics_torch import dtw_wavefront

    rng = np.random.default_rng(3)
    x, y = rng.random((6, 31, EMOTION_DIM)), rng.random((6, 44, EMOTION_DIM))
    for groups in (REACT_GROUPS, ((0, EMOTION_DIM, 1.0),)):
        bounds, weights = metrics._group_bounds(groups, EMOTION_DIM)
        got = dtw_wavefront(torch.tensor(x, device=device), torch.tensor(y, device=device), bounds, weights)
        np.testing.assert_allclose(got.cpu().numpy(), dtw(x, y, groups=groups), rtol=1e-12)


def check_model_like(world, device) -> None:
    """Predictions near a listener (near-ties in the minimum; a copy of a listener gives 0)."""
    pred, L, _, A = world
    noise = 0.05 * np.random.default_rng(1).normal(size=(len(L), 2) + L.shape[1:])
    close = (L[:, None] + noise).astype(np.float32)
    close[0, 0] = L[0]  # exactly a listener: FRDist term 0 both ways
    got = frdist_table(close, L, A, device=device)
    np.testing.assert_allclose(got, frdist_table(close, L, A), rtol=1e-9)
    assert got[0, 0] == 0.0


def test_torch_engine_on_cpu_matches_numba(world):
    """device="cpu": the torch code path (the one a GPU runs) equals the numba kernels."""
    check_engine(world, "cpu")
    check_wavefront("cpu")
    check_model_like(world, "cpu")
    pred, L, _, A = world
    plain = ((0, EMOTION_DIM, 1.0),)
    assert frdist(pred, L, A, device="cpu", groups=plain) == pytest.approx(frdist(pred, L, A, groups=plain), rel=1e-9)


def test_default_path_is_unchanged(world):
    """device=None keeps the numba/numpy path: the same values bit for bit."""
    pred, L, S, A = world
    assert evaluate(pred, L, S, A, device=None) == evaluate(pred, L, S, A)


def test_torch_engine_batches_and_torch_inputs(world):
    """Batches of one pair give the same table; torch tensors are accepted as inputs."""
    from reactdiff_lite.metrics_torch import frdist_table as engine_table

    pred, L, _, A = world
    bounds, weights = metrics._group_bounds(None, EMOTION_DIM)
    A = A.astype(bool)
    np.testing.assert_array_equal(
        engine_table(pred, L, A, bounds, weights, batch=1), engine_table(pred, L, A, bounds, weights)
    )
    got = metrics.frcorr(torch.from_numpy(pred), torch.from_numpy(L), torch.from_numpy(A), device="cpu")
    assert got == pytest.approx(metrics.frcorr(pred, L, A), rel=1e-9)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error(world):
    pred, L, _, A = world
    with pytest.raises(ValueError, match="no CUDA device"):
        frdist(pred, L, A, device="cuda")


@pytest.mark.gpu
@cuda
def test_torch_engine_on_cuda_matches_numba(world):
    check_engine(world, "cuda")
    check_wavefront("cuda")
    check_model_like(world, "cuda")
    pred, L, _, _ = make_world(seed=2, N=4, K=2, T=750)  # the bar's length, all neighbours
    A = np.ones((4, 4))
    np.testing.assert_allclose(frdist_table(pred, L, A, device="cuda"), frdist_table(pred, L, A), rtol=1e-9)
