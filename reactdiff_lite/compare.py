"""ReactDiff against learned competitors and the baselines, under one protocol, with paired CIs.

ReactDiff's paper claims it beats earlier learned generators on appropriateness and
diversity. Here every learned competitor is a config of the same two-stage pipeline:
trained by the same loop (``train.train_preset``: same world, same stage-1 recipe, same
step budget, same seeds), sampled by the same sampler interface (``sampling.generate``,
K reactions per test item), scored on the same test items and neighbour matrix:

- **ReactDiff**: this project's recipe (the preset's configs as they are);
- **Regression**: the same denoiser and conditioning trained to output the listener latent
  window with MSE (``stage2.objective=regression``, ``models.regression``): one reaction
  per speaker, repeated K times. The mean-collapse that motivates diffusion.
- **Trans-VAE**: a conditional VAE over listener latent windows (``stage2.objective=transvae``,
  ``models.transvae``): a transformer posterior over the window, a 16-d window latent with a
  N(0, I) prior, and ReactDiff's denoiser as the speaker-conditioned transformer decoder;
  diversity from sampling z.
- **ReactDiff (official recipe)**: the authors' released training and sampling recipe on our
  networks: ε prediction with an L1 loss, a 20-step cosine schedule, min-max latent
  normalisation with x̂₀ clipped to [-1, 1], DDIM over all 20 steps, the simultaneous speaker
  window flattened through a linear layer as the only condition (no context around it, no
  previous window), no condition dropout or guidance, the frozen encoder. Kept ours: the
  transformer denoiser (not their 1-D UNet), the stage-1 autoencoder, data and budget.

The **online track** (REACT task 2) trains ReactDiff, Regression and Trans-VAE again as
frame-causal models (``ONLINE``: causal encoders and denoiser, no speaker frames after the
window), named ``"<method> (online)"``; they get their own table and their own paired
contrasts (ReactDiff (online) − the others online). The official recipe has no online
variant here: its flattened simultaneous window is not frame-causal.

Next to them the non-learned baselines (``baselines``: the world's Oracle, whole-clip
and window-level nearest neighbours, mimicry, means, noise). Every learned competitor runs
with ``seeds`` training seeds; per-item scores are averaged over seeds and get 95 %
cluster-bootstrap intervals, and each claim is a paired A − B difference
(``reactdiff_lite.experiment``, shared with ``ablate``). Runs are resumable: a finished
run keeps its ``eval.json``, the baselines theirs; the default comparison also keeps every
finished run's scores in the committed ``figures/compare_runs/``, so that a comparison of
several hours resumes in a fresh checkout.

Outputs, in ``out``: ``compare.md`` (the tables and the claims), ``compare.json`` and
``compare.png`` (the appropriateness-vs-diversity plane with 95 % intervals); the full
default comparison also writes them to ``figures/``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from tqdm.auto import tqdm

from reactdiff_lite import stats
from reactdiff_lite.baselines import predict_baseline
from reactdiff_lite.data.cache import load_split
from reactdiff_lite.data.synthetic import item_cues
from reactdiff_lite.evaluation import evaluate_methods, provenance, provenance_markdown
from reactdiff_lite.experiment import (
    cell,
    columns_of,
    contrast,
    contrast_rows,
    estimates_rows,
    run_variant,
    summarise,
)
from reactdiff_lite.plots import appropriateness_diversity, save_figure
from reactdiff_lite.train import CONFIGS, load_config
from reactdiff_lite.utils import UserError, atomic_write_json, atomic_write_text

FIGURES = Path(__file__).resolve().parents[1] / "figures"
OURS = "ReactDiff"
COMPETITORS = {  # name: config overrides of both stages' preset configs
    OURS: (),
    "Regression": ("stage2.objective=regression",),
    "Trans-VAE": ("stage2.objective=transvae",),
    "ReactDiff (official recipe)": (
        "autoencoder.latent_norm=minmax",
        "diffusion.prediction=eps",
        "diffusion.loss=l1",
        "diffusion.num_train_steps=20",
        "diffusion.clip_x0=true",
        "diffusion.cond_drop_prob=0.0",
        "diffusion.denoiser.context_before=0",
        "diffusion.denoiser.context_after=0",
        "diffusion.denoiser.speaker_condition=flat",
        "stage2.speaker_encoder=frozen",
        "sample.steps=20",
        "sample.eta=0.0",
        "sample.guidance=1.0",
    ),
}
OFFICIAL = "ReactDiff (official recipe)"
ONLINE = (  # the frame-causal online track: configs/stage{1,2}_online.yaml's changes, on any preset
    "autoencoder.causal=true",
    "diffusion.denoiser.causal=true",
    "diffusion.denoiser.context_after=0",
    "stage2.online_prob=0.0",
)
ONLINE_SUFFIX = " (online)"
COMPETITORS |= {f"{n}{ONLINE_SUFFIX}": (*COMPETITORS[n], *ONLINE) for n in (OURS, "Regression", "Trans-VAE")}
BASELINE_ROWS = ("Oracle", "NN_window", "NN", "B_Mime", "B_MeanSeq", "B_MeanFr", "B_Random")  # GT: FRDist 0
NON_INFERIORITY = 0.05  # ReactDiff's FRCorr may be at most 5 % below Regression's


def run_baselines(out: Path, names: tuple[str, ...], k: int, progress: bool) -> dict[str, list[dict]]:
    """Score the baselines on the experiment's world (once; kept in ``out/baselines/eval.json``).

    Returns ``{name: [run]}`` with runs shaped as ``experiment.run_variant``'s (one "seed": 0).
    """
    done = out / "baselines" / "eval.json"
    stored = json.loads(done.read_text()) if done.exists() else {}
    if not set(names) <= set(stored):
        train, test = (load_split(out / "data", s, modalities=("emotion",)) for s in ("train", "test"))
        preds = {n: predict_baseline(n, train, test, k=k, seed=0, data_root=out / "data") for n in names}
        table = evaluate_methods(preds, test, realism=False, cues=item_cues(out / "data", "test"), progress=progress)
        stored = {
            n: {"variant": n, "seed": 0, "metrics": table["methods"][n], "items": table["items"][n]} for n in names
        }
        atomic_write_json(done, stored)
    return {n: [stored[n]] for n in names}


def is_online(name: str) -> bool:
    """A method of the frame-causal online track (REACT task 2); the baselines are offline."""
    return name.endswith(ONLINE_SUFFIX)


def contrast_pairs(names: tuple[str, ...]) -> list[tuple[str, str]]:
    """Per track, its ReactDiff − every other method of that track present, learned ones first."""
    tracks = {OURS: [n for n in names if not is_online(n)], OURS + ONLINE_SUFFIX: [n for n in names if is_online(n)]}
    return [(ours, n) for ours, members in tracks.items() if ours in members for n in members if n != ours]


def claims(summaries: Mapping[str, dict], contrasts: Mapping[tuple[str, str], dict]) -> list[dict]:
    """The issue's claims, each ``{"claim", "test", "holds": True | False | None, "result"}`` (None: not measured)."""
    beats = [_beats(other, contrasts.get((OURS, other))) for other in ("Trans-VAE", OFFICIAL)]
    return _regression_claims(summaries, contrasts) + beats


