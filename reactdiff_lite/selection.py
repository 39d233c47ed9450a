"""The validation record: every tuned option of the default recipe, scored on val, never test.

Each option is varied alone around the default (the preset's config) and scored on the val
split with the REACT metrics, 95 % cluster-bootstrap intervals and the item-by-item difference
from the default. Two kinds of options:

- **sampling** options (DDIM steps n, guidance scale s, AU output) re-sample the base model;
- **training** options (prediction type, denoiser width, speaker encoder) retrain stage 2 on
  the base run's stage 1 (same world, same budget, same seed).

The rule, fixed before the numbers: an option beats the default when the paired 95 % CI of
its val FRCorr difference excludes 0 in its favour; otherwise the default stands (it is the
cheaper or the official choice). Options are varied one at a time, so when the rule prefers
more than one change, the full record also scores those changes **together** (stage 2
retrained once), because choices that each help alone need not help combined.
``figures/selection.md`` records every row, and whether the default survives the rule.
Resumable: each scored option keeps its JSON (the combination ``together.json``).
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from reactdiff_lite import stats
from reactdiff_lite.data.cache import load_split
from reactdiff_lite.data.synthetic import item_cues
from reactdiff_lite.evaluation import evaluate_methods, provenance, provenance_markdown
from reactdiff_lite.experiment import SCORED, cell, slug
from reactdiff_lite.latents import ReactionModel, load_model, model_modalities
from reactdiff_lite.metrics import binarize_au
from reactdiff_lite.models.checkpoint import read_checkpoint
from reactdiff_lite.sampling import generate
from reactdiff_lite.train import preset_configs, train_once, train_preset
from reactdiff_lite.utils import atomic_write_json, atomic_write_text

FIGURES = Path(__file__).resolve().parents[1] / "figures"
# group: {option label: generate() overrides}; None marks the output post-processing (binary AUs)
SAMPLING = {
    "DDIM steps n": {"5": {"steps": 5}, "10": {"steps": 10}, "20": {"steps": 20}},
    "guidance s": {"1": {"guidance": 1.0}, "1.5": {"guidance": 1.5}, "2": {"guidance": 2.0}, "3": {"guidance": 3.0}},
    "AU output": {"probabilities": {}, "binary (p > 0.5)": None},
}
TOGETHER, AS_CONFIGURED = "the rule's changes together", "as configured"  # the record's last section
# group: {option label: stage-2 config overrides}
TRAINING = {
    "prediction": {"v": ("diffusion.prediction=v",), "eps": ("diffusion.prediction=eps",)},
    "denoiser width": {
        "32": ("diffusion.denoiser.dim=32",),
        "64": ("diffusion.denoiser.dim=64",),
        "128": ("diffusion.denoiser.dim=128",),
    },
    "speaker encoder": {
        "frozen": ("stage2.speaker_encoder=frozen",),
        "trainable": ("stage2.speaker_encoder=trainable",),
    },
}


def defaults(model: ReactionModel) -> dict[str, str]:
    """The default's label in every group, read from the base model's config."""
    c = model.config
    return {
        "DDIM steps n": str(c.sample.steps),
        "guidance s": f"{c.sample.guidance:g}",
        "AU output": "binary (p > 0.5)" if c.sample.binarize_au else "probabilities",
        "prediction": c.diffusion.prediction,
        "denoiser width": str(c.diffusion.denoiser.dim),
        "speaker encoder": c.stage2.speaker_encoder,
    }


def score(model: ReactionModel, data: Path, label: str, overrides: dict, seed: int, binarize: bool = False) -> dict:
    """Sample K reactions per val speaker with ``generate`` ``overrides``, threshold the AUs if
    ``binarize``, and score them."""
    val = load_split(data, "val", modalities=model_modalities(model.autoencoder))
    emotion = generate(model, model.speaker_latents(val), k=model.config.sample.k, seed=seed, **overrides)
    emotion = emotion["emotion"].numpy()
    if binarize:
        emotion = binarize_au(emotion)
    table = evaluate_methods({label: emotion}, val, realism=False, cues=item_cues(data, "val"))
    return {"metrics": table["methods"][label], "items": table["items"][label]}


def score_option(
    preset: str, out: Path, base: Path, model: ReactionModel, group: str, option: str, chosen, seed, progress
) -> dict:
    """Score one option: the base model as configured (the default), re-sampled, or stage 2 retrained."""
    if option == chosen[group]:
        return score(model, base / "data", "default", {}, seed)
    return score_recipe(preset, out / slug(group) / slug(option), base, model, {group: option}, seed, progress)


def recipe_label(changes: dict[str, str]) -> str:
    """``{"DDIM steps n": "5", "denoiser width": "128"}`` -> ``"5 + 128"``."""
    return " + ".join(changes.values())


def score_recipe(
    preset: str, out: Path, base: Path, model: ReactionModel, changes: dict[str, str], seed: int, progress: bool
) -> dict:
    """Score the default with ``changes`` ({group: option}); stage 2 is retrained in ``out`` when
    any of them is a training option, on the base run's stage 1."""
    data = base / "data"
    sampling = [SAMPLING[g][o] for g, o in changes.items() if g in SAMPLING]
    overrides = {k: v for opts in sampling if opts for k, v in opts.items()}
    binarize = any(opts is None for opts in sampling)
    train = tuple(x for g, o in changes.items() if g in TRAINING for x in TRAINING[g][o])
    if train:
        extra = (*train, f"stage2.stage1_checkpoint={(base / 'stage1' / 'best.pt').resolve()}")
        _, cfg = preset_configs(preset, out, seed, seed, data.resolve(), progress, extra)
        model = load_model(train_once(cfg))
    return score(model, data, recipe_label(changes), overrides, seed, binarize)


