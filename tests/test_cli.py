"""The command line's user errors: one line ``reactdiff_lite <command>: error: ...`` naming the
file, exit status 2; ``--debug`` shows the traceback instead.

Every case fails before any training or sampling starts: a few seconds in all.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tiny import TINY_AE

from reactdiff_lite.cli import build_parser, error_line, main

ROOT = Path(__file__).resolve().parents[1]
STAGE1_CONFIG = ROOT / "configs" / "stage1_smoke.yaml"


def user_error(capsys, command: str, *argv: str) -> str:
    """Run ``main(argv)``, check it failed as a user error of ``command``; -> the one stderr line."""
    status = main(list(argv))
    err = capsys.readouterr().err
    assert status == 2, f"exit status {status}, stderr:\n{err}"
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}:\n{err}"
    assert lines[0].startswith(f"reactdiff_lite {command}: error: "), lines[0]
    return lines[0]


def sample_args(checkpoint: Path, tmp_path: Path) -> list[str]:
    return [
        "sample",
        "--checkpoint",
        str(checkpoint),
        "--data",
        str(tmp_path / "data"),
        "--out",
        str(tmp_path / "preds.npz"),
        "--device",
        "cpu",
    ]


# ----------------------------------------------------------------------------- sample


def test_sample_missing_checkpoint(capsys, tmp_path):
    missing = tmp_path / "missing.pt"
    assert str(missing) in user_error(capsys, "sample", *sample_args(missing, tmp_path))


def test_sample_corrupt_checkpoint(capsys, tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4096))
    assert str(corrupt) in user_error(capsys, "sample", *sample_args(corrupt, tmp_path))


def test_sample_stage1_checkpoint(capsys, tmp_path):
    """A stage-1 (autoencoder) checkpoint where sampling needs stage 2: the error says so."""
    from reactdiff_lite.config import load_config, stage_dict
    from reactdiff_lite.models.autoencoder import ReactionAutoencoder
    from reactdiff_lite.models.checkpoint import save_checkpoint

    cfg = load_config(STAGE1_CONFIG, TINY_AE)
    stage1 = save_checkpoint(
        tmp_path / "stage1.pt", {"autoencoder": ReactionAutoencoder(cfg.autoencoder)}, stage_dict(cfg), step=0
    )
    line = user_error(capsys, "sample", *sample_args(stage1, tmp_path))
    assert str(stage1) in line and "stage" in line


# ----------------------------------------------------------------------------- train


@pytest.mark.parametrize(
    "override,message",
    [
        ("optim.stepz=3", "stepz"),  # an unknown key
        ("optim.steps=many", "optim.steps"),  # a value of the wrong type
        ("train.steps=3", "'optim'"),  # the section's old name: the error gives the new one
    ],
)
def test_train_bad_config(capsys, override, message):
    line = user_error(capsys, "train", "train", "--config", str(STAGE1_CONFIG), "--set", override)
    assert str(STAGE1_CONFIG) in line and message in line


def test_train_old_section_in_the_file(capsys, tmp_path):
    old = tmp_path / "old.yaml"
    old.write_text("stage: 1\ntrain:\n  steps: 3\n")
    line = user_error(capsys, "train", "train", "--config", str(old))
    assert str(old) in line and "'optim'" in line


# ----------------------------------------------------------------------------- evaluate


def test_evaluate_garbage_predictions(capsys, tmp_path, smoke_data):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    line = user_error(capsys, "evaluate", "evaluate", "--pred", str(garbage), "--data", str(smoke_data))
    assert str(garbage) in line


def test_evaluate_missing_predictions(capsys, tmp_path, smoke_data):
    missing = tmp_path / "missing.npz"
    line = user_error(capsys, "evaluate", "evaluate", "--pred", str(missing), "--data", str(smoke_data))
    assert str(missing) in line


# ----------------------------------------------------------------------------- data


def test_data_check_broken_dataset(capsys, tmp_path, smoke_data):
    """A broken Emotion CSV: the JSON summary on stdout lists it, stderr names it in one line."""
    root = shutil.copytree(smoke_data, tmp_path / "world")
    broken = sorted((root / "val").rglob("Emotion/**/*.csv"))[0]
    broken.write_text("not,an,emotion,file\n")
    line = user_error(capsys, "data check", "data", "check", "--root", str(root))
    assert str(broken) in line


# ----------------------------------------------------------------------------- the real entry point


def run_module(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "reactdiff_lite", *argv], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


def test_module_prints_one_line_and_debug_the_traceback(tmp_path):
    """``python -m reactdiff_lite``: one line and exit 2; with ``--debug``, the traceback."""
    missing = tmp_path / "missing.pt"
    plain = run_module(*sample_args(missing, tmp_path))
    assert plain.returncode == 2 and plain.stderr.splitlines() == [plain.stderr.strip()], plain.stderr
    assert plain.stderr.startswith("reactdiff_lite sample: error: ") and str(missing) in plain.stderr
    debug = run_module("--debug", *sample_args(missing, tmp_path))
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr, debug.stderr
    assert str(missing) in debug.stderr.splitlines()[-1]


def test_debug_flag_before_or_after_the_command():
    parse = build_parser().parse_args
    assert not parse(["data", "check", "--root", "x"]).debug
    assert parse(["--debug", "data", "check", "--root", "x"]).debug
    assert parse(["data", "check", "--root", "x", "--debug"]).debug


def test_a_long_message_keeps_its_first_line():
    err = ValueError("3 missing files in root/test:\n  a.csv\n  b.wav")
    assert error_line("data check", err) == (
        "reactdiff_lite data check: error: 3 missing files in root/test: (+2 more lines: rerun with --debug)"
    )
