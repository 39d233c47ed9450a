"""Every numbered notebook is a regression test.

- committed clean: no outputs, no execution counts, no widget state;
- its first code cell is tagged ``parameters`` and defines SMOKE, SEED and OUT_DIR;
- its second code cell draws the course roadmap with the notebook highlighted;
- 02–09 have at least two exercises, each with a collapsed solution cell and a check;
- it runs top to bottom under papermill with SMOKE=True, SOLUTIONS=True, INTERACTIVE=False;
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
    dirty = [
        i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count"))
    ]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs; run nbstripout"
    assert "widgets" not in nb.metadata, f"{path.name}: widget state saved in metadata"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_parameters_cell(path):
    cell = _first_code_cell(nbformat.read(path, as_version=4))
    assert "parameters" in cell.metadata.get("tags", []), f"{path.name}: first code cell not tagged 'parameters'"
    for name in ("SMOKE", "SEED", "OUT_DIR"):
        assert any(line.split("=")[0].strip() == name for line in cell.source.splitlines()), (
            f"{path.name}: parameters cell does not define {name}"
        )


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
                key, (reference.get("rtol", DEFAULT_RTOL), reference.get("atol", DEFAULT_ATOL))
            )
            if not isinstance(have, (int, float)) or not math.isclose(have, want, rel_tol=rtol, abs_tol=atol):
                problems.append(f"{name}: {key} = {have!r}, reference {want!r} (rtol {rtol}, atol {atol})")
        elif have != want:
            problems.append(f"{name}: {key} = {have!r}, reference {want!r}")
    return problems


def execute_and_check(path: Path, tmp_path: Path, references: Path = REFERENCES, refresh: bool = REFRESH) -> dict:
    """Run ``path`` under papermill (SMOKE) and compare its ``metrics.json`` with
    ``references/<stem>.json``; with ``refresh``, rewrite that reference instead
    (keeping its tolerances). Fails if the notebook recorded nothing."""
    import papermill

    out_dir = tmp_path / "out"
    out_dir.mkdir(parents=True)
    papermill.execute_notebook(
        str(path),
        str(tmp_path / path.name),
        parameters={"SMOKE": True, "SOLUTIONS": True, "INTERACTIVE": False, "OUT_DIR": str(out_dir)},
        kernel_name="python3",
        cwd=str(path.parent),
        progress_bar=False,
    )
    metrics_file = out_dir / "metrics.json"
    assert metrics_file.exists(), f"{path.name} recorded nothing in OUT_DIR/metrics.json"
    got = json.loads(metrics_file.read_text())
    assert got, f"{path.name} recorded an empty metrics.json"

    ref_file = references / f"{path.stem}.json"
    if refresh:
        old = json.loads(ref_file.read_text()) if ref_file.exists() else {}
        old["values"] = got
        ref_file.write_text(json.dumps(old, indent=2, sort_keys=True) + "\n")
        return got
    assert ref_file.exists(), f"no reference {ref_file.name} in {references}: run `make references`"
    problems = compare_metrics(path.name, got, json.loads(ref_file.read_text()))
    assert not problems, "\n".join(problems)
    return got


@pytest.mark.timeout(300)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_execute(path, tmp_path):
    execute_and_check(path, tmp_path)


def test_compare_metrics_catches_drift():
    """The comparison itself: a changed value, a missing key and a new key all fail."""
    ref = {"values": {"loss": 1.0, "shape": "(2, 3)"}, "rtol": 1e-4}
    assert compare_metrics("nb", {"loss": 1.00001, "shape": "(2, 3)"}, ref) == []
    assert compare_metrics("nb", {"loss": 1.01, "shape": "(2, 3)"}, ref)
    assert compare_metrics("nb", {"loss": 1.0}, ref)
    assert compare_metrics("nb", {"loss": 1.0, "shape": "(2, 3)", "extra": 2}, ref)
    assert compare_metrics("nb", {"loss": 1.0, "shape": "(2, 4)"}, ref)


REFERENCE_FILES = sorted(REFERENCES.glob("*.json"))


def test_every_reference_has_its_notebook():
    """A reference whose notebook was renamed or removed would silently stop being checked."""
    stems = {p.stem for p in NOTEBOOKS}
    orphans = [f.name for f in REFERENCE_FILES if f.stem not in stems]
    assert not orphans, f"references without a notebook: {orphans}"


@pytest.mark.parametrize("ref_file", REFERENCE_FILES, ids=_ids(REFERENCE_FILES))
def test_reference_changes_are_caught(ref_file):
    """Each stored reference is well formed and tight: changing any one of its values
    (a number by 5 %, or by 0.05 when it is 0; a string or flag to anything else)
    makes the comparison fail."""
    reference = json.loads(ref_file.read_text())
    values = reference.get("values")
    assert isinstance(values, dict) and values, f"{ref_file.name}: no recorded values"
    unknown = set(reference.get("tolerances", {})) - set(values)
    assert not unknown, f"{ref_file.name}: tolerances for unrecorded keys {sorted(unknown)}"
    assert compare_metrics(ref_file.name, values, reference) == [], f"{ref_file.name}: fails against itself"
    for key, want in values.items():
        if isinstance(want, bool):
            changed = not want
        elif isinstance(want, (int, float)):
            changed = (
                type(want)(want + (0.05 * abs(want) or 0.05))
                if isinstance(want, float)
                else want + max(1, abs(want) // 20)
            )
        else:
            changed = f"{want}!"
        assert compare_metrics(ref_file.name, {**values, key: changed}, reference), (
            f"{ref_file.name}: changing {key} from {want!r} to {changed!r} goes unnoticed; tighten its tolerance"
        )


@pytest.mark.timeout(120)
def test_harness_fails_on_silent_or_drifting_notebooks(tmp_path):
    """The execute path itself: a notebook that records nothing fails, a recorded value
    that differs from its reference fails, and the matching value passes."""

    def notebook(name: str, body: str) -> Path:
        nb = nbformat.v4.new_notebook(
            cells=[
                nbformat.v4.new_code_cell(
                    'SMOKE = False\nSEED = 0\nOUT_DIR = "out"\nINTERACTIVE = True', metadata={"tags": ["parameters"]}
                ),
                nbformat.v4.new_code_cell(body),
            ]
        )
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        path = tmp_path / f"{name}.ipynb"
        nbformat.write(nb, path)
        return path

    refs = tmp_path / "references"
    refs.mkdir()
    (refs / "records.json").write_text(json.dumps({"values": {"x": 0.25, "n": 3}}))
    silent = notebook("silent", "y = 1 + 1")
    records = notebook(
        "records", "from reactdiff_lite.utils import write_metrics\nwrite_metrics(OUT_DIR, x=0.5 * 0.5, n=3)"
    )
    with pytest.raises(AssertionError, match="recorded nothing"):
        execute_and_check(silent, tmp_path / "a", references=refs, refresh=False)
    assert execute_and_check(records, tmp_path / "b", references=refs, refresh=False) == {"x": 0.25, "n": 3}
    (refs / "records.json").write_text(json.dumps({"values": {"x": 0.26, "n": 3}}))
    with pytest.raises(AssertionError, match="x = 0.25, reference 0.26"):
        execute_and_check(records, tmp_path / "c", references=refs, refresh=False)
    # `make references` rewrites the values and keeps hand-set tolerances.
    (refs / "records.json").write_text(json.dumps({"values": {"x": 0.26}, "tolerances": {"x": [0, 1e-3]}}))
    execute_and_check(records, tmp_path / "d", references=refs, refresh=True)
    rewritten = json.loads((refs / "records.json").read_text())
    assert rewritten == {"values": {"x": 0.25, "n": 3}, "tolerances": {"x": [0, 1e-3]}}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_roadmap_opens_every_notebook(path):
    """The course's roadmap is the first thing a notebook shows, right after its parameters."""
    code = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    assert f'roadmap("{path.name[:2]}")' in code[1].source, (
        f"{path.name}: the cell after `parameters` must draw roadmap({path.name[:2]!r})"
    )