def combined(out: Path, changes: dict[str, str], make) -> dict[str, dict]:
    """``{label: row}`` of the rule's ``changes`` scored together, cached in ``out/together.json``
    (scored again when the changes differ from the cached ones)."""
    return {recipe_label(changes): _cached(out / "together.json", make, changes)}


def _cached(path: Path, make, changes: dict[str, str] | None = None) -> dict:
    """``make()``'s result kept in ``path`` (with the ``changes`` it was made for, if any); made
    again when missing or made for other changes."""
    stored = json.loads(path.read_text()) if path.exists() else None
    if stored is not None and stored.get("changes") == changes:
        return stored
    result = make() if changes is None else {"changes": changes, **make()}
    atomic_write_json(path, result)
    return result


def run_selection(
    preset: str = "default",
    out: str | Path = "runs/select",
    base: str | Path | None = None,
    seed: int = 0,
    groups: tuple[str, ...] | None = None,
    progress: bool = True,
) -> str:
    """Score every option of :data:`SAMPLING` and :data:`TRAINING` on val; returns the markdown.

    Args:
        base: a finished run folder with ``data/``, ``stage1/``, ``stage2/`` (e.g. ``runs/demo``
            of the same preset and seed); trained into ``out/base`` when None.
        groups: a subset of the option groups (default: all; only the full record is published).
    """
    every = {**SAMPLING, **TRAINING}
    unknown = sorted(set(groups or ()) - set(every))
    if unknown:
        raise ValueError(f"unknown option group(s) {unknown}; known: {list(every)}")
    out = Path(out)
    base = Path(base) if base else out / "base"
    best = base / "stage2" / "best.pt"
    if not best.exists():
        best = train_preset(preset, base, seed, progress=progress)
    data, model = base / "data", load_model(best)
    chosen = defaults(model)
    options = {g: list(dict.fromkeys([*opts, chosen[g]])) for g, opts in every.items() if g in (groups or every)}
    jobs = [(g, o) for g, opts in options.items() for o in opts]
    rows: dict[str, dict[str, dict]] = {g: {} for g in options}
    for group, option in tqdm(jobs, desc="val options", disable=not progress):
        rows[group][option] = _cached(
            out / "default.json" if option == chosen[group] else out / slug(group) / f"{slug(option)}.json",
            lambda g=group, o=option: score_option(preset, out, base, model, g, o, chosen, seed, progress),
        )
    labels = stats.clusters(load_split(data, "val", modalities=("emotion",)).neighbours)
    verdicts = {g: verdict(r, chosen[g], labels) for g, r in rows.items()}
    changes = {g: pick for g, (_, _, pick) in verdicts.items() if pick != chosen[g]}
    if groups is None and len(changes) > 1:  # the full record: the rule's changes, together
        first = next(iter(rows))
        make = partial(score_recipe, preset, out / "together", base, model, changes, seed, progress)
        rows[TOGETHER] = {AS_CONFIGURED: rows[first][chosen[first]], **combined(out, changes, make)}
        chosen = {**chosen, TOGETHER: AS_CONFIGURED}
        verdicts[TOGETHER] = verdict(rows[TOGETHER], AS_CONFIGURED, labels)
    info = provenance({"stage1": read_checkpoint(base / "stage1" / "best.pt")["config"]}, [seed], data)
    md = selection_markdown(preset, rows, chosen, labels, verdicts, info)
    atomic_write_text(out / "selection.md", md)
    if preset == "default" and groups is None:
        atomic_write_text(FIGURES / "selection.md", md)
    return md


