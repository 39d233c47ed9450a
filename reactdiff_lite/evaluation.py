"""Results tables for REACT metrics: several methods on one split, markdown and JSON.

``python -m reactdiff_lite evaluate --pred preds.npz --data DIR --split test [--baselines]``
reads the predictions that ``sample`` writes (``emotion`` (N, K, T, 25) and optionally
``tdmm`` (N, K, T, 58)), evaluates them with :func:`reactdiff_lite.metrics.evaluate`
(official definitions) on the split's listeners, speakers and appropriate-reaction
matrix, optionally next to every baseline, prints a markdown table and writes the JSON
next to the predictions (``<stem>.metrics.json``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Mapping

import numpy as np

from . import metrics
from .data.react import DataError, SplitData
from .data.schema import EMOTION_DIM, TDMM_DIM
from .utils import atomic_write_json

COLUMNS = ("FRCorr", "FRDist", "FRDiv", "FRVar", "FRDvs", "FRSyn", "FRRea_proxy", "FRCorr_3DMM", "FRDist_3DMM")
LABELS = {"FRRea_proxy": "FRRea-proxy", "FRCorr_3DMM": "FRCorr 3DMM", "FRDist_3DMM": "FRDist 3DMM"}
BETTER = {**metrics.HIGHER_IS_BETTER, "FRCorr_3DMM": True, "FRDist_3DMM": False}


def check_predictions(pred, split: SplitData, *, source: str = "predictions", key: str = "emotion",
                      dim: int = EMOTION_DIM) -> np.ndarray:
    """``pred`` as float32 (N, K, T, dim) for ``split``, or a ValueError naming ``source`` and the problem."""
    p = metrics.as_array(pred, f"{source}[{key}]")
    N, T = len(split), split.n_frames
    if p.ndim != 4:
        raise ValueError(f"{source}: {key} has shape {p.shape}, expected (N, K, T, {dim})")
    if p.shape[0] != N:
        raise ValueError(f"{source}: {key} has N = {p.shape[0]} items, but the {split.split} split of "
                         f"{split.root} has {N} (mirrored) items")
    if p.shape[2] != T or p.shape[3] != dim:
        raise ValueError(f"{source}: {key} has shape {p.shape}, expected ({N}, K, {T}, {dim}) for the "
                         f"{split.split} split of {split.root}")
    bad = ~np.isfinite(p)
    if bad.any():
        n, k, t, d = np.argwhere(bad)[0]
        raise ValueError(f"{source}: {key} has {int(bad.sum())} NaN/inf values (first at item {n}, "
                         f"prediction {k}, frame {t}, dim {d})")
    return p.astype(np.float32, copy=False)


def evaluate_methods(preds: Mapping[str, np.ndarray | Mapping[str, np.ndarray]], split: SplitData, *,
                     reduce: str = "sum", all_predictions: bool = False, realism: bool = True,
                     progress: bool = False, threads: int | None = None) -> dict:
    """REACT metrics of several methods on one split.

    Args:
        preds: ``{name: emotion (N, K, T, 25)}`` or ``{name: {"emotion": ..., "tdmm": (N, K, T, 58)}}``;
            with a ``tdmm`` entry and 3DMM loaded in ``split``, FRCorr and FRDist are also
            reported on the 58 3DMM coefficients (plain DTW over all of them, weight 1).
        split: the evaluated split (listeners, speakers, neighbours; mirrored items).
        reduce, all_predictions: see :func:`reactdiff_lite.metrics.evaluate` (defaults official).
        realism: add the FRRea-proxy column (:func:`reactdiff_lite.metrics.realism_proxy`).

    Returns:
        ``{"split", "root", "N", "T", "options", "methods": {name: {metric: value}}}``.
    """
    listener, speaker = split.listener_emotion.numpy(), split.speaker_emotion.numpy()
    methods = {}
    for name, pred in preds.items():
        arrays = dict(pred) if isinstance(pred, Mapping) else {"emotion": pred}
        p = check_predictions(arrays["emotion"], split, source=name)
        row = metrics.evaluate(p, listener, speaker, split.neighbours, reduce=reduce, all_predictions=all_predictions,
                               realism=realism, progress=progress, threads=threads)
        if arrays.get("tdmm") is not None and split.tdmm is not None:
            t = check_predictions(arrays["tdmm"], split, source=name, key="tdmm", dim=TDMM_DIM)
            real = split.clip_tensor("tdmm", split.listener_index).numpy()
            row["FRCorr_3DMM"] = metrics.frcorr(t, real, split.neighbours, reduce=reduce)
            row["FRDist_3DMM"] = metrics.frdist(t, real, split.neighbours, reduce=reduce, threads=threads)
        methods[name] = {key: float(v) for key, v in row.items()}
    K = {name: int(np.shape(p["emotion"] if isinstance(p, Mapping) else p)[1]) for name, p in preds.items()}
    return {"split": split.split, "root": str(split.root), "N": len(split), "T": split.n_frames, "K": K,
            "options": {"reduce": reduce, "all_predictions": all_predictions}, "methods": methods}


def results_markdown(results: dict, digits: int = 4) -> str:
    """One row per method, one column per metric; the header arrow says which way is better."""
    methods = results["methods"]
    cols = [c for c in COLUMNS if any(c in row for row in methods.values())]
    head = ["method"] + [f"{LABELS.get(c, c)} {'↑' if BETTER[c] else '↓'}" for c in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * len(cols)) + "|"]
    for name, row in methods.items():
        cells = [f"{row[c]:.{digits}f}" if c in row else "–" for c in cols]
        lines.append("| " + " | ".join([name] + cells) + " |")
    return "\n".join(lines)


def load_predictions(path: str | Path) -> dict[str, np.ndarray]:
    """``emotion`` (and ``tdmm`` when present) from a predictions .npz, with errors naming the file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"predictions file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in ("emotion", "tdmm") if k in f.files}
            keys = list(f.files)
    except Exception as err:  # noqa: BLE001 - any unreadable npz
        raise ValueError(f"predictions file {path} is unreadable: {err}") from err
    if "emotion" not in arrays:
        raise ValueError(f"predictions file {path} has no 'emotion' array (found {keys}); "
                         f"expected emotion (N, K, T, 25) as written by `python -m reactdiff_lite sample`")
    return arrays


