"""`python -m reactdiff_lite select`: options scored on val against the default, by a fixed rule."""

from __future__ import annotations

import numpy as np
import pytest

from reactdiff_lite import selection
from reactdiff_lite.cli import main


def test_verdict_needs_a_paired_interval_above_the_default():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(8), 4)  # 8 appropriate sets of 4 items
    base = rng.normal(1.0, 0.1, 32)
    noise = rng.normal(0.0, 0.05, 32)
    rows = {
        "a": {"items": {"FRCorr": base}},
        "b": {"items": {"FRCorr": base + noise - noise.mean()}},  # noise around the default, mean 0
        "c": {"items": {"FRCorr": base + 0.2 + rng.normal(0.0, 0.01, 32)}},  # clearly better
    }
    line, diffs, pick = selection.verdict({k: rows[k] for k in ("a", "b")}, "a", labels)
    assert line.startswith("default **a** stands") and diffs["a"].mean == 0.0 and pick == "a"
    line, diffs, pick = selection.verdict(rows, "a", labels)
    assert line.startswith("val prefers **c**") and diffs["c"].ci[0] > 0.15 and pick == "c"


def test_changes_together_merge_sampling_and_training_options(tmp_path, monkeypatch):
    """``score_recipe`` retrains stage 2 once with every training change and samples with every sampling change."""
    seen = {}
    monkeypatch.setattr(selection, "preset_configs", lambda *args: seen.update(extra=args[-1]) or (None, "cfg"))
    monkeypatch.setattr(selection, "train_once", lambda cfg: f"{cfg}/best.pt")
    monkeypatch.setattr(selection, "load_model", lambda best: f"model from {best}")
    monkeypatch.setattr(selection, "score", lambda *args: seen.update(score=args) or {"metrics": {}, "items": {}})
    changes = {
        "DDIM steps n": "5",
        "AU output": "binary (p > 0.5)",
        "denoiser width": "128",
        "speaker encoder": "trainable",
    }
    selection.score_recipe("smoke", tmp_path, tmp_path / "base", "base model", changes, 0, False)
    model, _, label, overrides, seed, binarize = seen["score"]
    assert model == "model from cfg/best.pt" and overrides == {"steps": 5} and binarize is True
    assert label == "5 + binary (p > 0.5) + 128 + trainable"
    assert seen["extra"][:2] == ("diffusion.denoiser.dim=128", "stage2.speaker_encoder=trainable")
    seen.clear()
    selection.score_recipe("smoke", tmp_path, tmp_path / "base", "base model", {"guidance s": "3"}, 0, False)
    assert seen["score"][0] == "base model" and seen["score"][3] == {"guidance": 3.0} and "extra" not in seen


def test_changes_together_are_cached_until_the_changes_differ(tmp_path):
    calls = []

    def make():
        calls.append(1)
        return {"metrics": {"FRCorr": 1.0}, "items": {}}

    first = selection.combined(tmp_path, {"a": "x", "b": "y"}, make)
    assert selection.combined(tmp_path, {"a": "x", "b": "y"}, make) == first == {"x + y": first["x + y"]}
    assert len(calls) == 1
    selection.combined(tmp_path, {"a": "x", "b": "z"}, make)
    assert len(calls) == 2


@pytest.mark.timeout(600)
def test_smoke_selection_scores_options_on_val_and_resumes(tmp_path, monkeypatch):
    out = tmp_path / "select"
    assert main(["select", "--preset", "smoke", "--out", str(out), "--groups", "guidance s", "prediction"]) == 0
    md = (out / "selection.md").read_text()
    assert "val split, never test" in md and "## guidance s" in md and "## prediction" in md
    assert "| 2 (default) |" in md and "| v (default) |" in md and "| eps |" in md
    assert (out / "prediction" / "eps" / "stage2" / "best.pt").exists()  # stage 2 retrained on the base stage 1
    assert not (out / "prediction" / "eps" / "stage1").exists()

    def no_scoring(*args, **kwargs):
        raise AssertionError("a scored option was scored again")

    monkeypatch.setattr(selection, "score", no_scoring)
    again = selection.run_selection("smoke", out, groups=("guidance s", "prediction"), progress=False)
    assert again.split("Provenance")[0] == md.split("Provenance")[0]
