"""Reference predictors for the REACT metrics (the challenge baselines, plus GT and the world's Oracle).

Every baseline returns K reactions per test item, shape (N, K, T, 25) float32, in the
mirrored item order of the split:

* ``GT``: the true listener, repeated K times (FRDist 0, but no diversity).
* ``B_Random``: uniform noise in [0, 1) (the diversity sanity values 1/6, 1/6, 1/12).
* ``B_Mime``: the listener copies the speaker's attributes frame by frame.
* ``B_MeanSeq``: the mean training sequence, frame by frame.
* ``B_MeanFr``: the mean training frame, repeated over time.
* ``NN``: the listeners of the K training items whose speakers are closest to the test
  speaker (lock-step distance of z-scored attributes, see :func:`nearest_speakers`).
* ``NN_window``: the same retrieval per W = 50-frame window (ReactDiff's generation window),
  stitched: window w of reaction k is the listener window of the k-th training window
  (any training item, aligned at a multiple of W) whose speaker window is nearest to the
  test speaker's window w (:func:`window_nn`). A learned competitor's retrieval
  counterpart: it matches short stretches of behaviour, not whole clips.
* ``Oracle``: K fresh draws from the dyadic world's reaction law
  (:func:`reactdiff_lite.data.oracle.oracle_reactions`); synthetic data only.

As in the official ``run_baselines.py``, the training means average every training
person-clip; with mirrored items these are the listeners of all training items (each
person-clip listens in one of the two mirrored items).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from .data.cache import SplitData
from .schema import EMOTION_DIM

WINDOW = 50  # NN_window's retrieval window: ReactDiff's denoiser window (2 s at 25 fps)

Baseline = Callable[..., np.ndarray]


def _emotion(split: SplitData, role: str) -> np.ndarray:
    x = split.speaker_emotion if role == "speaker" else split.listener_emotion
    return x.numpy().astype(np.float32)  # (N, T, 25)


def _repeat(x: np.ndarray, k: int) -> np.ndarray:
    return np.repeat(x[:, None], k, axis=1).astype(np.float32)  # (N, K, T, 25)


def _need(train: SplitData | None, name: str) -> SplitData:
    if train is None:
        raise ValueError(f"baseline {name} needs the training split (train=None given)")
    return train


def _train_sequences(train: SplitData, T: int, name: str) -> np.ndarray:
    seqs = _emotion(_need(train, name), "listener")  # (N_train, T_train, 25)
    if seqs.shape[1] < T:
        raise ValueError(f"baseline {name}: training clips have {seqs.shape[1]} frames, the test split needs {T}")
    return seqs[:, :T]


def gt(train, test: SplitData, k: int, seed: int, data_root) -> np.ndarray:
    return _repeat(_emotion(test, "listener"), k)


def b_random(train, test: SplitData, k: int, seed: int, data_root) -> np.ndarray:
    N, T = len(test), test.n_frames
    return np.random.default_rng(seed).random((N, k, T, EMOTION_DIM), dtype=np.float32)


def b_mime(train, test: SplitData, k: int, seed: int, data_root) -> np.ndarray:
    return _repeat(_emotion(test, "speaker"), k)


def b_meanseq(train, test: SplitData, k: int, seed: int, data_root) -> np.ndarray:
    mean = _train_sequences(train, test.n_frames, "B_MeanSeq").astype(np.float64).mean(0)  # (T, 25)
    return np.broadcast_to(mean.astype(np.float32), (len(test), k, *mean.shape)).copy()


def b_meanfr(train, test: SplitData, k: int, seed: int, data_root) -> np.ndarray:
    frame = _emotion(_need(train, "B_MeanFr"), "listener").astype(np.float64).mean((0, 1))  # (25,)
    return np.broadcast_to(frame.astype(np.float32), (len(test), k, test.n_frames, EMOTION_DIM)).copy()


def nearest_speakers(train_speakers: np.ndarray, test_speakers: np.ndarray, k: int) -> np.ndarray:
    """Indices (N_test, k) of the k training speakers nearest to each test speaker.

    Distance: the lock-step mean squared difference of the 25 attributes after z-scoring
    each attribute with the training speakers' mean and standard deviation,
    ``mean_{t,d} ((a_td − b_td) / σ_d)²``. Lock-step on purpose: an appropriate
    reaction answers *when* the speaker smiles or talks, so timing is part of similarity
    (and it costs one matrix product, where DTW to every training speaker would not).
    """
    T = test_speakers.shape[1]
    a = train_speakers[:, :T].astype(np.float64)
    mu, sd = a.mean((0, 1)), a.std((0, 1)) + 1e-8
    a = ((a - mu) / sd).reshape(len(a), -1)  # (N_train, T*25)
    b = ((test_speakers.astype(np.float64) - mu) / sd).reshape(len(test_speakers), -1)
    d = (b**2).sum(1)[:, None] + (a**2).sum(1)[None] - 2 * b @ a.T  # (N_test, N_train)
    order = np.argsort(d, axis=1, kind="stable")
    return order[:, np.arange(k) % a.shape[0]]  # cycle if k > N_train


def nn(train, test: SplitData, k: int, seed: int, data_root) -> np.ndarray:
    train = _need(train, "NN")
    T = test.n_frames
    if train.n_frames < T:
        raise ValueError(f"baseline NN: training clips have {train.n_frames} frames, the test split needs {T}")
    idx = nearest_speakers(_emotion(train, "speaker"), _emotion(test, "speaker"), k)
    return _emotion(train, "listener")[idx][:, :, :T]  # (N, K, T, 25)


def _aligned_windows(x: np.ndarray, window: int) -> np.ndarray:
    """(M, T, D) clips -> (M · T // window, window, D): every full window starting at a multiple of ``window``."""
    M, T, D = x.shape
    n = T // window
    return x[:, : n * window].reshape(M * n, window, D)


def window_nn(train, test: SplitData, k: int, seed: int, data_root, window: int = WINDOW) -> np.ndarray:
    """Per ``window``-frame window of each test speaker, the listener windows of the k training
    windows whose speaker window is nearest (:func:`nearest_speakers` on windows), stitched
    in time; the last, shorter window is matched on its own frames. Returns (N, K, T, 25)."""
    train = _need(train, "NN_window")
    if train.n_frames < window:
        raise ValueError(f"baseline NN_window: training clips have {train.n_frames} frames, fewer than {window}")
    bank_speaker = _aligned_windows(_emotion(train, "speaker"), window)  # (B, W, 25)
    bank_listener = _aligned_windows(_emotion(train, "listener"), window)  # (B, W, 25)
    speaker, T = _emotion(test, "speaker"), test.n_frames  # (N, T, 25)
    out = np.empty((len(test), k, T, EMOTION_DIM), dtype=np.float32)
    for start in range(0, T, window):
        stop = min(start + window, T)
        idx = nearest_speakers(bank_speaker, speaker[:, start:stop], k)  # (N, k)
        out[:, :, start:stop] = bank_listener[idx][:, :, : stop - start]
    return out


def oracle(train, test: SplitData, k: int, seed: int, data_root) -> np.ndarray:
    from .data.oracle import oracle_reactions
    from .data.synthetic import read_manifest

    root = Path(data_root) if data_root is not None else Path(test.root)
    if read_manifest(root) is None:
        raise ValueError(
            f"baseline Oracle needs the synthetic dyadic world: {root / 'manifest.json'} is missing "
            f"(real REACT data has no reaction law to sample from)"
        )
    out = np.stack([oracle_reactions(root, test.split, n, k, seed)["emotion"] for n in range(len(test))])
    if out.shape[2] != test.n_frames:
        raise ValueError(f"baseline Oracle: the oracle gives {out.shape[2]} frames, the split has {test.n_frames}")
    return out.astype(np.float32)


BASELINES: dict[str, Baseline] = {
    "GT": gt,
    "B_Random": b_random,
    "B_Mime": b_mime,
    "B_MeanSeq": b_meanseq,
    "B_MeanFr": b_meanfr,
    "NN": nn,
    "NN_window": window_nn,
    "Oracle": oracle,
}


def predict_baseline(
    name: str, train: SplitData | None, test: SplitData, k: int = 10, seed: int = 0, data_root: str | Path | None = None
) -> np.ndarray:
    """K reactions per test item from baseline ``name``.

    Args:
        name: a key of :data:`BASELINES`.
        train: the training split (B_MeanSeq, B_MeanFr, NN); test: the evaluated split.
        k: reactions per item; seed: B_Random's noise and the Oracle's draws.
        data_root: dataset root for the Oracle (default ``test.root``).

    Returns:
        (N, K, T, 25) float32.
    """
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose one of {list(BASELINES)}")
    out = BASELINES[name](train, test, k, seed, data_root)
    assert out.shape == (len(test), k, test.n_frames, EMOTION_DIM) and out.dtype == np.float32, (name, out.shape)
    return out