def _beats(other: str, d: Mapping[str, stats.Estimate] | None) -> dict:
    """ReactDiff better than ``other`` on both appropriateness metrics (paired CIs)."""
    claim, test = f"ReactDiff beats {other} on FRCorr and FRDist", "Δ FRCorr CI above 0 and Δ FRDist CI below 0"
    if d is None:
        return _claim(claim, test, None, "not measured")
    holds = d["FRCorr"].ci[0] > 0 and d["FRDist"].ci[1] < 0
    return _claim(claim, test, holds, f"Δ FRCorr {cell(d['FRCorr'])}, Δ FRDist {cell(d['FRDist'])}")


def _regression_claims(summaries: Mapping[str, dict], contrasts: Mapping[tuple[str, str], dict]) -> list[dict]:
    """Non-inferior FRCorr to Regression (5 % margin), and FRDiv > 0 only for ReactDiff."""
    out = []
    pair = contrasts.get((OURS, "Regression"))
    if pair is None:
        out.append(_claim("non-inferior FRCorr to Regression", "needs ReactDiff and Regression", None, "not measured"))
        out.append(_claim("only ReactDiff has FRDiv > 0", "needs ReactDiff and Regression", None, "not measured"))
        return out
    d, margin = pair["FRCorr"], NON_INFERIORITY * abs(summaries["Regression"]["FRCorr"].mean)
    out.append(
        _claim(
            "ReactDiff's FRCorr is non-inferior to Regression's",
            f"lower 95 % bound of Δ FRCorr (ReactDiff − Regression) > −{NON_INFERIORITY * 100:.0f} % "
            "of Regression's FRCorr",
            d.ci[0] > -margin,
            f"Δ {cell(d)}, margin −{margin:.3f}",
        )
    )
    ours, reg = summaries[OURS]["FRDiv"], summaries["Regression"]["FRDiv"]
    out.append(
        _claim(
            "of ReactDiff and Regression, only ReactDiff has FRDiv > 0",
            "ReactDiff's FRDiv CI excludes 0; Regression's FRDiv CI does not",
            ours.ci[0] > 0 and not reg.ci[0] > 0,
            f"ReactDiff {cell(ours, 4)}, Regression {cell(reg, 4)}",
        )
    )
    return out


def _claim(claim: str, test: str, holds: bool | None, result: str) -> dict:
    return {"claim": claim, "test": test, "holds": holds, "result": result}


