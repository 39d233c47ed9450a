"""Results tables for REACT metrics: several methods on one split, markdown and JSON.

``python -m reactdiff_lite evaluate --pred preds.npz --data DIR --split test [--baselines]``
reads the predictions that ``sample`` writes (``emotion`` (N, K, T, 25) and optionally
``tdmm`` (N, K, T, 58)), evaluates them with :func:`reactdiff_lite.metrics.evaluate`
(official definitions) on the split's listeners, speakers and appropriate-reaction
matrix, optionally next to every baseline, prints a markdown table and writes the JSON
next to the predictions (``<stem>.metrics.json``).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import subprocess
import sys
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from . import diagnostics, metrics, stats
from .data.cache import SplitData
from .schema import EMOTION_DIM, TDMM_DIM
from .utils import UserError, atomic_write_json

COLUMNS = (*metrics.METRICS, "FRRea_proxy", "FRCorr_3DMM", "FRDist_3DMM", "cue_response")
LABELS = {
    "FRRea_proxy": "FRRea-proxy",
    "FRCorr_3DMM": "FRCorr 3DMM",
    "FRDist_3DMM": "FRDist 3DMM",
    "cue_response": "cue response",
}
BETTER = {**metrics.HIGHER_IS_BETTER, "FRCorr_3DMM": True, "FRDist_3DMM": False}
WRITTEN_BY = "as `python -m reactdiff_lite sample --out preds.npz` writes"


class PredictionsError(UserError):
    """Predictions that cannot be evaluated (a missing or unreadable file, a wrong key,
    shape or dtype, NaN): the message names the file and what to do."""


# ------------------------------------------------------------------------ predictions
def load_predictions(path: str | Path) -> dict[str, np.ndarray]:
    """``emotion`` (and ``tdmm`` when present) from a predictions .npz, or a
    :class:`PredictionsError` naming the file and what to do."""
    path = Path(path)
    expected = f"expected a .npz with an emotion array (N, K, T, {EMOTION_DIM}), {WRITTEN_BY}"
    if not path.exists():
        raise PredictionsError(f"predictions file {path} does not exist; {expected}")
    if not zipfile.is_zipfile(path):
        raise PredictionsError(f"predictions file {path} is not a .npz archive; {expected}")
    try:
        with np.load(path, allow_pickle=False) as f:
            keys = list(f.files)
            arrays = {k: f[k] for k in ("emotion", "tdmm") if k in keys}
    except Exception as err:
        if "allow_pickle" in str(err):  # numpy refuses object arrays: unpickling could run any code
            raise PredictionsError(
                f"predictions file {path} holds object (pickled) arrays, which are not loaded for safety; "
                f"save plain float arrays, e.g. np.savez(path, emotion=pred.astype(np.float32))"
            ) from err
        raise PredictionsError(f"predictions file {path} is unreadable ({err}); {expected}") from err
    if "emotion" not in arrays:
        raise PredictionsError(f"predictions file {path} has no 'emotion' array (found {keys}); {expected}")
    return arrays


def check_predictions(
    pred, split: SplitData, *, source: str = "predictions", key: str = "emotion", dim: int = EMOTION_DIM
) -> np.ndarray:
    """``pred`` as float32 (N, K, T, dim) for ``split``, or a :class:`PredictionsError`
    naming ``source`` and the problem."""
    try:
        p = metrics.as_array(pred, f"{source}: {key}")
    except TypeError as err:  # strings, objects
        raise PredictionsError(f"{err} (float32), {WRITTEN_BY}") from err
    N, T = len(split), split.n_frames
    where = f"the {split.split} split of {split.root}"
    if p.ndim != 4:
        raise PredictionsError(f"{source}: {key} has shape {p.shape}, expected (N, K, T, {dim}), {WRITTEN_BY}")
    if p.shape[0] != N:
        raise PredictionsError(
            f"{source}: {key} has N = {p.shape[0]} items, but {where} has {N} (mirrored) items; "
            f"sample with --data {split.root} --split {split.split}"
        )
    if p.shape[2] != T or p.shape[3] != dim:
        raise PredictionsError(f"{source}: {key} has shape {p.shape}, expected ({N}, K, {T}, {dim}) for {where}")
    bad = ~np.isfinite(p)
    if bad.any():
        n, k, t, d = np.argwhere(bad)[0]
        raise PredictionsError(
            f"{source}: {key} has {int(bad.sum())} NaN/inf values (first at item {n}, prediction {k}, "
            f"frame {t}, dim {d}); every value must be a finite number"
        )
    return p.astype(np.float32, copy=False)


# ---------------------------------------------------------------------------- results
def evaluate_methods(
    preds: Mapping[str, np.ndarray | Mapping[str, np.ndarray]],
    split: SplitData,
    *,
    reduce: str = "sum",
    all_predictions: bool = False,
    realism: bool = True,
    intervals: bool = True,
    resamples: int = stats.RESAMPLES,
    cues: Sequence | None = None,
    progress: bool = False,
    threads: int | None = None,
) -> dict:
    """REACT metrics of several methods on one split, with 95 % intervals.

    Args:
        preds: ``{name: emotion (N, K, T, 25)}`` or ``{name: {"emotion": ..., "tdmm": (N, K, T, 58)}}``;
            with a ``tdmm`` entry and 3DMM loaded in ``split``, FRCorr and FRDist are also
            reported on the 58 3DMM coefficients (plain DTW over all of them, weight 1).
        split: the evaluated split (listeners, speakers, neighbours; mirrored items).
        reduce, all_predictions: see :func:`reactdiff_lite.metrics.evaluate` (defaults official).
        realism: add the FRRea-proxy column (:func:`reactdiff_lite.metrics.realism_proxy`).
        intervals: add, per method, ``"ci": {"FRCorr": [lo, hi], "FRDist": ..., "FRDiv": ...}``:
            95 % cluster-bootstrap intervals over the split's appropriate sets
            (:func:`reactdiff_lite.stats.bootstrap`), conditional on this one set of
            predictions (one training seed); and the per-item scores under ``"items"``.
        resamples: bootstrap resamples.
        cues: per item, the speaker's ``(time, kind)`` cues (``data.synthetic.item_cues``): adds
            the world's ``cue_response`` diagnostic (:mod:`reactdiff_lite.diagnostics`) to every row.

    Returns:
        ``{"split", "root", "N", "T", "K", "options", "methods": {name: {metric: value, "ci": ...}},
        "items": {name: {metric: [N scores]}}, "intervals": {...}}``.
    """
    listener, speaker = split.listener_emotion.numpy(), split.speaker_emotion.numpy()
    labels = stats.clusters(split.neighbours)
    methods, K, items = {}, {}, {}
    for name, pred in preds.items():
        arrays = dict(pred) if isinstance(pred, Mapping) else {"emotion": pred}
        p = check_predictions(arrays["emotion"], split, source=name)
        K[name] = p.shape[1]
        row = metrics.evaluate(
            p,
            listener,
            speaker,
            split.neighbours,
            reduce=reduce,
            all_predictions=all_predictions,
            realism=realism,
            per_item=intervals,
            progress=progress,
            threads=threads,
        )
        scores = row.pop("per_item", None)
        if arrays.get("tdmm") is not None and split.tdmm is not None:
            t = check_predictions(arrays["tdmm"], split, source=name, key="tdmm", dim=TDMM_DIM)
            real = split.clip_tensor("tdmm", split.listener_index).numpy()
            row["FRCorr_3DMM"] = metrics.frcorr(t, real, split.neighbours, reduce=reduce)
            row["FRDist_3DMM"] = metrics.frdist(t, real, split.neighbours, reduce=reduce, threads=threads)
        parts = diagnostics.cue_parts(p, cues) if cues is not None else None
        if parts is not None:
            row["cue_response"] = diagnostics.pooled_response(parts)
        methods[name] = {key: float(v) for key, v in row.items()}
        if scores is not None:
            estimates = {m: stats.bootstrap(v, labels, resamples=resamples) for m, v in scores.items()}
            if parts is not None:
                q, s = (parts[kind] for kind in diagnostics.KINDS)
                qn, sn = (parts[f"{kind}_n"] for kind in diagnostics.KINDS)
                estimates["cue_response"] = stats.weighted_difference(q, qn, s, sn, labels, resamples=resamples)
                scores = {**scores, **{f"cue_{key}": value for key, value in parts.items()}}
            methods[name]["ci"] = {m: list(e.ci) for m, e in estimates.items()}
            items[name] = {m: np.nan_to_num(v, nan=0.0).tolist() for m, v in scores.items()}
    intervals_info = {
        "method": "cluster bootstrap over connected components of the neighbour matrix, percentile",
        "level": stats.LEVEL,
        "resamples": resamples,
        "clusters": int(labels.max() + 1),
        "seeds": 1,
        "conditional_on_seed": True,
    }
    return {
        "split": split.split,
        "root": str(split.root),
        "N": len(split),
        "T": split.n_frames,
        "K": K,
        "options": {"reduce": reduce, "all_predictions": all_predictions},
        "methods": methods,
        **({"items": items, "intervals": intervals_info} if intervals else {}),
    }


def markdown_table(
    rows: Mapping[str, Mapping[str, float]],
    columns: Sequence[str] | None = None,
    *,
    first_header: str = "method",
    digits: int = 4,
) -> str:
    """A markdown table: one row per name, one column per metric, ``–`` where a row lacks one.

    Args:
        rows: ``{row name: {metric: value}}``.
        columns: the metrics to show, in order; default: those of :data:`COLUMNS` present in any row.
        first_header: header of the row-name column.
        digits: decimals of every value.

    The header shows each metric's label and an arrow (↑ higher is better, ↓ lower);
    a metric without a known direction gets none.
    """
    if columns is None:
        columns = [c for c in COLUMNS if any(c in row for row in rows.values())]
    arrows = {True: " ↑", False: " ↓", None: ""}
    head = [first_header] + [LABELS.get(c, c) + arrows[BETTER.get(c)] for c in columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * len(columns)) + "|"]
    for name, row in rows.items():
        cells = [_cell(row, c, digits) for c in columns]
        lines.append("| " + " | ".join([name] + cells) + " |")
    return "\n".join(lines)


def provenance(configs: Mapping[str, object], seeds: Sequence[int], data_root: str | Path) -> dict:
    """Where a results table comes from: code commit, config hash, world generator, seeds, torch, date.

    Args:
        configs: the plain configs the results depend on (e.g. ``{"stage1": ..., "stage2": ...}``).
        seeds: the training/sampling seeds. data_root: the evaluated dataset.
    """
    import torch

    from .data.synthetic import read_manifest

    repo = Path(__file__).resolve().parents[1]
    git = ["git", "-C", str(repo)]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--", "reactdiff_lite", "configs"], capture_output=True, text=True
    ).stdout.strip()
    manifest = read_manifest(data_root) or {}
    text = json.dumps(configs, sort_keys=True, default=str)
    return {
        "commit": (commit or "unknown") + (" (uncommitted changes)" if dirty else ""),
        "config_hash": hashlib.sha256(text.encode()).hexdigest()[:12],
        "generator_version": manifest.get("generator_version", "real data"),
        "seeds": list(seeds),
        "torch": torch.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
    }


def provenance_markdown(info: Mapping) -> str:
    """One line under a results table."""
    return (
        f"Provenance: commit {info['commit']}, config {info['config_hash']}, world generator "
        f"{info['generator_version']}, seeds {info['seeds']}, torch {info['torch']}, {info['date']}."
    )


def _cell(row: Mapping, column: str, digits: int) -> str:
    """``value`` or ``value [lo, hi]`` when the row carries an interval for the column."""
    if column not in row:
        return "–"
    interval = row.get("ci", {}).get(column)
    value = f"{row[column]:.{digits}f}"
    return value if interval is None else f"{value} [{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"


def results_markdown(results: dict, digits: int = 4) -> str:
    """The table of :func:`evaluate_methods` results: one row per method, one column per metric,
    with the 95 % interval in brackets where there is one (and a line saying what it means)."""
    table = markdown_table(results["methods"], digits=digits)
    info = results.get("intervals")
    if not info:
        return table
    return (
        f"{table}\n\n[lo, hi]: 95 % {info['method']} ({info['clusters']} clusters, {info['resamples']} "
        "resamples); conditional on one training seed (retraining moves the numbers too)."
    )


def cli_evaluate(args) -> int:
    """``python -m reactdiff_lite evaluate --pred preds.npz --data DIR --split test [--baselines]``.

    Problems the user can fix raise :class:`~reactdiff_lite.utils.UserError` subclasses
    (:class:`PredictionsError`, the data layer's ``DataError``); the CLI prints them as one line.
    """
    from .baselines import BASELINES, predict_baseline
    from .data.cache import load_split
    from .data.synthetic import read_manifest

    pred = load_predictions(args.pred)
    split = load_split(args.data, args.split, modalities=("emotion", "tdmm") if "tdmm" in pred else ("emotion",))
    name = Path(args.pred).stem
    methods = {name: {"emotion": check_predictions(pred["emotion"], split, source=str(args.pred))}}
    if "tdmm" in pred:
        methods[name]["tdmm"] = check_predictions(pred["tdmm"], split, source=str(args.pred), key="tdmm", dim=TDMM_DIM)
    if args.baselines:
        K = methods[name]["emotion"].shape[1]
        train = load_split(args.data, "train", modalities=("emotion",))
        for baseline in BASELINES:
            if baseline == "Oracle" and read_manifest(args.data) is None:
                print("evaluate: skipping Oracle (not a synthetic dataset)", file=sys.stderr)
                continue
            methods[baseline] = predict_baseline(baseline, train, split, k=K, seed=0, data_root=args.data)
    results = evaluate_methods(methods, split, progress=True)
    print(results_markdown(results))
    out = Path(args.pred).with_name(Path(args.pred).stem + ".metrics.json")
    atomic_write_json(out, results)
    print(f"wrote {out}")
    return 0
