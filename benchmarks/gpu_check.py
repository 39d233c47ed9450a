"""One-shot GPU check (run by ``benchmarks/gpu_check.sh``): tests, training, sampling and
metric speed on one CUDA device in under 5 minutes, all numbers in one JSON file.

Steps, each in its own process with a time limit (a step that cannot run is skipped and
the JSON says why):

1. ``tests``: the CUDA-marked tests (``pytest -m gpu tests/test_metrics_torch.py``: the
   torch metric engine on CUDA equals the numba kernels);
2. ``stage1`` / ``stage2``: ``--steps`` optimiser steps of the paper config's autoencoder
   and latent diffusion (bf16 autocast as in training, ``optim.amp``), clips/s and peak
   memory (``benchmarks/train_speed.py``);
3. ``sampling``: K = 10 reactions of 750 frames (a REACT test clip) with DDIM-10 and
   DDIM-20, reactions/s (``train_speed.bench_sampling``);
4. ``metrics``: ``benchmarks/metrics_speed.py --bar`` with the torch engine on CUDA (the
   official tslearn timing is skipped where tslearn is missing); ``metrics_react``: the
   same at a REACT-like density (24 items, K = 10, 20 neighbours: 4800 pairs, enough to
   fill the GPU, so its per-pair time is the one to project to REACT 2024's size).

No dataset is needed: the synthetic world generator writes wav/mp4 through soundfile and
PyAV, which the bare GPU machines lack, so training and sampling run on in-memory tensors
with the data's shapes and dtypes (the cost does not depend on the values), as
``train_speed.py`` does.

``--dry-run`` runs every step on the CPU at toy sizes (default config, 2 steps, 50
frames) to check the plumbing; its numbers are not GPU numbers. ``--block soundfile,av``
hides modules from the step processes, to rehearse a bare machine.

Usage::

    python benchmarks/gpu_check.py [--out gpu_check.json] [--steps 200] [--dry-run] [--block MODS]
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
# modules the steps import: (module, pip distribution)
NEEDED = [("torch", "torch"), ("numba", "numba"), ("numpy", "numpy"), ("einops", "einops"), ("yaml", "pyyaml")]
NEEDED += [("tqdm", "tqdm"), ("torchaudio", "torchaudio"), ("pytest", "pytest")]


def missing_modules() -> list[str]:
    """Distributions of :data:`NEEDED` whose module does not import here."""
    out = []
    for module, dist in NEEDED:
        try:
            importlib.import_module(module)
        except Exception:  # ImportError, or a broken binary wheel
            out.append(dist)
    return out


def environment() -> dict:
    """Python, torch, CUDA device, numba, and what is missing."""
    import torch

    env = {"python": sys.version.split()[0], "torch": torch.__version__, "cuda": torch.cuda.is_available()}
    if env["cuda"]:
        env["device"] = torch.cuda.get_device_name(0)
        env["bf16"] = torch.cuda.is_bf16_supported()
    try:
        import numba

        env["numba"] = numba.__version__
    except ImportError:
        env["numba"] = None
    env["missing"] = missing_modules()
    env["cpus"] = os.cpu_count()
    return env


# ------------------------------------------------------------------------ step processes
def worker(module: str, func: str, args_json: str, out: str) -> None:
    """Child process: ``module.func(*args)`` from benchmarks/, its result as JSON in ``out``."""
    sys.path.insert(0, str(BENCH))
    result = getattr(importlib.import_module(module), func)(*json.loads(args_json))
    Path(out).write_text(json.dumps(result))


def block_dir(names: list[str]) -> str | None:
    """A folder with a ``sitecustomize.py`` that makes ``names`` fail to import."""
    if not names:
        return None
    folder = tempfile.mkdtemp(prefix="gpu_check_block_")
    lines = ["import sys"] + [f"sys.modules[{n!r}] = None  # gpu_check --block" for n in names]
    Path(folder, "sitecustomize.py").write_text("\n".join(lines) + "\n")
    return folder


def run_step(cmd: list[str], timeout: float, blocked: str | None, out: Path | None = None) -> dict:
    """Run a step's command with a time limit: status ok/failed/timeout, seconds, result."""
    env = dict(os.environ)
    paths = [p for p in (blocked, str(ROOT), env.get("PYTHONPATH")) if p]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, timeout=timeout, capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "reason": f"over its {timeout:.0f} s limit", "seconds": timeout}
    step = {"seconds": round(time.perf_counter() - start, 2), "status": "ok" if proc.returncode == 0 else "failed"}
    if proc.returncode != 0:
        step["reason"] = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
    if out is not None and out.exists():
        step["result"] = json.loads(out.read_text())
    elif proc.returncode == 0:
        step["output"] = proc.stdout.strip().splitlines()[-3:]
    return step


