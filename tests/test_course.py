"""The course's support code: exercise checks and the roadmap figure."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest

from reactdiff_lite.exercises import check
from reactdiff_lite.plots import ROADMAP_BOXES, roadmap

matplotlib.use("Agg")


def test_check_accepts_right_answers_within_tolerance(capsys):
    assert check("ex", np.array([1.0, 2.0 + 1e-9]), [1.0, 2.0], hint="h", strict=True)
    assert check("ex", "concat", "concat", hint="h", strict=True)
    assert "✓ ex: correct" in capsys.readouterr().out


@pytest.mark.parametrize("answer", [None, [1.0, 2.1], [1.0], "two", True])
def test_check_hints_for_a_learner_and_raises_in_ci(answer, capsys):
    assert not check("ex", answer, [1.0, 2.0], hint="try the mean", strict=False)
    assert "Hint: try the mean" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="ex: not .* hint: try the mean"):
        check("ex", answer, [1.0, 2.0], hint="try the mean", strict=True)


def test_roadmap_highlights_the_notebooks_components():
    import matplotlib.pyplot as plt

    for notebook in ("01", "05", "09"):
        fig = roadmap(notebook)
        thick = sum(1 for p in fig.axes[0].patches if p.get_linewidth() > 2)
        assert thick == sum(notebook in nbs for _, _, nbs in ROADMAP_BOXES.values()) > 0
        plt.close(fig)
    every = {nb for _, _, nbs in ROADMAP_BOXES.values() for nb in nbs}
    assert every == {f"{i:02d}" for i in range(1, 10)}, "every notebook has a place on the roadmap"