def cli_evaluate(args) -> int:
    """``python -m reactdiff_lite evaluate --pred preds.npz --data DIR --split test [--baselines]``."""
    from .baselines import BASELINES, predict_baseline
    from .data.react import load_split
    from .data.synthetic import read_manifest

    try:
        pred = load_predictions(args.pred)
        modalities = ("emotion", "tdmm") if "tdmm" in pred else ("emotion",)
        split = load_split(args.data, args.split, modalities=modalities)
        name = Path(args.pred).stem
        methods = {name: {"emotion": check_predictions(pred["emotion"], split, source=str(args.pred)),
                          **({"tdmm": check_predictions(pred["tdmm"], split, source=str(args.pred), key="tdmm",
                                                        dim=TDMM_DIM)} if "tdmm" in pred else {})}}
        if args.baselines:
            K = methods[name]["emotion"].shape[1]
            train = load_split(args.data, "train", modalities=("emotion",))
            for b in BASELINES:
                if b == "Oracle" and read_manifest(args.data) is None:
                    print("evaluate: skipping Oracle (not a synthetic dataset)", file=sys.stderr)
                    continue
                methods[b] = predict_baseline(b, train, split, k=K, seed=0, data_root=args.data)
        results = evaluate_methods(methods, split, progress=True)
    except (ValueError, DataError, FileNotFoundError) as err:
        print(f"evaluate: error: {err}", file=sys.stderr)
        return 2
    print(results_markdown(results))
    out = Path(args.pred).with_name(Path(args.pred).stem + ".metrics.json")
    atomic_write_json(out, results)
    print(f"wrote {out}")
    return 0