def call(module: str, func: str, args: list, timeout: float, blocked: str | None) -> dict:
    """:func:`run_step` of ``module.func(*args)`` in a fresh process (its own peak memory)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp, "result.json")
        cmd = [sys.executable, str(Path(__file__)), "--worker", module, func, json.dumps(args), str(out)]
        return run_step(cmd, timeout, blocked, out)


# ------------------------------------------------------------------------------- steps
def plan(args, cuda: bool) -> dict:
    """Each step's command (or the reason it is skipped) for a GPU run or a CPU dry run."""
    device = "cuda" if cuda and not args.dry_run else "cpu"
    config = "default" if args.dry_run else "paper"
    steps = 2 if args.dry_run else args.steps
    frames, k = (50, 2) if args.dry_run else (750, 10)
    metric_args = ["--bar", "--torch", "cuda", "--repeat", "1"]
    react_args = ["--items", "24", "--k", "10", "--neighbours", "20", "--torch", "cuda", "--repeat", "1"]
    if args.dry_run:
        metric_args = ["--items", "3", "--k", "1", "--neighbours", "2", "--frames", "60", "--torch", "cpu"]
        metric_args += ["--torch-cpu-pairs", "2", "--repeat", "1", "--pred", "random"]
        react_args = [*metric_args[:6], "--frames", "80", *metric_args[8:]]
    gpu_needed = None if cuda or args.dry_run else "no CUDA device (torch.cuda.is_available() is False)"
    return {
        "tests": ("pytest", ["-q", "-m", "gpu", "tests/test_metrics_torch.py", "-p", "no:cacheprovider"], 45),
        "stage1": gpu_needed or ("train_speed", "bench_stage1", [config, device, steps, 8], 60),
        "stage2": gpu_needed or ("train_speed", "bench_stage2", [config, device, steps, 8], 60),
        "sampling": gpu_needed or ("train_speed", "bench_sampling", [config, device, frames, k, False], 45),
        "metrics": gpu_needed or ("metrics_speed", metric_args, 45),
        "metrics_react": gpu_needed or ("metrics_speed", react_args, 45),
    }


def run_plan(steps: dict, env: dict, blocked: str | None) -> dict:
    """Run the planned steps in order; skip the ones whose requirements are missing."""
    results = {}
    for name, spec in steps.items():
        print(f"[gpu_check] {name} ...", flush=True)
        if isinstance(spec, str):
            results[name] = {"status": "skipped", "reason": spec}
        elif name == "tests" and "pytest" in env["missing"]:
            results[name] = {"status": "skipped", "reason": "pytest is missing (bring its wheels in wheels/)"}
        elif name in ("stage1", "stage2", "sampling") and "torchaudio" in env["missing"]:
            results[name] = {"status": "skipped", "reason": "torchaudio is missing (the speaker encoder needs it)"}
        elif name == "tests":
            results[name] = run_step([sys.executable, "-m", "pytest", *spec[1]], spec[2], blocked)
        elif name.startswith("metrics"):
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp, "metrics.json")
                cmd = [sys.executable, str(BENCH / "metrics_speed.py"), *spec[1], "--json", str(out)]
                results[name] = run_step(cmd, spec[2], blocked, out)
        else:
            results[name] = call(*spec, blocked)
        print(f"[gpu_check] {name}: {results[name]['status']} {results[name].get('reason', '')}", flush=True)
    return results


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "gpu_check.json")
    ap.add_argument("--steps", type=int, default=200, help="timed optimiser steps per training stage")
    ap.add_argument("--dry-run", action="store_true", help="CPU, toy sizes: checks the plumbing, not a GPU number")
    ap.add_argument(
        "--block", default="", help="comma-separated modules hidden from the steps (rehearse a bare machine)"
    )
    ap.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(*args.worker)
    blocked_names = [n for n in args.block.split(",") if n]
    env = environment()
    env["missing"] = sorted(set(env["missing"]) | {d for m, d in NEEDED if m in blocked_names})
    print(f"[gpu_check] {json.dumps(env)}", flush=True)
    if not env["cuda"] and not args.dry_run:
        print("[gpu_check] no CUDA device: the GPU steps are skipped (use --dry-run to exercise them on the CPU)")
    start = time.perf_counter()
    results = run_plan(plan(args, env["cuda"]), env, block_dir(blocked_names))
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "dry_run": args.dry_run,
        "note": "CPU dry run at toy sizes: not GPU numbers" if args.dry_run else "measured on the device above",
        "environment": env,
        "steps": results,
        "total_s": round(time.perf_counter() - start, 1),
    }
    args.out.write_text(json.dumps(report, indent=1))
    print(f"[gpu_check] done in {report['total_s']} s; numbers in {args.out}")


if __name__ == "__main__":
    main()
