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
    line, diffs = selection.verdict({k: rows[k] for k in ("a", "b")}, "a", labels)
    assert line.startswith("default **a** stands") and diffs["a"].mean == 0.0
    line, diffs = selection.verdict(rows, "a", labels)
    assert line.startswith("val prefers **c**") and diffs["c"].ci[0] > 0.15


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
