"""`python -m reactdiff_lite demo --preset smoke` end to end (about 20 s on 2 quiet cores)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from reactdiff_lite.cli import main
from reactdiff_lite.demo import NON_ORACLE, quality_bar

ROWS = [
    "ReactDiff",
    "ReactDiff (binary AU)",
    "ReactDiff (s = 1, no guidance)",
    "GT",
    "B_Random",
    "B_Mime",
    "B_MeanSeq",
    "B_MeanFr",
    "NN",
    "NN_window",
    "Oracle",
]
METRICS = ["FRCorr", "FRDist", "FRDiv", "FRVar", "FRDvs", "FRSyn"]


@pytest.mark.timeout(600)
def test_demo_smoke_end_to_end(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--preset", "smoke", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    provenance = results.pop("provenance")
    assert set(provenance) == {"commit", "config_hash", "generator_version", "seeds", "torch", "date"}
    assert set(results) == set(ROWS)
    for row in results.values():
        assert set(METRICS) <= set(row) and all(np.isfinite(row[m]) for m in METRICS)
        for metric in ("FRCorr", "FRDist", "FRDiv"):
            lo, hi = row["ci"][metric]
            assert lo <= row[metric] <= hi
    binary = results["ReactDiff (binary AU)"]
    assert binary["FRVar"] != results["ReactDiff"]["FRVar"]  # the same reactions, AUs thresholded
    # sanity anchors of the metric definitions, whatever the model learned
    assert results["GT"]["FRDist"] == 0 and results["GT"]["FRDiv"] == 0
    assert results["B_Random"]["FRDiv"] == pytest.approx(1 / 6, abs=0.01)
    assert results["Oracle"]["FRCorr"] > results["B_Random"]["FRCorr"]
    assert results["ReactDiff"]["FRDiv"] > 0  # different noise, different reactions
    with np.load(out / "preds.npz") as preds:
        assert preds["emotion"].shape[1:] == (10, 150, 25) and preds["tdmm"].shape[1:] == (10, 150, 58)
    md = (out / "results.md").read_text()
    assert "| ReactDiff |" in md and "Quality bar, ReactDiff (binary AU)" in md and "Wall time" in md
    assert "Provenance: commit" in md and "conditional on one training seed" in md
    run = json.loads((out / "run.json").read_text())
    assert run["quality"]["ReactDiff"] == json.loads(json.dumps(quality_bar(results)))
    assert run["quality"]["passed"] == (
        run["quality"]["ReactDiff"]["passed"] and run["quality"]["ReactDiff (binary AU)"]["passed"]
    )
    for name in ("reactions_faces.png", "au_va_curves.png", "loss_curves.png", "diversity_vs_steps.png"):
        assert (out / "figures" / name).stat().st_size > 10_000, name
    for stage in ("stage1", "stage2"):
        assert (out / stage / "best.pt").exists() and (out / stage / "log.jsonl").exists()


def test_quality_bar_logic():
    base = {m: {"FRCorr": 1.0, "FRDist": 100.0, "FRDiv": 0.0} for m in NON_ORACLE}
    good = {
        **base,
        "ReactDiff": {"FRCorr": 2.0, "FRDist": 90.0, "FRDiv": 0.03},
        "Oracle": {"FRCorr": 4.0, "FRDiv": 0.02},
    }
    q = quality_bar(good)
    assert q["passed"] and q["FRCorr_ratio"] == 0.5 and q["FRDiv_ratio"] == pytest.approx(1.5)
    too_diverse = {**good, "ReactDiff": {**good["ReactDiff"], "FRDiv": 0.05}}
    assert not quality_bar(too_diverse)["passed"]
    loses = {**good, "NN": {"FRCorr": 1.0, "FRDist": 80.0, "FRDiv": 0.0}}
    q = quality_bar(loses)
    assert not q["passed"] and q["beats"]["NN"] == {"FRCorr": True, "FRDist": False}
