"""Data-layer speed: dyadic-world generation per preset, and the reader's tensor cache.

    python benchmarks/data_speed.py [--presets smoke default] [--out DIR]

Prints, per preset: generation wall time and CPU time (this process plus its worker
processes; wall time on a shared machine depends on the load), the ratio to the budget
(smoke <= 5 s, default <= 60 s on 2 cores) and the size on disk. Then, for the largest
preset's train split: the first ``load_split`` (decodes every mp4/wav/CSV/npy) against
a second one that reads the tensor cache, and their ratio.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from reactdiff_lite.data.cache import load_split
from reactdiff_lite.data.reader import MODALITIES
from reactdiff_lite.data.synthetic import generate_world

BUDGET_S = {"smoke": 5.0, "default": 60.0}


def cpu_seconds() -> float:
    """User + system CPU of this process and its reaped children (generation workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def disk_mb(root: Path) -> float:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and ".cache" not in p.parts) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["smoke", "default"], choices=sorted(BUDGET_S))
    parser.add_argument("--out", default=None, help="keep the datasets here (default: a temp dir, removed)")
    args = parser.parse_args()
    base = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="data_speed-"))
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
    try:
        for preset in args.presets:
            wall, cpu = time.perf_counter(), cpu_seconds()
            root = generate_world(base / preset, preset, seed=0)
            wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
            print(
                f"generate {preset:8s} wall {wall:6.1f} s  cpu {cpu:6.1f} s  "
                f"wall/budget {wall / BUDGET_S[preset]:.2f} (budget {BUDGET_S[preset]:.0f} s)  "
                f"disk {disk_mb(root):6.1f} MB  load avg {os.getloadavg()[0]:.1f}"
            )
        root = base / args.presets[-1]
        cache = base / "cache"
        shutil.rmtree(cache, ignore_errors=True)
        t = time.perf_counter()
        split = load_split(root, "train", cache_dir=cache, modalities=MODALITIES)
        decode = time.perf_counter() - t
        t = time.perf_counter()
        load_split(root, "train", cache_dir=cache, modalities=MODALITIES)
        cached = time.perf_counter() - t
        size = sum(p.stat().st_size for p in cache.glob("*.pt")) / 1e6
        print(
            f"load_split {args.presets[-1]}/train ({len(split.clip_ids)} clips x {split.n_frames} frames, "
            f"{'+'.join(MODALITIES)}): decode {decode:.2f} s, cached {cached:.3f} s, "
            f"speedup x{decode / cached:.0f}, cache file {size:.0f} MB"
        )
    finally:
        if not args.out:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