EXERCISE_NOTEBOOKS = [p for p in NOTEBOOKS if p.name[:2] >= "02"]


@pytest.mark.parametrize("path", EXERCISE_NOTEBOOKS, ids=_ids(EXERCISE_NOTEBOOKS))
def test_exercises_have_collapsed_solutions_and_checks(path):
    """Two or more exercises, each with a collapsed solution cell that runs only with SOLUTIONS
    (the tests set it True, so solutions cannot rot) and a check that raises only then."""
    nb = nbformat.read(path, as_version=4)
    assert "SOLUTIONS" in _first_code_cell(nb).source, f"{path.name}: parameters cell does not define SOLUTIONS"
    solutions = [c for c in nb.cells if "solution" in c.metadata.get("tags", [])]
    assert len(solutions) >= 2, f"{path.name}: {len(solutions)} exercises, want at least 2"
    for cell in solutions:
        assert cell.metadata.get("jupyter", {}).get("source_hidden") is True, f"{path.name}: solution not collapsed"
        assert cell.source.lstrip().startswith("if SOLUTIONS:"), f"{path.name}: solution runs without SOLUTIONS"
    checks = sum(c.source.count("strict=SOLUTIONS") for c in nb.cells if c.cell_type == "code")
    assert checks >= len(solutions), f"{path.name}: {len(solutions)} solutions but {checks} checks"
