"""Small shared helpers: the user-error base class, seeds, devices, atomic writes, notebook metrics."""

from __future__ import annotations

import json
import os
import random
import tempfile
from collections.abc import Callable
from enum import IntEnum
from pathlib import Path
from typing import Any

import numpy as np
import torch


class UserError(ValueError):
    """A problem the user can fix (a file, a config value, a checkpoint): its message names
    the file and what to do. The command line prints it as one line and exits 2."""


class Seed(IntEnum):
    """Purposes of counter-based seeds: ``derive_seed(run_seed, Seed.BATCH, step)``."""

    INIT = 0  # initial weights
    BATCH = 1  # which windows a training step draws
    NOISE = 2  # diffusion noise and timesteps of a micro-batch
    DROPOUT = 3  # dropout masks of a micro-batch
    VAL = 4  # validation noise


def derive_seed(*keys: int) -> int:
    """A 63-bit seed from integer keys (numpy's SeedSequence): independent streams per key."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) global generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available, else CPU; anything else is passed to torch."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Write ``path`` atomically: ``write(tmp)`` fills a temp file in the same folder,
    which is then renamed over ``path``. A crash never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def write_metrics(out_dir: str | Path, **metrics: float | int | str | bool) -> dict:
    """Merge ``metrics`` into ``OUT_DIR/metrics.json`` (atomically) and return them all.

    Notebooks record what they measured here; ``tests/test_notebooks.py`` compares the
    file with stored references. Record deterministic values only, never timings.
    """
    path = Path(out_dir) / "metrics.json"
    current = json.loads(path.read_text()) if path.exists() else {}
    for key, value in metrics.items():
        if isinstance(value, (np.generic, torch.Tensor)):
            value = value.item()
        current[key] = value
    atomic_write_json(path, current)
    return current