def verdict(
    group_rows: dict[str, dict], default: str, labels: np.ndarray
) -> tuple[str, dict[str, stats.Estimate], str]:
    """The rule applied to one group: the options whose val FRCorr beats the default's (paired CI > 0).

    Returns the verdict line, every option's paired difference from the default, and the pick
    (the best of those options, or the default)."""
    ref = np.asarray(group_rows[default]["items"]["FRCorr"])
    diffs = {o: stats.paired(np.asarray(r["items"]["FRCorr"]), ref, labels) for o, r in group_rows.items()}
    better = [o for o, d in diffs.items() if o != default and d.ci[0] > 0]
    if not better:
        return f"default **{default}** stands: no option's paired val FRCorr CI lies above it.", diffs, default
    top = max(better, key=lambda o: diffs[o].mean)
    return f"val prefers **{top}** over the default **{default}** (paired FRCorr CI above 0).", diffs, top


def selection_markdown(preset: str, rows: dict, chosen: dict, labels: np.ndarray, verdicts: dict, info: dict) -> str:
    """One table per tuned option, the paired difference from the default, and the rule's verdict
    (``verdicts``: :func:`verdict` per group)."""
    lines = [
        f"# Validation record ({preset} preset): val split, never test",
        "",
        "Each option varied alone around the default; K reactions per val speaker, one training seed "
        "(intervals are conditional on it). Values: mean [95 % cluster-bootstrap CI over the appropriate "
        "sets]. FRCorr and FRDist are sums over K (higher FRCorr, lower FRDist are better). Rule, fixed "
        "before the numbers: an option replaces the default only if its paired val FRCorr difference has a "
        "CI above 0. When it prefers more than one change, the last section scores them together (stage 2 "
        "retrained once with every training change, sampled with every sampling change).",
    ]
    for group, group_rows in rows.items():
        line, diffs, _ = verdicts[group]
        lines += [
            "",
            f"## {group}",
            "",
            "| option | FRCorr | FRDist | FRDiv | cue response | Δ FRCorr vs default |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for option, r in group_rows.items():
            est = {m: stats.bootstrap(np.asarray(r["items"][m]), labels) for m in SCORED}
            name = f"{option} (default)" if option == chosen[group] else option
            cue = r["metrics"].get("cue_response")
            lines.append(
                f"| {name} | "
                + " | ".join(cell(est[m]) for m in SCORED)
                + f" | {'–' if cue is None else f'{cue:.3f}'} | {cell(diffs[option])} |"
            )
        lines += ["", line]
    return "\n".join([*lines, "", provenance_markdown(info), ""])


def cli_select(args) -> int:
    """``python -m reactdiff_lite select --preset default --base runs/demo --out runs/select``."""
    md = run_selection(args.preset, args.out, args.base, args.seed, tuple(args.groups) if args.groups else None)
    print(md)
    print(f"wrote {Path(args.out) / 'selection.md'}")
    return 0
