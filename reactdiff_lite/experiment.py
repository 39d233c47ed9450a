"""Multi-run experiments: resumable trained runs, seed-averaged estimates, paired contrasts.

What ``ablate`` (controlled variants of ReactDiff) and ``compare`` (ReactDiff against
learned competitors) share, so that both measure in one way:

- :func:`run_variant` trains both stages of a preset with some config overrides and one
  training seed (``train.train_preset``, itself resumable stage by stage), samples K
  reactions per test item and scores them (``evaluation.evaluate_methods``); the result,
  with the per-item scores, is kept as ``<out>/<slug>/seed<s>/eval.json`` (and, for the
  default preset's published experiments, in a committed record under ``figures/``), and a run
  whose result exists is read back, not repeated. Every run of one experiment uses the
  world at ``<out>/data``, so they share the data, the test items and the neighbour matrix.
- :func:`summarise`: per-item scores averaged over seeds, then a 95 % cluster-bootstrap
  interval over the appropriate sets (``stats.bootstrap``), for FRCorr, FRDist, FRDiv and
  the world's cue response.
- :func:`contrast`: A − B item by item on the seed means, with the same resampled clusters
  (``stats.paired``).
- :func:`estimates_rows` and :func:`contrast_rows`: the two markdown tables built from them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from reactdiff_lite import stats
from reactdiff_lite.data.cache import load_split
from reactdiff_lite.data.synthetic import ensure_dataset, item_cues
from reactdiff_lite.diagnostics import KINDS
from reactdiff_lite.evaluation import evaluate_methods, provenance
from reactdiff_lite.latents import load_model, model_modalities
from reactdiff_lite.models.checkpoint import read_checkpoint
from reactdiff_lite.sampling import generate
from reactdiff_lite.train import preset_configs, recipe_hash, train_preset
from reactdiff_lite.utils import atomic_write_json

SCORED = ("FRCorr", "FRDist", "FRDiv")  # the metrics with intervals (FRCorr, FRDist: sums over K)


def slug(name: str) -> str:
    """A folder name for a run's display name: ``"MMT, shuffled audio"`` -> ``"mmt_shuffled_audio"``."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def run_variant(
    preset: str,
    out: Path,
    name: str,
    extra: tuple[str, ...],
    seed: int,
    world_seed: int,
    progress: bool,
    record: Path | None = None,
) -> dict:
    """Train (unless done) and evaluate one variant with one training seed; returns its ``eval.json``.

    Args:
        preset: ``smoke`` or ``default`` (``configs/stage{1,2}_<preset>.yaml``).
        out: the experiment folder; the run goes to ``out/<slug(name)>/seed<seed>``, the world
            is ``out/data``. name: the variant's display name. extra: its config overrides
            (``train.preset_configs``). seed: training (and sampling) seed. world_seed: the world's.
        record: a folder that also keeps the result, as ``record/<slug(name)>/seed<seed>.json``,
            and is read first: the committed record of a long experiment, so that it resumes in
            a fresh checkout (the world is regenerated bit for bit from its seed; checkpoints are
            not kept).
    Returns:
        ``{"variant", "seed", "metrics": {metric: value}, "items": {metric: [N scores]}, "config",
        "recipe" (``train.recipe_hash`` of both stages' configs), "provenance"}``.
    """
    ensure_dataset(out / "data", preset, world_seed)  # the experiment's world, even when every run is read back
    folder = out / slug(name) / f"seed{seed}"
    recipe = recipe_hash(*preset_configs(preset, folder, seed, world_seed, out / "data", progress, extra))
    kept = [folder / "eval.json"] + ([record / slug(name) / f"seed{seed}.json"] if record else [])
    for done in reversed(kept):  # a result counts only for the recipe it was made with
        stored = json.loads(done.read_text()) if done.exists() else {}
        if stored.get("recipe") == recipe:
            return stored
    best = train_preset(preset, folder, seed, world_seed=world_seed, data=out / "data", extra=extra, progress=progress)
    model = load_model(best)
    test = load_split(out / "data", "test", modalities=model_modalities(model.autoencoder))
    pred = generate(model, model.speaker_latents(test), k=model.config.sample.k, seed=seed)
    table = evaluate_methods({name: pred["emotion"].numpy()}, test, realism=False, cues=item_cues(out / "data", "test"))
    result = {
        "variant": name,
        "seed": seed,
        "metrics": table["methods"][name],
        "items": table["items"][name],
        "config": read_checkpoint(best)["config"],
        "recipe": recipe,
    }
    result["provenance"] = provenance({"config": result["config"]}, [seed], out / "data")
    for done in kept:
        atomic_write_json(done, result)
    return result


