"""Exercise checks for the course notebooks.

Each exercise in notebooks 02–09 has three cells: the learner's answer (``answer = None``
until they write one), a collapsed solution cell that fills the answer only when the
notebook's ``SOLUTIONS`` parameter is True, and a check cell calling :func:`check`.

With ``SOLUTIONS = True`` (what ``make test`` runs) a wrong answer raises, so the solutions
cannot rot; with ``SOLUTIONS = False`` (a learner) a missing or wrong answer prints a hint
and the notebook goes on.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _matches(answer: Any, expected: Any, rtol: float, atol: float) -> bool:
    if isinstance(expected, (bool, str)) or expected is None:
        return answer == expected
    try:
        a, e = np.asarray(answer, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return a.shape == e.shape and bool(np.allclose(a, e, rtol=rtol, atol=atol))


def check(
    name: str, answer: Any, expected: Any, *, hint: str, strict: bool, rtol: float = 1e-5, atol: float = 1e-8
) -> bool:
    """Compare an exercise's ``answer`` with ``expected`` (numbers and arrays to tolerance,
    strings and flags exactly) and say so.

    Args:
        name: the exercise's title, shown in the message.
        hint: what to try when the answer is missing or wrong.
        strict: raise on a wrong or missing answer (pass the notebook's ``SOLUTIONS``).

    Returns:
        True when the answer matches.
    """
    if answer is not None and _matches(answer, expected, rtol, atol):
        print(f"✓ {name}: correct")
        return True
    state = "not answered yet" if answer is None else "not yet right"
    if strict:
        raise AssertionError(f"{name}: {state} (solution cell run with SOLUTIONS=True); hint: {hint}")
    print(f"✗ {name}: {state}. Hint: {hint}")
    return False
