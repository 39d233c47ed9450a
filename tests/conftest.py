"""Shared fixtures. ``smoke_data``: one smoke-preset dyadic world per test session; ``one_thread``:
torch on one thread for a module of tiny-tensor tests (``pytestmark = pytest.mark.usefixtures("one_thread")``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def smoke_data(tmp_path_factory) -> Path:
    """Root of a synthetic REACT-format dataset (preset ``smoke``, seed 0), generated once
    per test session (~3 s). Treat it as read-only: copy it before breaking files."""
    from reactdiff_lite.data.synthetic import generate_world

    return generate_world(tmp_path_factory.mktemp("smoke_data"), preset="smoke", seed=0)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: threads only add synchronisation (and stall on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
