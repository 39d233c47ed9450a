"""Controlled ablations of ReactDiff's multimodal claim, with training seeds and paired CIs.

The paper's central idea is that attending across the speaker's modalities (intra-class
attention inside the facial and acoustic classes, then inter-class attention from facial
to acoustic) gives more appropriate reactions. On the dyadic world (generator ≥ 1.1) the
voice carries something the face does not (question vs statement phrase ends), so the
claim can be tested. Each variant trains both stages from scratch with the same configs,
the same world and the same step budget, plus one change:

- **MMT**: the model as configured (intra/inter-class attention);
- **concat**: streams concatenated frame by frame (no attention: mixes nothing across time);
- **concat + temporal attention**: concat followed by as many self-attention layers over
  time as the MMT has (the control that also mixes across time);
- **MMT, shuffled audio**: the same architecture, every clip given another clip's audio in
  training and test (``data.shuffle_audio``): audio made uninformative;
- **audio off**: no acoustic class (this also removes the inter-class step);
- **MMT, trainable speaker encoder**: the speaker condition comes from a copy of the stage-1
  encoder trained by the diffusion loss (``stage2.speaker_encoder=trainable``) instead of
  the frozen one; a frozen encoder trained to reconstruct the face has no reason to keep
  what only the voice says.

The key contrasts run with ``seeds`` training seeds; the other variants with one. Every run
evaluates K reactions per test item; per-item scores are averaged over seeds, then 95 %
intervals come from a cluster bootstrap over the appropriate sets (``reactdiff_lite.stats``);
an A-vs-B claim uses the item-by-item difference. Runs are resumable: a finished run keeps
its ``eval.json`` and is not repeated.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from reactdiff_lite import stats
from reactdiff_lite.data.cache import load_split
from reactdiff_lite.data.synthetic import item_cues
from reactdiff_lite.diagnostics import KINDS
from reactdiff_lite.evaluation import evaluate_methods, provenance, provenance_markdown
from reactdiff_lite.latents import load_model, model_modalities
from reactdiff_lite.models.checkpoint import read_checkpoint
from reactdiff_lite.sampling import generate
from reactdiff_lite.train import train_preset
from reactdiff_lite.utils import atomic_write_json, atomic_write_text

FIGURES = Path(__file__).resolve().parents[1] / "figures"
VARIANTS = {  # name: config overrides of both stages' preset configs
    "MMT": (),
    "concat": ("autoencoder.mmt.fusion=concat",),
    "concat + temporal attention": ("autoencoder.mmt.fusion=concat_temporal",),
    "MMT, shuffled audio": ("data.shuffle_audio=true",),
    "audio off": ("autoencoder.encoder.audio=false",),
    "MMT, trainable speaker encoder": ("stage2.speaker_encoder=trainable",),
}
CONTRASTS = (  # (A, B): the claims, each tested as A − B item by item
    ("MMT", "concat + temporal attention"),
    ("MMT", "MMT, shuffled audio"),
    ("MMT", "concat"),
    ("MMT", "audio off"),
    ("MMT, trainable speaker encoder", "MMT"),
)
KEY_VARIANTS = ("MMT", "concat + temporal attention", "MMT, shuffled audio", "MMT, trainable speaker encoder")
SCORED = ("FRCorr", "FRDist", "FRDiv")


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def run_variant(preset: str, out: Path, name: str, seed: int, world_seed: int, progress: bool) -> dict:
    """Train (unless done) and evaluate one variant with one training seed; returns its ``eval.json``."""
    folder = out / _slug(name) / f"seed{seed}"
    done = folder / "eval.json"
    if done.exists():
        return json.loads(done.read_text())
    best = train_preset(
        preset, folder, seed, world_seed=world_seed, data=out / "data", extra=VARIANTS[name], progress=progress
    )
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
    }
    atomic_write_json(done, result)
    return result


def _scores(runs: list[dict], key: str) -> np.ndarray:
    """(R, N) per-item scores of one variant's runs."""
    return np.array([r["items"][key] for r in runs], dtype=np.float64)


def summarise(runs: list[dict], labels: np.ndarray) -> dict[str, stats.Estimate]:
    """Seed-averaged estimates with intervals of FRCorr, FRDist, FRDiv and the cue response."""
    out = {m: stats.bootstrap(_scores(runs, m), labels) for m in SCORED}
    if "cue_question" in runs[0]["items"]:
        q, s = (_scores(runs, f"cue_{kind}") for kind in KINDS)
        qn, sn = (_scores(runs, f"cue_{kind}_n")[0] for kind in KINDS)
        out["cue_response"] = stats.weighted_difference(q, qn, s, sn, labels)
    return out


