"""REACT metrics: our numba implementation vs the official approach, same inputs, one process.

The official approach is ``tests/react_reference.py``: tslearn DTW pair by pair and group
by group (the official ``compute_FRD``, without its process pool), per-dimension numpy
CCC and TLCC loops; FRDiv, FRVar and FRDvs with torch as the official code does. Ours is
``reactdiff_lite.metrics``. The script

1. builds REACT-like inputs: listeners with binary AU channels, smooth valence/arousal
   and expression probabilities, each person with their own activity level; ``--pred
   model`` (default) makes each prediction a noisy, time-shifted copy of one appropriate
   listener, as a trained model's output resembles some appropriate reaction; ``--pred
   random`` makes predictions unrelated to any listener (hard for pruning: the
   candidates are about equally far);
2. times FRDist both ways on identical inputs and prints the ratio and the max |difference|:
   ours with all threads and with 1 thread (numba, exact pruning), and the torch
   engine (``device=``, :mod:`reactdiff_lite.metrics_torch`: every pair by an anti-diagonal
   wavefront) on the CPU and, when CUDA is present, on the GPU; the torch CPU path is
   timed on the first items only (``--torch-cpu-pairs``) and scaled per pair, which is
   exact for it (no pruning: the cost is the same for every pair);
3. times every metric's unit of work both ways and projects the full suite onto a
   REACT-2024-sized test set (N = 1614, K = 10, ~20 neighbours per item).

``--pred both`` (default) runs model-like and unrelated predictions in one run. ``--bar``
is the exact setting of issue 13's bar: N = 4 items, K = 10, T = 750, every listener a
neighbour of every item, unrelated predictions uniform on [0, 1) in all 25 columns,
model-like predictions a listener plus Gaussian noise of σ 0.05. Without tslearn (a bare
GPU machine) the official timings are skipped, saying so. ``--json`` writes the numbers.

Usage::

    python benchmarks/metrics_speed.py [--items 24 --k 2 --neighbours 20 --frames 750 --pred both]
    python benchmarks/metrics_speed.py --bar [--json out.json]
    python benchmarks/metrics_speed.py --react-2024 [--pred model]

``--react-2024`` measures instead of projecting: it builds a test set of REACT 2024's size
(N = 1614 items, K = 10, T = 750, 20 neighbours each) and times every metric and
``metrics.evaluate`` on it (about a minute per prediction kind on 2 cores, 3 GB of memory).

Timings are wall-clock on a shared machine: the load average is printed; rerun when quiet.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from reactdiff_lite import metrics
from reactdiff_lite.kernels import default_threads
from reactdiff_lite.schema import AU, AU_NAMES, EMOTION_DIM, FE_NAMES, VA_NAMES

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
try:
    official = importlib.import_module("react_reference")  # the slow reference of the test suite
except ImportError as error:  # no tslearn (bare GPU machine): ours only
    official, OFFICIAL_MISSING = None, str(error)

REACT_2024 = dict(N=1614, K=10, C=20)


def smooth(rng: np.random.Generator, shape: tuple, width: float) -> np.ndarray:
    """Gaussian-smoothed white noise along axis -2, unit standard deviation."""
    T = shape[-2]
    t = np.arange(-3 * int(width), 3 * int(width) + 1)
    kernel = np.exp(-0.5 * (t / width) ** 2)
    x = rng.normal(size=shape[:-2] + (T + len(t) - 1, shape[-1]))
    y = np.apply_along_axis(lambda v: np.convolve(v, kernel, "valid"), -2, x)
    return y / y.std()


def listeners(rng: np.random.Generator, n: int, T: int) -> np.ndarray:
    """(n, T, 25): binary AUs, VA in [-1, 1], FE probabilities. People differ, as in REACT:
    each gets their own AU rates (about 5-35 % active), valence/arousal offsets and
    expressiveness."""
    n_au, n_va, n_fe = len(AU_NAMES), len(VA_NAMES), len(FE_NAMES)
    rate = rng.uniform(0.4, 1.6, (n, 1, n_au))  # AU threshold: lower = more active
    au = (smooth(rng, (n, T, n_au), 12) > rate).astype(np.float32)
    va = np.tanh(rng.normal(0, 0.4, (n, 1, n_va)) + rng.uniform(0.3, 1.0, (n, 1, 1)) * smooth(rng, (n, T, n_va), 25))
    logits = rng.uniform(0.5, 2.0, (n, 1, 1)) * smooth(rng, (n, T, n_fe), 20) + rng.normal(0, 1, (n, 1, n_fe))
    fe = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    return np.concatenate([au, va, fe], -1).astype(np.float32)


def predictions(rng: np.random.Generator, L: np.ndarray, A: np.ndarray, K: int, kind: str) -> np.ndarray:
    """(N, K, T, 25) float32 predictions with continuous AUs."""
    N, T, _ = L.shape
    if kind == "random":
        p = listeners(rng, N * K, T).reshape(N, K, T, EMOTION_DIM)
        p[..., AU] = 1 / (1 + np.exp(-2 * smooth(rng, (N, K, T, len(AU_NAMES)), 12)))
        return p
    out = np.empty((N, K, T, EMOTION_DIM), np.float32)
    for n in range(N):
        for k in range(K):
            j = rng.choice(np.flatnonzero(A[n]))
            base = np.roll(L[j], int(rng.integers(-10, 11)), axis=0)
            out[n, k] = np.clip(base + 0.15 * smooth(rng, (T, EMOTION_DIM), 8), -1, 1)
            out[n, k, :, AU] = np.clip(0.1 + 0.8 * base[:, AU] + 0.15 * smooth(rng, (T, len(AU_NAMES)), 8), 0, 1)
    return out


def neighbour_matrix(rng: np.random.Generator, N: int, C: int) -> np.ndarray:
    """(N, N) 0/1 with the diagonal and C-1 random others per row."""
    A = np.eye(N, dtype=np.int64)
    for n in range(N):
        A[n, rng.choice(np.delete(np.arange(N), n), min(C, N) - 1, replace=False)] = 1
    return A


def best_of(f, repeat: int, cpu: list | None = None) -> tuple[float, object]:
    """Best wall time of ``repeat`` runs (and that run's process CPU time appended to ``cpu``)."""
    times, out = [], None
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        out = f()
        times.append((time.perf_counter() - t, time.process_time() - c))
    wall, used = min(times)
    if cpu is not None:
        cpu.append(used)
    return wall, out


def official_frdist_table(pred, L, A) -> np.ndarray:
    N, K = pred.shape[:2]
    table = np.empty((N, K))
    for n in range(N):
        js = np.flatnonzero(A[n])
        for k in range(K):
            table[n, k] = min(official.dtw_official(pred[n, k], L[j]) for j in js)
    return table


def official_frdiv_frvar(pred: np.ndarray) -> tuple[float, float]:
    """The official compute_s_mse (torch.cdist per item) and compute_FRVar (torch.var)."""
    import torch

    p = torch.from_numpy(pred)
    N, K = p.shape[:2]
    div = 0.0
    for n in range(N):
        flat = p[n].reshape(K, -1)
        div += float(torch.cdist(flat, flat).pow(2).sum() / (K * (K - 1) * flat.shape[1]))
    return div / N, float(torch.var(p, dim=2).mean())


def official_frdvs(pred: np.ndarray) -> float:
    """The official compute_FRDvs: squared torch.cdist between all items, per prediction index."""
    import torch

    N, K = pred.shape[:2]
    p = torch.from_numpy(pred).reshape(N, K, -1).transpose(0, 1)  # (K, N, T*D)
    return float(torch.cdist(p, p).pow(2).sum() / (N * (N - 1) * K) / p.shape[-1])


def bar_predictions(rng: np.random.Generator, L: np.ndarray, A: np.ndarray, K: int, kind: str) -> np.ndarray:
    """Issue 13's bar: (N, K, T, 25) float32 uniform on [0, 1) ("random"), or an appropriate
    listener plus Gaussian noise of σ 0.05 ("model")."""
    N, T, D = L.shape
    if kind == "random":
        return rng.random((N, K, T, D)).astype(np.float32)
    j = np.array([[rng.choice(np.flatnonzero(A[n])) for _ in range(K)] for n in range(N)])  # (N, K)
    return (L[j] + rng.normal(0, 0.05, (N, K, T, D))).astype(np.float32)


def compare_frdist(pred: np.ndarray, L: np.ndarray, A: np.ndarray, repeat: int) -> dict:
    """Time FRDist the official way (if tslearn is present) and ours (numba, all threads and
    1 thread, pruned and not) on the same inputs, print the comparison; returns the numbers."""
    threads = default_threads()
    pairs = int(A.sum()) * pred.shape[1]
    cpu: list[float] = []
    t_ours, (table, visited) = best_of(lambda: metrics.frdist_table(pred, L, A, return_visited=True), repeat, cpu)
    t_full, table_full = best_of(lambda: metrics.frdist_table(pred, L, A, prune=False), 1, cpu)
    t_one, _ = best_of(lambda: metrics.frdist_table(pred, L, A, threads=1), repeat, cpu)
    res = {"pairs": pairs, "threads": threads, "ours_s": t_ours, "ours_1thread_s": t_one, "ours_unpruned_s": t_full}
    res["FRDist"], res["visited"] = float(table.sum(1).mean()), int(visited.sum())
    print("\nFRDist (per-task minima, N x K)")
    print(f"  ours, pruned, {threads} threads:                     {t_ours:8.3f} s   FRDist = {res['FRDist']:.6f}")
    print(f"  ours, pruned, 1 thread:                           {t_one:8.3f} s")
    print(f"  ours, every pair (no pruning), {threads} threads:       {t_full:8.3f} s")
    print(f"  pruning: {visited.sum()} of {pairs} candidate DTWs computed to the end, the rest abandoned early")
    print(f"  pruned == unpruned bit for bit: {np.array_equal(table, table_full)}")
    if official is None:
        print(f"  official (tslearn per pair): skipped, {OFFICIAL_MISSING}")
        return res
    official_frdist_table(pred[:1, :1], L, A)  # warm-up at full length: the first call costs ~0.8 s more
    t_off, table_off = best_of(lambda: official_frdist_table(pred, L, A), 1, cpu)
    diff = np.abs(table - table_off)
    res.update(official_s=t_off, rel_diff_official=float((diff / table_off).max()))
    res.update(speedup=t_off / t_ours, speedup_1thread=t_off / t_one, speedup_unpruned=t_off / t_full)
    print(
        f"  official (tslearn per pair per group, 1 process): {t_off:8.2f} s   FRDist = {table_off.sum(1).mean():.6f}"
    )
    print(
        f"  speed-up (wall): {t_off / t_ours:.1f}x  "
        f"(1 thread: {t_off / t_one:.1f}x; without pruning: {t_off / t_full:.1f}x)"
    )
    print(
        f"  CPU seconds: official {cpu[3]:.2f}, ours {cpu[0]:.3f} pruned / {cpu[1]:.3f} unpruned -> work ratio "
        f"{cpu[3] / cpu[0]:.1f}x pruned, {cpu[3] / cpu[1]:.1f}x unpruned (wall on a quiet {threads}-core machine "
        f"~ work ratio x {threads})"
    )
    print(f"  max |difference| vs official: {diff.max():.3e} (relative {res['rel_diff_official']:.3e})")
    return res


def time_torch(pred: np.ndarray, L: np.ndarray, A: np.ndarray, device: str, max_pairs: int, reference) -> dict:
    """Time the torch engine's FRDist on ``device`` over the first items holding at most
    ``max_pairs`` pairs (at least one item); returns seconds per pair, the time scaled to
    all pairs and the max relative difference from the numba table ``reference``."""
    import torch

    K = pred.shape[1]
    per_item = A.sum(1) * K
    n = max(1, int(np.searchsorted(np.cumsum(per_item), max_pairs, side="right")))
    _frdist_rows(pred[:1, :1, :40], L[:, :40], A[:1], device)  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t, table = best_of(lambda: _frdist_rows(pred[:n], L, A[:n], device), 1)
    pairs = int(per_item[:n].sum())
    res = {"device": device, "items_timed": n, "pairs_timed": pairs, "s_per_pair": t / pairs}
    res["s_all_pairs"] = res["s_per_pair"] * int(per_item.sum())
    res["rel_diff_numba"] = float((np.abs(table - reference[:n]) / reference[:n]).max())
    if device == "cuda":
        res["peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print(
        f"  torch engine on {device} ({n} items, {pairs} pairs timed): {t:8.3f} s -> {res['s_all_pairs']:8.3f} s "
        f"for all pairs; max relative difference from numba {res['rel_diff_numba']:.1e}"
    )
    return res


def _frdist_rows(pred: np.ndarray, L: np.ndarray, A_rows: np.ndarray, device: str) -> np.ndarray:
    """The torch engine's (n, K) FRDist table of n items against all N listeners (A_rows: (n, N))."""
    from reactdiff_lite import metrics_torch

    bounds, weights = metrics._group_bounds(None, pred.shape[-1])
    out = metrics_torch.frdist_table(pred, L, A_rows.astype(bool), bounds, weights, device)
    if device == "cuda":
        import torch

        torch.cuda.synchronize()
    return out


def project_react_2024(pred, L, S, A, frd: dict, torch_runs: list[dict], repeat: int) -> dict:
    """Time every metric's unit of work both ways and print the projection to REACT 2024's
    size (seconds); the torch engine's FRDist rows are scaled per pair (no pruning)."""
    N, K = pred.shape[:2]
    P = REACT_2024
    tasks, cand_pairs = P["N"] * P["K"], P["N"] * P["K"] * P["C"]
    per_task = P["C"] / A.sum(1).mean()  # neighbours there / here
    t_corr, _ = best_of(lambda: metrics.frcorr(pred, L, A), repeat)
    t_syn, _ = best_of(lambda: metrics.frsyn(pred, S), repeat)
    t_rest, _ = best_of(lambda: (metrics.frdiv(pred), metrics.frvar(pred), metrics.frdvs(pred)), repeat)
    ours = {
        "FRDist": frd["ours_s"] / (N * K) * tasks * per_task,
        "FRCorr": t_corr / (N * K) * tasks * per_task,
        "FRSyn": t_syn / N * P["N"],
        "FRDiv+FRVar+FRDvs": t_rest / (N * K) * tasks,
    }
    off = _official_units(pred, L, S, A, frd, P, tasks, cand_pairs) if official is not None else None
    print(
        f"\nprojection to a REACT-2024-sized test set (N={P['N']}, K={P['K']}, {P['C']} neighbours; "
        f"each metric scaled by its unit of work; official FRDvs's cdist by N^2, ours is O(N)):"
    )
    print(f"  {'metric':<20}{'official':>14}{'ours':>12}{'ratio':>9}")
    for name in [*ours, "all six"]:
        b = sum(ours.values()) if name == "all six" else ours[name]
        a = (sum(off.values()) if name == "all six" else off[name]) if off else float("nan")
        print(f"  {name:<20}{a / 60:>11.1f} min{b:>10.1f} s{a / b:>8.0f}x")
    out = {"ours_s": ours, "ours_all_six_s": sum(ours.values())}
    if off:
        out.update(official_s=off, official_all_six_s=sum(off.values()))
    for run in torch_runs:
        t = run["s_per_pair"] * cand_pairs
        out[f"torch_{run['device']}_FRDist_s"] = t
        print(f"  FRDist by the torch engine on {run['device']}: {t:.1f} s ({t / 60:.1f} min), every pair computed")
    return out


def measure_react_2024(rng: np.random.Generator, kind: str) -> dict:
    """Time the six metrics on a REACT-2024-sized test set itself (N = 1614, K = 10, T = 750,
    20 neighbours per item): each metric alone, then ``metrics.evaluate`` end to end. Measured,
    not projected: pruning's effect depends on how many neighbours compete, which a projection
    from a few items cannot see. Inputs: ``predictions`` of ``kind`` (about 1.2 GB float32)."""
    P, T = REACT_2024, 750
    A = neighbour_matrix(rng, P["N"], P["C"])
    L, S = listeners(rng, P["N"], T), listeners(rng, P["N"], T)
    pred = predictions(rng, L, A, P["K"], kind)
    units = {
        "FRCorr": lambda: metrics.frcorr(pred, L, A),
        "FRDist": lambda: metrics.frdist(pred, L, A),
        "FRDiv": lambda: metrics.frdiv(pred),
        "FRVar": lambda: metrics.frvar(pred),
        "FRDvs": lambda: metrics.frdvs(pred),
        "FRSyn": lambda: metrics.frsyn(pred, S),
    }
    print(f"\nREACT-2024-sized test set, measured (N={P['N']}, K={P['K']}, T={T}, {P['C']} neighbours, '{kind}'):")
    out = {}
    for name, f in units.items():
        out[name], value = best_of(f, 1)
        print(f"  {name:<8}{out[name]:8.2f} s   value {value:.4f}")
    out["evaluate"], _ = best_of(lambda: metrics.evaluate(pred, L, S, A), 1)
    print(f"  metrics.evaluate, all six in one call: {out['evaluate']:.2f} s")
    return out


def _official_units(pred, L, S, A, frd: dict, P: dict, tasks: int, cand_pairs: int) -> dict:
    """The official approach's projected seconds per metric (unit of work times count)."""
    N, K = pred.shape[:2]
    n_sub = min(N, 4)
    js = [np.flatnonzero(A[n]) for n in range(n_sub)]
    t_ccc = time.perf_counter()
    for n in range(n_sub):
        for j in js[n]:
            official.ccc_official(L[j], pred[n, 0])
    t_ccc = (time.perf_counter() - t_ccc) / sum(len(j) for j in js)  # per pair
    t_tlcc = time.perf_counter()
    for n in range(n_sub):
        official.tlcc_offset(pred[n, 0], S[n])
    t_tlcc = (time.perf_counter() - t_tlcc) / n_sub  # per item
    t_rest_off, _ = best_of(lambda: official_frdiv_frvar(pred), 1)
    t_dvs_off, _ = best_of(lambda: official_frdvs(pred), 1)  # O(N^2) cdist
    return {
        "FRDist": frd["official_s"] / frd["pairs"] * cand_pairs,
        "FRCorr": t_ccc * cand_pairs,
        "FRSyn": t_tlcc * P["N"],
        "FRDiv+FRVar+FRDvs": t_rest_off / (N * K) * tasks + t_dvs_off * (P["N"] / N) ** 2 * P["K"] / K,
    }


def run_kind(args, kind: str, rng: np.random.Generator, L, S, A, devices: list[str]) -> dict:
    """Inputs of one kind ("model" or "random"), FRDist compared every way, the projection."""
    N, K = L.shape[0], args.k
    make = bar_predictions if args.bar else predictions
    pred = make(rng, L, A, K, kind)
    print(f"\n=== predictions '{kind}' ===")
    frd = compare_frdist(pred, L, A, args.repeat)
    reference = metrics.frdist_table(pred, L, A)
    torch_runs = [
        time_torch(pred, L, A, dev, args.torch_cpu_pairs if dev == "cpu" else N * N * K, reference) for dev in devices
    ]
    if official is not None:
        for run in torch_runs:
            run["speedup_vs_official"] = frd["official_s"] / run["s_all_pairs"]
            print(f"  torch engine on {run['device']} vs official: {run['speedup_vs_official']:.1f}x")
    projection = project_react_2024(pred, L, S, A, frd, torch_runs, args.repeat)
    return {"frdist": frd, "torch": torch_runs, "projection": projection}


def torch_devices(choice: str) -> list[str]:
    """The torch engine's devices to time: "auto" = CPU, and CUDA when present; "none"."""
    if choice == "none":
        return []
    if choice != "auto":
        return choice.split(",")
    import torch

    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=24)
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--neighbours", type=int, default=20)
    ap.add_argument("--frames", type=int, default=750)
    ap.add_argument("--pred", choices=["model", "random", "both"], default="both")
    ap.add_argument("--bar", action="store_true", help="issue 13's setting: N=4 K=10 T=750, all neighbours")
    ap.add_argument(
        "--torch", default="auto", help="torch engine devices: auto (cpu + cuda if present), none, cpu,cuda"
    )
    ap.add_argument("--torch-cpu-pairs", type=int, default=40, help="pairs timed for the torch engine on the CPU")
    ap.add_argument(
        "--react-2024",
        action="store_true",
        help="time all six metrics on a REACT-2024-sized test set itself (N=1614, K=10, 20 neighbours)",
    )
    ap.add_argument("--json", type=Path, help="write the numbers to this file")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3, help="our timings: best of this many runs")
    args = ap.parse_args(argv)
    if args.bar:
        args.items, args.k, args.neighbours, args.frames = 4, 10, 4, 750

    rng = np.random.default_rng(args.seed)
    N, K, T, C = args.items, args.k, args.frames, args.neighbours
    A = neighbour_matrix(rng, N, C)
    L = listeners(rng, N, T)
    S = listeners(rng, N, T)
    devices = torch_devices(args.torch)
    setting = f"N={N} K={K} T={T} ~{A.sum(1).mean():.0f} neighbours/item ({int(A.sum()) * K} DTW pairs)"
    if args.react_2024:
        setting = "REACT-2024 size, built per prediction kind"
    print(f"inputs: {setting}{' (issue 13 bar)' if args.bar else ''}; {default_threads()} threads; torch {devices}")
    print(f"load average {os.getloadavg()}")
    metrics.evaluate(L[:2, None, :60], L[:2, :60], S[:2, :60], np.eye(2))  # compile / load the caches
    if official is not None:
        official.frdist(L[:2, None, :60], L[:2, :60], np.eye(2))
    kinds = ["model", "random"] if args.pred == "both" else [args.pred]
    if args.react_2024:
        results = {kind: {"react_2024_s": measure_react_2024(rng, kind)} for kind in kinds}
    else:
        results = {kind: run_kind(args, kind, rng, L, S, A, devices) for kind in kinds}
    print(f"\nload average at the end {os.getloadavg()}")
    if args.json:
        meta = {"setting": setting, "bar": args.bar, "threads": default_threads(), "load_average": os.getloadavg()}
        args.json.write_text(json.dumps({**meta, **results}, indent=1))
        print(f"numbers written to {args.json}")


if __name__ == "__main__":
    main()
