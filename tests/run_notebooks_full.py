"""Run every numbered notebook with ``SMOKE = False`` against the demo's model: ``make notebooks-full``.

Each notebook runs under papermill from ``notebooks/`` (where JupyterLab runs it) with
``SMOKE=False, SOLUTIONS=True, INTERACTIVE=False, OUT_DIR=<out>/<stem>``, and ``CHECKPOINT=<demo>/stage2/best.pt``
where its parameters cell has a ``CHECKPOINT`` (notebook 08 explores the demo's model). The
executed copy is saved in its ``OUT_DIR``. Prints each notebook's wall time and a summary,
writes them to ``<out>/times.json``, and exits 1 if any notebook failed.

Not in CI: the full notebooks take about 20 minutes on 2 cores, after ``make demo`` (only
the notebooks with a ``CHECKPOINT`` need it). Run some of them, or check the harness itself
in SMOKE mode (seconds per notebook)::

    python tests/run_notebooks_full.py 01 07
    python tests/run_notebooks_full.py --smoke 01
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def select(patterns: list[str]) -> list[Path]:
    """The numbered notebooks whose names contain one of ``patterns`` (all when none)."""
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    return [p for p in paths if not patterns or any(pattern in p.stem for pattern in patterns)]


def parameters_for(path: Path, out: Path, smoke: bool, checkpoint: Path) -> dict:
    """Papermill parameters of one notebook; ``CHECKPOINT`` only where its parameters cell has one."""
    import papermill

    parameters = {"SMOKE": smoke, "SOLUTIONS": True, "INTERACTIVE": False, "OUT_DIR": str(out / path.stem)}
    if "CHECKPOINT" in papermill.inspect_notebook(str(path)) and not smoke:
        parameters["CHECKPOINT"] = str(checkpoint)
    return parameters


def run(path: Path, parameters: dict) -> tuple[float, str | None]:
    """Execute ``path``; -> (wall seconds, None or the error as one line)."""
    import papermill

    out_dir = Path(parameters["OUT_DIR"])
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(path),
            str(out_dir / path.name),
            parameters=parameters,
            kernel_name="python3",
            cwd=str(NOTEBOOKS),
            progress_bar=False,
        )
    except papermill.PapermillExecutionError as err:
        return time.perf_counter() - start, f"{err.ename}: {err.evalue}".splitlines()[0]
    except Exception as err:  # noqa: BLE001 (a dead kernel or a timeout: report it, run the others)
        return time.perf_counter() - start, f"{type(err).__name__}: {err}".splitlines()[0]
    return time.perf_counter() - start, None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="run only notebooks whose names contain one of these, e.g. 01 08")
    parser.add_argument("--demo", default="runs/demo", help="the demo's run folder (`make demo`)")
    parser.add_argument("--out", default="runs/notebooks-full", help="one OUT_DIR per notebook under this folder")
    parser.add_argument("--smoke", action="store_true", help="SMOKE=True: check this harness in seconds")
    args = parser.parse_args(argv)

    paths = select(args.notebooks)
    if not paths:
        print(f"notebooks-full: error: no notebook in {NOTEBOOKS} matches {args.notebooks}", file=sys.stderr)
        return 2
    checkpoint = (ROOT / args.demo / "stage2" / "best.pt").resolve()
    out = (ROOT / args.out).resolve()
    plans = {path: parameters_for(path, out, args.smoke, checkpoint) for path in paths}
    if any("CHECKPOINT" in parameters for parameters in plans.values()) and not checkpoint.is_file():
        print(f"notebooks-full: error: no demo model at {checkpoint}: run `make demo` first", file=sys.stderr)
        return 2

    results = {}
    for path, parameters in plans.items():
        print(f"{path.stem}: running (SMOKE={args.smoke}) ...", flush=True)
        seconds, error = run(path, parameters)
        results[path.stem] = {"seconds": round(seconds, 1), "error": error}
        outcome = "ok" if error is None else f"FAILED: {error}"
        print(f"{path.stem}: {outcome} ({seconds:.0f} s)", flush=True)

    out.mkdir(parents=True, exist_ok=True)
    (out / "times.json").write_text(json.dumps({"smoke": args.smoke, "notebooks": results}, indent=2) + "\n")
    failed = [stem for stem, r in results.items() if r["error"]]
    print(f"\n{'notebook':32s} {'time':>7s}  result")
    for stem, r in results.items():
        print(f"{stem:32s} {r['seconds']:6.0f}s  {'ok' if r['error'] is None else r['error']}")
    total = sum(r["seconds"] for r in results.values())
    print(
        f"{len(results) - len(failed)} of {len(results)} notebooks ran (SMOKE={args.smoke}) in {total:.0f} s; "
        f"times in {out / 'times.json'}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
