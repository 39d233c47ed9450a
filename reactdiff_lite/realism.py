"""FRRea-proxy: how real generated behaviour looks, as a Fréchet distance of behaviour windows.

The REACT challenge's FRRea renders faces from the predicted 3DMM (PIRender on FaceVerse)
and computes an FID against real face images. Rendering needs pretrained weights that
cannot be downloaded here, so this module scores realism in the 25-d attribute space
instead: Gaussians are fitted to windows of consecutive frames (real listeners vs all
generated reactions) and compared with the Fréchet distance, as FID does with image
features. It is documented as a proxy wherever it is reported.
"""

from __future__ import annotations

import numpy as np

from .metric_inputs import as_array, checked_people, checked_pred


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
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T  # Σr^½
    middle = np.linalg.eigvalsh(root_a @ np.atleast_2d(cb) @ root_a)  # eigenvalues of Σr^½ Σf Σr^½
    trace_sqrt = np.sqrt(np.clip(middle, 0, None)).sum()
    fd = ((mu_a - mu_b) ** 2).sum() + np.trace(np.atleast_2d(ca)) + np.trace(np.atleast_2d(cb)) - 2 * trace_sqrt
    return float(max(fd, 0.0))  # >= 0; rounding can dip below


def behaviour_windows(x, window: int = 5) -> np.ndarray:
    """Non-overlapping windows of ``window`` frames, flattened: (..., T, D) -> (n, window*D)."""
    a = as_array(x, "x").astype(np.float64)
    T, D = a.shape[-2:]
    w = T // window
    if w == 0:
        raise ValueError(f"window {window} is longer than the sequences (T = {T})")
    return a[..., : w * window, :].reshape(-1, window * D)


def realism_proxy(pred, listener, *, window: int = 5) -> float:
    """**FRRea-proxy** (lower is better): the Fréchet distance between real listener behaviour
    windows and generated ones, in the 25-d attribute space.

    A proxy, not FRRea: the official FRRea is an FID of face images rendered from the
    predicted 3DMM with PIRender on FaceVerse (public, but heavy and needing pretrained
    weights we cannot download here). Here each sample is ``window`` consecutive frames of
    the 25 attributes flattened (5 frames = 0.2 s, 125-d), so the score sees the
    distribution of expressions *and* their short-term motion, but not head pose (the 3DMM
    is not used), identity or appearance. Real windows come from ``listener`` (N, T, 25), generated windows from all
    K predictions (N, K, T, 25). The GT baseline scores 0 by construction.
    """
    p = checked_pred(pred)
    L = checked_people(listener, "listener", p)
    return frechet_distance(behaviour_windows(L, window), behaviour_windows(p, window))
