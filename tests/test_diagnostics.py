"""The cue-response diagnostic of the dyadic world (reactdiff_lite.diagnostics)."""

import numpy as np
import pytest

from reactdiff_lite import stats
from reactdiff_lite.diagnostics import BROWS, cue_parts, cue_response
from reactdiff_lite.schema import FPS, VA

AROUSAL = VA.start + 1


# the response window [2.2 s, 3.5 s) is frames 55..87 (33); the answer fills frames 62..79 (18) with 1 + 0.5
FULL = 1.5 * 18 / 33


def reactions(T: int, answers: list[float], K: int = 2, prob: float = 1.0) -> np.ndarray:
    """(K, T, 25) reactions that raise both brows (AU probability ``prob``) and arousal by 0.5
    from 0.5 s to 1.2 s after each time in ``answers``."""
    y = np.zeros((K, T, 25), np.float32)
    for t in answers:
        a, b = int((t + 0.5) * FPS), int((t + 1.2) * FPS)
        y[:, a:b, BROWS] = prob
        y[:, a:b, AROUSAL] = 0.5
    return y


def test_a_listener_answering_questions_only_scores_the_full_response():
    cues = [[(2.0, "question"), (5.0, "statement"), (8.0, "accent")]]
    pred = reactions(300, answers=[2.0])[None]  # (1, K, T, 25)
    assert cue_response(pred, cues) == pytest.approx(FULL, rel=1e-6)
    answers_all = reactions(300, answers=[2.0, 5.0])[None]
    assert cue_response(answers_all, cues) == pytest.approx(0.0, abs=1e-9)  # answers both kinds alike
    assert cue_response(np.zeros_like(pred), cues) == 0.0


def test_probabilities_and_binary_aus_score_alike():
    cues = [[(2.0, "question"), (5.0, "statement")]]
    soft = reactions(300, answers=[2.0], prob=0.8)[None]
    hard = reactions(300, answers=[2.0], prob=1.0)[None]
    assert cue_response(soft, cues) == cue_response(hard, cues)


def test_items_without_a_kind_have_no_weight_and_the_pool_is_over_all_cues():
    cues = [[(2.0, "question")], [(2.0, "statement"), (5.0, "statement")], []]
    pred = np.stack([reactions(300, [2.0]), reactions(300, []), reactions(300, [])])
    parts = cue_parts(pred, cues)
    assert parts["question_n"].tolist() == [1, 0, 0] and parts["statement_n"].tolist() == [0, 2, 0]
    assert np.isnan(parts["question"][1]) and np.isnan(parts["statement"][0])
    value = cue_response(pred, cues)
    assert value == pytest.approx(FULL, rel=1e-6)
    est = stats.weighted_difference(
        parts["question"], parts["question_n"], parts["statement"], parts["statement_n"], np.arange(3), resamples=200
    )
    assert est.mean == pytest.approx(value) and est.ci[0] <= est.mean <= est.ci[1]


def test_cues_too_close_to_the_clip_edges_are_skipped():
    cues = [[(0.0, "question"), (11.9, "statement")]]  # no baseline before / no window after
    parts = cue_parts(reactions(300, [])[None], cues)
    assert parts["question_n"][0] == 0 and parts["statement_n"][0] == 0


def test_latent_probe_finds_a_cue_the_latents_carry_and_not_one_they_do_not():
    from reactdiff_lite.diagnostics import latent_cue_probe

    rng = np.random.default_rng(0)
    N, T, Dz = 40, 500, 4
    cues = [
        [(float(t), "question" if rng.random() < 0.4 else "statement") for t in (3.0, 8.0, 13.0, 18.0)]
        for _ in range(N)
    ]
    latents = rng.normal(size=(N, T, Dz))
    groups = np.arange(N) % 8
    chance = latent_cue_probe(latents, cues, groups)
    for n, item in enumerate(cues):
        for t, kind in item:
            if kind == "question":
                latents[n, int(t * FPS) - 5 : int(t * FPS) + 5, 0] += 2.0
    assert latent_cue_probe(latents, cues, groups) > 0.95 and 0.3 < chance < 0.7
