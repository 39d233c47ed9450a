"""`python -m reactdiff_lite ablate` on the smoke preset: one seed, two variants, resumable."""

from __future__ import annotations

import json

import numpy as np
import pytest

from reactdiff_lite import ablate, experiment
from reactdiff_lite.cli import main

VARIANTS = ["MMT", "MMT, shuffled audio"]


@pytest.mark.timeout(600)
def test_smoke_ablation_two_variants_then_resume(tmp_path, monkeypatch):
    out = tmp_path / "ablate"
    assert main(["ablate", "--preset", "smoke", "--out", str(out), "--seeds", "1", "--variants", *VARIANTS]) == 0
    md = (out / "ablation.md").read_text()
    assert "| MMT | 1 |" in md and "| MMT, shuffled audio | 1 |" in md
    assert "| MMT − MMT, shuffled audio |" in md and "Provenance: commit" in md
    report = json.loads((out / "ablation.json").read_text())
    mmt = report["variants"]["MMT"]["FRCorr"]
    assert mmt["ci"][0] <= mmt["mean"] <= mmt["ci"][1] and mmt["seeds"] == 1
    first = {v: json.loads((out / experiment.slug(v) / "seed0" / "eval.json").read_text()) for v in VARIANTS}
    assert first["MMT, shuffled audio"]["config"]["data"]["shuffle_audio"] is True
    assert not np.allclose(first["MMT"]["items"]["FRCorr"], first["MMT, shuffled audio"]["items"]["FRCorr"])

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(experiment, "train_preset", no_training)
    again = ablate.run_ablation("smoke", out, seeds=1, variants=tuple(VARIANTS), progress=False)
    assert again.split("Provenance")[0] == md.split("Provenance")[0]  # read back, not retrained


def test_a_finished_run_is_not_trained_again_but_a_changed_one_is(tmp_path, monkeypatch):
    from reactdiff_lite import train as train_module

    train_module.train_preset("smoke", tmp_path / "run", progress=False)
    stages = []
    original = train_module.train
    monkeypatch.setattr(train_module, "train", lambda cfg, resume=False: stages.append(cfg.stage) or original(cfg))
    train_module.train_preset("smoke", tmp_path / "run", progress=False)
    assert stages == []  # both stages finished with the same config: read back
    train_module.train_preset("smoke", tmp_path / "run", progress=False, extra=("diffusion.cond_drop_prob=0.2",))
    assert stages == [2]  # stage 2 changed, stage 1 did not


def test_a_committed_record_resumes_a_run_only_for_its_recipe(tmp_path, monkeypatch):
    """``run_variant(..., record=)`` reads a kept result in a fresh experiment folder (no training),
    unless it was made with another recipe (then the run trains)."""
    from reactdiff_lite.train import preset_configs, recipe_hash

    def no_training(*args, **kwargs):
        raise AssertionError("trained")

    monkeypatch.setattr(experiment, "train_preset", no_training)
    extra, record, out = ("data.shuffle_audio=true",), tmp_path / "record", tmp_path / "fresh"
    folder = out / experiment.slug("MMT, shuffled audio") / "seed1"
    recipe = recipe_hash(*preset_configs("smoke", folder, 1, 0, out / "data", False, extra))
    kept = record / experiment.slug("MMT, shuffled audio") / "seed1.json"
    kept.parent.mkdir(parents=True)
    kept.write_text(json.dumps({"variant": "MMT, shuffled audio", "seed": 1, "recipe": recipe}))
    got = experiment.run_variant("smoke", out, "MMT, shuffled audio", extra, 1, 0, False, record)
    assert got["recipe"] == recipe and not folder.exists()
    with pytest.raises(AssertionError, match="trained"):  # same name and seed, another recipe
        experiment.run_variant("smoke", out, "MMT, shuffled audio", (), 1, 0, False, record)
