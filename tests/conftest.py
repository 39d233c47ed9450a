"""Shared fixtures. ``smoke_data``: one smoke-preset dyadic world per test session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def smoke_data(tmp_path_factory) -> Path:
    """Root of a synthetic REACT-format dataset (preset ``smoke``, seed 0), generated once
    per test session (~3 s). Treat it as read-only: copy it before breaking files."""
    from reactdiff_lite.data.synthetic import generate_world

    return generate_world(tmp_path_factory.mktemp("smoke_data"), preset="smoke", seed=0)
