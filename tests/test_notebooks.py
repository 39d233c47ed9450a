"""Every numbered notebook is a regression test.

- committed clean: no outputs, no execution counts, no widget state;
- its first code cell is tagged ``parameters`` and defines SMOKE, SEED and OUT_DIR;
- it runs top to bottom under papermill with SMOKE=True, INTERACTIVE=False;
- what it recorded in ``OUT_DIR/metrics.json`` matches ``tests/references/<name>.json``.

Refresh the references after an intended change with ``make references`` (it sets
REACTDIFF_REFRESH_REFERENCES=1 and shows the diff).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
REFERENCES = Path(__file__).parent / "references"
REFRESH = os.environ.get("REACTDIFF_REFRESH_REFERENCES") == "1"
DEFAULT_RTOL, DEFAULT_ATOL = 1e-4, 1e-6


def _ids(paths):
    return [p.stem for p in paths]


def _first_code_cell(nb):
    return next(c for c in nb.cells if c.cell_type == "code")


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks/[0-9][0-9]_*.ipynb found"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_committed_clean(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs; run nbstripout"
    assert "widgets" not in nb.metadata, f"{path.name}: widget state saved in metadata"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_parameters_cell(path):
    cell = _first_code_cell(nbformat.read(path, as_version=4))
    assert "parameters" in cell.metadata.get("tags", []), f"{path.name}: first code cell not tagged 'parameters'"
    for name in ("SMOKE", "SEED", "OUT_DIR"):
        assert any(line.split("=")[0].strip() == name for line in cell.source.splitlines()), \
            f"{path.name}: parameters cell does not define {name}"


def compare_metrics(name: str, got: dict, reference: dict) -> list[str]:
    """Differences between recorded metrics and a reference file, as messages.

    A reference file is ``{"values": {...}, "rtol": r, "atol": a, "tolerances": {key: [rtol, atol]}}``.
    """
    values = reference["values"]
    problems = [f"{name}: missing metric {k!r}" for k in values if k not in got]
    problems += [f"{name}: new metric {k!r} has no reference (run `make references`)" for k in got if k not in values]
    for key, want in values.items():
        if key not in got:
            continue
        have = got[key]
        if isinstance(want, (int, float)) and not isinstance(want, bool):
            rtol, atol = reference.get("tolerances", {}).get(
                key, (reference.get("rtol", DEFAULT_RTOL), reference.get("atol", DEFAULT_ATOL)))
            if not isinstance(have, (int, float)) or not math.isclose(have, want, rel_tol=rtol, abs_tol=atol):
                problems.append(f"{name}: {key} = {have!r}, reference {want!r} (rtol {rtol}, atol {atol})")
        elif have != want:
            problems.append(f"{name}: {key} = {have!r}, reference {want!r}")
    return problems


@pytest.mark.timeout(300)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_execute(path, tmp_path):
    import papermill

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    papermill.execute_notebook(
        str(path), str(tmp_path / path.name),
        parameters={"SMOKE": True, "INTERACTIVE": False, "OUT_DIR": str(out_dir)},
        kernel_name="python3", cwd=str(path.parent), progress_bar=False,
    )
    metrics_file = out_dir / "metrics.json"
    assert metrics_file.exists(), f"{path.name} recorded nothing in OUT_DIR/metrics.json"
    got = json.loads(metrics_file.read_text())
    assert got, f"{path.name} recorded an empty metrics.json"

    ref_file = REFERENCES / f"{path.stem}.json"
    if REFRESH:
        old = json.loads(ref_file.read_text()) if ref_file.exists() else {}
        old["values"] = got
        ref_file.write_text(json.dumps(old, indent=2, sort_keys=True) + "\n")
        return
    assert ref_file.exists(), f"no reference {ref_file.relative_to(ROOT)}: run `make references`"
    problems = compare_metrics(path.name, got, json.loads(ref_file.read_text()))
    assert not problems, "\n".join(problems)


def test_compare_metrics_catches_drift():
    """The comparison itself: a changed value, a missing key and a new key all fail."""
    ref = {"values": {"loss": 1.0, "shape": "(2, 3)"}, "rtol": 1e-4}
    assert compare_metrics("nb", {"loss": 1.00001, "shape": "(2, 3)"}, ref) == []
    assert compare_metrics("nb", {"loss": 1.01, "shape": "(2, 3)"}, ref)
    assert compare_metrics("nb", {"loss": 1.0}, ref)
    assert compare_metrics("nb", {"loss": 1.0, "shape": "(2, 3)", "extra": 2}, ref)
    assert compare_metrics("nb", {"loss": 1.0, "shape": "(2, 4)"}, ref)
