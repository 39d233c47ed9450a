"""`python -m reactdiff_lite compare` on the smoke preset (about a minute), and its claims on made-up numbers."""

from __future__ import annotations

import json

import pytest

from reactdiff_lite import compare, experiment
from reactdiff_lite.cli import main
from reactdiff_lite.stats import Estimate
from reactdiff_lite.train import CONFIGS, load_config, preset_configs
from reactdiff_lite.utils import UserError


@pytest.mark.timeout(600)
def test_smoke_compare_then_resume(tmp_path, monkeypatch):
    out = tmp_path / "compare"
    assert main(["compare", "--preset", "smoke", "--out", str(out), "--seeds", "1"]) == 0
    md = (out / "compare.md").read_text()
    for row in ("| ReactDiff | 1 |", "| Regression | 1 |", "| ReactDiff (official recipe) | 1 |", "| NN_window | 1 |"):
        assert row in md
    assert "| ReactDiff − Regression |" in md and "## Claims" in md and "Provenance: commit" in md
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((out / "compare.json").read_text())
    offline = ["ReactDiff", "Regression", "Trans-VAE", "ReactDiff (official recipe)"]
    assert report["learned"] == offline + ["ReactDiff (online)", "Regression (online)", "Trans-VAE (online)"]
    online_table = md.split("## Methods, online track")[1].split("## Paired")[0]
    assert "| Regression (online) | 1 |" in online_table and "| ReactDiff | 1 |" not in online_table
    assert "| ReactDiff (online) − Trans-VAE (online) |" in md and "| ReactDiff − Trans-VAE (online) |" not in md
    causal = json.loads((out / "trans_vae_online" / "seed0" / "eval.json").read_text())["config"]
    assert causal["stage2"]["objective"] == "transvae" and causal["diffusion"]["denoiser"]["causal"] is True
    assert causal["diffusion"]["denoiser"]["context_after"] == 0
    methods = report["methods"]
    assert methods["Regression"]["FRDiv"]["mean"] == 0 and methods["ReactDiff"]["FRDiv"]["ci"][0] > 0
    for name, row in methods.items():
        assert row["FRCorr"]["ci"][0] <= row["FRCorr"]["mean"] <= row["FRCorr"]["ci"][1], name
    d = report["contrasts"]["ReactDiff - Regression"]["FRCorr"]["mean"]
    assert d == pytest.approx(methods["ReactDiff"]["FRCorr"]["mean"] - methods["Regression"]["FRCorr"]["mean"])
    assert [c["holds"] for c in report["claims"]][1] is True  # only ReactDiff has FRDiv > 0
    regression = json.loads((out / "regression" / "seed0" / "eval.json").read_text())
    assert regression["config"]["stage2"]["objective"] == "regression"
    official = json.loads((out / "reactdiff_official_recipe" / "seed0" / "eval.json").read_text())["config"]
    assert official["autoencoder"]["latent_norm"] == "minmax" and official["diffusion"]["loss"] == "l1"
    assert official["diffusion"]["denoiser"]["speaker_condition"] == "flat" and official["sample"]["steps"] == 20
    assert 0 < methods["ReactDiff (official recipe)"]["FRDiv"]["mean"]  # diverse, from the noise alone
    assert 0 < methods["Trans-VAE"]["FRDiv"]["mean"]  # diverse, from z
    assert [c["holds"] is None for c in report["claims"]] == [False, False, False, False]  # all measured

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(experiment, "train_preset", no_training)
    monkeypatch.setattr(compare, "predict_baseline", no_training)
    again = compare.run_compare("smoke", out, seeds=1, progress=False)
    assert again.split("Provenance")[0] == md.split("Provenance")[0]  # read back, not retrained


def estimate(mean: float, lo: float, hi: float) -> Estimate:
    return Estimate(mean, (lo, hi), seeds=3, seed_std=0.1, clusters=10, resamples=100)


@pytest.mark.parametrize(
    "delta_lo,div_lo,expected",
    [(-0.04, 0.01, [True, True]), (-0.06, 0.01, [False, True]), (-0.04, 0.0, [True, False])],
)
def test_claims_non_inferiority_margin_and_diversity(delta_lo, div_lo, expected):
    """Regression's FRCorr 1.0: the margin is −0.05; ReactDiff's FRDiv must exclude 0, Regression's must not."""
    summaries = {
        "ReactDiff": {"FRCorr": estimate(1.0, 0.9, 1.1), "FRDiv": estimate(0.02, div_lo, 0.03)},
        "Regression": {"FRCorr": estimate(1.0, 0.9, 1.1), "FRDiv": estimate(0.0, 0.0, 0.0)},
    }
    contrasts = {("ReactDiff", "Regression"): {"FRCorr": estimate(0.0, delta_lo, 0.05)}}
    assert [c["holds"] for c in compare.claims(summaries, contrasts)] == [*expected, None, None]
    assert [c["holds"] for c in compare.claims(summaries, {})] == [None, None, None, None]


def test_unknown_competitor_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="unknown competitor"):
        compare.run_compare("smoke", tmp_path, seeds=1, competitors=("Trans-GAN",), progress=False)
    assert list(tmp_path.iterdir()) == []  # nothing trained


def test_online_track_is_the_online_presets(tmp_path):
    """``compare.ONLINE`` on the default preset gives exactly ``configs/stage{1,2}_online.yaml``."""
    data = tmp_path / "data"
    ours = preset_configs("default", tmp_path, 0, 0, data, False, compare.ONLINE)
    common = [f"data.root={data}", "data.preset=default", "data.seed=0", "run.seed=0", "run.progress=false"]
    theirs = tuple(
        load_config(CONFIGS / f"stage{s}_online.yaml", [*common, f"run.out={tmp_path / f'stage{s}'}"]) for s in (1, 2)
    )
    assert ours == theirs
    assert ours[0].autoencoder.causal and ours[1].diffusion.denoiser.causal