def _scores(runs: list[dict], key: str) -> np.ndarray:
    """(R, N) per-item scores of one variant's runs."""
    return np.array([r["items"][key] for r in runs], dtype=np.float64)


def summarise(runs: list[dict], labels: np.ndarray) -> dict[str, stats.Estimate]:
    """Seed-averaged estimates with intervals of FRCorr, FRDist, FRDiv and the cue response.

    Args:
        runs: one variant's ``eval.json`` dicts (one per seed). labels: (N,) item clusters.
    """
    out = {m: stats.bootstrap(_scores(runs, m), labels) for m in SCORED}
    if "cue_question" in runs[0]["items"]:
        q, s = (_scores(runs, f"cue_{kind}") for kind in KINDS)
        qn, sn = (_scores(runs, f"cue_{kind}_n")[0] for kind in KINDS)
        out["cue_response"] = stats.weighted_difference(q, qn, s, sn, labels)
    return out


def contrast(a: list[dict], b: list[dict], labels: np.ndarray) -> dict[str, stats.Estimate]:
    """A − B item by item (seed means per item), with paired cluster-bootstrap intervals."""
    out = {m: stats.paired(_scores(a, m).mean(0), _scores(b, m).mean(0), labels) for m in SCORED}
    if "cue_question" in a[0]["items"] and "cue_question" in b[0]["items"]:
        dq, ds = (_scores(a, f"cue_{k}").mean(0) - _scores(b, f"cue_{k}").mean(0) for k in KINDS)
        qn, sn = (_scores(a, f"cue_{k}_n")[0] for k in KINDS)
        out["cue_response"] = stats.weighted_difference(dq, qn, ds, sn, labels)
    return out


def cell(e: stats.Estimate, digits: int = 3) -> str:
    """``mean [lo, hi]``."""
    return f"{e.mean:.{digits}f} [{e.ci[0]:.{digits}f}, {e.ci[1]:.{digits}f}]"


def columns_of(summaries: dict[str, dict[str, stats.Estimate]]) -> list[str]:
    """The estimated quantities every row has, in table order."""
    return [c for c in (*SCORED, "cue_response") if all(c in s for s in summaries.values())]


def estimates_rows(summaries: dict, seeds: dict[str, int], columns: list[str], first: str) -> list[str]:
    """Markdown rows: one per variant, its seeds, ``mean [CI]`` per column and the seed sd of FRCorr."""
    rows = [
        f"| {first} | seeds | " + " | ".join(columns) + " | seed sd of FRCorr |",
        "|---|---:|" + "---:|" * (len(columns) + 1),
    ]
    for name, est in summaries.items():
        sd = est["FRCorr"].seed_std
        rows.append(
            f"| {name} | {seeds[name]} | "
            + " | ".join(cell(est[c]) for c in columns)
            + f" | {'–' if sd is None else f'{sd:.3f}'} |"
        )
    return rows


def contrast_rows(contrasts: dict, columns: list[str]) -> list[str]:
    """Markdown rows: one per (A, B) pair, ``Δ [CI]`` per column and where the CI excludes 0."""
    rows = [
        "| A − B | " + " | ".join(f"Δ {c}" for c in columns) + " | CI excludes 0 for |",
        "|---|" + "---:|" * (len(columns) + 1),
    ]
    for (a, b), est in contrasts.items():
        better = [c for c in columns if c in est and est[c].excludes_zero]
        rows.append(
            f"| {a} − {b} | "
            + " | ".join(cell(est[c]) if c in est else "–" for c in columns)
            + f" | {', '.join(better) or 'none'} |"
        )
    return rows