def compare_markdown(preset: str, summaries: dict, contrasts: dict, seeds: dict, found: list[dict], info: dict) -> str:
    """The methods table, the paired differences and the claims."""
    columns = columns_of(summaries)
    online = {n: e for n, e in summaries.items() if is_online(n)}
    offline = {n: e for n, e in summaries.items() if not is_online(n)}
    online_rows = [
        "",
        "## Methods, online track (REACT task 2)",
        "",
        "Frame-causal: listener frame t from speaker frames ≤ t only (causal encoders and denoiser, no speaker "
        "frames after the window: `configs/stage{1,2}_online.yaml`'s changes on this preset). The models see "
        "less than the offline ones; compare them with each other.",
        "",
        *estimates_rows(online, seeds, columns, "method"),
    ]
    verdict = {True: "**holds**", False: "**does not hold**", None: "not measured"}
    claim_rows = ["| claim | test | result |", "|---|---|---|"] + [
        f"| {c['claim']} | {c['test']} | {verdict[c['holds']]}: {c['result']} |" for c in found
    ]
    return "\n".join(
        [
            f"# ReactDiff vs learned competitors and baselines ({preset} preset): test split",
            "",
            "Every learned method trains both stages from scratch on the same world with the same step budget and "
            "seeds, and is sampled with K reactions per test item by the same sampler; the baselines are scored on "
            "the same items. Values: mean over items (and training seeds) [95 % cluster-bootstrap CI over the "
            "appropriate sets]; FRCorr and FRDist are sums over K (higher FRCorr, lower FRDist, higher FRDiv are "
            "better); cue response is the world's audio-only diagnostic.",
            "",
            "## Methods, offline (REACT task 1)",
            "",
            *estimates_rows(offline, seeds, columns, "method"),
            *(online_rows if online else []),
            "",
            "## Paired differences",
            "",
            "Item-by-item A − B of the seed-averaged scores. FRDist: a negative Δ means A is better.",
            "",
            *contrast_rows(contrasts, columns),
            "",
            "## Claims",
            "",
            *claim_rows,
            "",
            provenance_markdown(info),
            "",
        ]
    )


def run_compare(
    preset: str = "default",
    out: str | Path = "runs/compare",
    seeds: int = 3,
    competitors: tuple[str, ...] | None = None,
    world_seed: int = 0,
    progress: bool = True,
) -> str:
    """Train and evaluate every learned competitor with ``seeds`` seeds, score the baselines,
    write ``compare.md``, ``compare.json`` and ``compare.png`` to ``out``; returns the markdown.

    Resumable: finished runs are read back from their ``eval.json``.
    """
    out, names = Path(out), tuple(competitors or COMPETITORS)
    unknown = sorted(set(names) - set(COMPETITORS))
    if unknown:
        raise UserError(f"unknown competitor(s) {unknown}: choose from {list(COMPETITORS)}")
    if seeds < 1:
        raise UserError(f"--seeds {seeds}: give at least 1 training seed")
    jobs = [(n, s) for n in names for s in range(seeds)]
    runs: dict[str, list[dict]] = {n: [] for n in names}
    record = FIGURES / "compare_runs" if preset == "default" else None
    for name, seed in tqdm(jobs, desc="compare runs", disable=not progress):
        runs[name].append(run_variant(preset, out, name, COMPETITORS[name], seed, world_seed, progress, record))
    k = load_config(CONFIGS / f"stage2_{preset}.yaml").sample.k
    runs |= run_baselines(out, BASELINE_ROWS, k, progress)
    labels = stats.clusters(load_split(out / "data", "test", modalities=("emotion",)).neighbours)
    summaries = {n: summarise(r, labels) for n, r in runs.items()}
    contrasts = {(a, b): contrast(runs[a], runs[b], labels) for a, b in contrast_pairs(tuple(runs))}
    found = claims(summaries, contrasts)
    info = provenance({n: runs[n][0]["config"] for n in names}, list(range(seeds)), out / "data")
    md = compare_markdown(preset, summaries, contrasts, {n: len(r) for n, r in runs.items()}, found, info)
    report = {
        "methods": {n: {k: e.to_dict() for k, e in s.items()} for n, s in summaries.items()},
        "learned": list(names),
        "contrasts": {f"{a} - {b}": {k: e.to_dict() for k, e in c.items()} for (a, b), c in contrasts.items()},
        "claims": found,
        "provenance": info,
    }
    points = {n: {m: (s[m].mean, *s[m].ci) for m in ("FRCorr", "FRDist", "FRDiv")} for n, s in summaries.items()}
    folders = [out] + ([FIGURES] if preset == "default" and competitors is None else [])
    for folder in folders:
        atomic_write_text(folder / "compare.md", md)
        atomic_write_json(folder / "compare.json", report)
        save_figure(appropriateness_diversity(points, learned=names), folder / "compare.png")
    return md


def cli_compare(args) -> int:
    """``python -m reactdiff_lite compare --preset default --out DIR --seeds 3 [--competitors ...]``."""
    competitors = tuple(args.competitors) if args.competitors else None
    md = run_compare(args.preset, args.out, args.seeds, competitors, args.seed)
    print(md)
    print(f"wrote {Path(args.out) / 'compare.md'}, compare.json and compare.png")
    return 0