def contrast(a: list[dict], b: list[dict], labels: np.ndarray) -> dict[str, stats.Estimate]:
    """A − B item by item (seed means per item), with paired cluster-bootstrap intervals."""
    out = {m: stats.paired(_scores(a, m).mean(0), _scores(b, m).mean(0), labels) for m in SCORED}
    if "cue_question" in a[0]["items"]:
        dq, ds = (_scores(a, f"cue_{k}").mean(0) - _scores(b, f"cue_{k}").mean(0) for k in KINDS)
        qn, sn = (_scores(a, f"cue_{k}_n")[0] for k in KINDS)
        out["cue_response"] = stats.weighted_difference(dq, qn, ds, sn, labels)
    return out


def _cell(e: stats.Estimate, digits: int = 3) -> str:
    return f"{e.mean:.{digits}f} [{e.ci[0]:.{digits}f}, {e.ci[1]:.{digits}f}]"


def ablation_markdown(preset: str, summaries: dict, contrasts: dict, seeds: dict, info: dict) -> str:
    """The variants table and the paired-contrasts table."""
    columns = [c for c in (*SCORED, "cue_response") if all(c in s for s in summaries.values())]
    head = "| variant | seeds | " + " | ".join(columns) + " | seed sd of FRCorr |"
    rows = [head, "|---|---:|" + "---:|" * (len(columns) + 1)]
    for name, est in summaries.items():
        sd = est["FRCorr"].seed_std
        rows.append(
            f"| {name} | {seeds[name]} | "
            + " | ".join(_cell(est[c]) for c in columns)
            + f" | {'–' if sd is None else f'{sd:.3f}'} |"
        )
    pairs = [
        "| A − B | " + " | ".join(f"Δ {c}" for c in columns) + " | CI excludes 0 for |",
        "|---|" + "---:|" * (len(columns) + 1),
    ]
    for (a, b), est in contrasts.items():
        better = [c for c in columns if est[c].excludes_zero]
        pairs.append(
            f"| {a} − {b} | " + " | ".join(_cell(est[c]) for c in columns) + f" | {', '.join(better) or 'none'} |"
        )
    return "\n".join(
        [
            f"# Controlled ablations ({preset} preset): test split",
            "",
            "Every variant trains both stages from scratch on the same world with the same budget. "
            "Values: mean over items (and training seeds) [95 % cluster-bootstrap CI over the appropriate sets]; "
            "FRCorr and FRDist are sums over K (higher FRCorr, lower FRDist are better); cue response is the "
            "world's audio-only diagnostic (0: the reactions ignore question vs statement).",
            "",
            "## Variants",
            "",
            *rows,
            "",
            "## Paired differences",
            "",
            "Item-by-item A − B of the seed-averaged scores. FRDist: a negative Δ means A is better.",
            "",
            *pairs,
            "",
            provenance_markdown(info),
            "",
        ]
    )


def run_ablation(
    preset: str = "default",
    out: str | Path = "runs/ablate",
    seeds: int = 3,
    variants: tuple[str, ...] | None = None,
    world_seed: int = 0,
    progress: bool = True,
) -> str:
    """Train and evaluate every variant (key ones with ``seeds`` seeds); returns the markdown.

    Resumable: finished runs are read back from their ``eval.json``.
    """
    out, names = Path(out), tuple(variants or VARIANTS)
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; known: {list(VARIANTS)}")
    plan = {n: list(range(seeds if n in KEY_VARIANTS else 1)) for n in names}
    jobs = [(n, s) for n, ss in plan.items() for s in ss]
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for name, seed in tqdm(jobs, desc="ablation runs", disable=not progress):
        runs[name].append(run_variant(preset, out, name, seed, world_seed, progress))
    labels = stats.clusters(load_split(out / "data", "test", modalities=("emotion",)).neighbours)
    summaries = {n: summarise(r, labels) for n, r in runs.items()}
    contrasts = {(a, b): contrast(runs[a], runs[b], labels) for a, b in CONTRASTS if a in runs and b in runs}
    info = provenance(
        {n: r[0]["config"] for n, r in runs.items()}, sorted({s for ss in plan.values() for s in ss}), out / "data"
    )
    md = ablation_markdown(preset, summaries, contrasts, {n: len(r) for n, r in runs.items()}, info)
    record = {
        "variants": {n: {k: e.to_dict() for k, e in s.items()} for n, s in summaries.items()},
        "contrasts": {f"{a} - {b}": {k: e.to_dict() for k, e in c.items()} for (a, b), c in contrasts.items()},
        "seeds": {n: len(r) for n, r in runs.items()},
        "provenance": info,
    }
    for folder in (out, FIGURES) if preset == "default" and variants is None else (out,):
        atomic_write_text(folder / "ablation.md", md)
        atomic_write_json(folder / "ablation.json", record)
    return md


def cli_ablate(args) -> int:
    """``python -m reactdiff_lite ablate --preset default --out DIR --seeds 3 [--variants ...]``."""
    md = run_ablation(args.preset, args.out, args.seeds, tuple(args.variants) if args.variants else None, args.seed)
    print(md)
    print(f"wrote {Path(args.out) / 'ablation.md'} and ablation.json")
    return 0
