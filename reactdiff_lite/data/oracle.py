"""The oracle of the dyadic world: re-simulate any item, and draw fresh appropriate reactions.

Because the causal model is known (:mod:`reactdiff_lite.data.behaviour`), the manifest
of a generated dataset is enough to re-perform any session exactly, and to let **new**
listener personas (drawn from the persona law, with new noise) react to the same speaker
performance: reactions appropriate by construction and different from one another. The
new listeners answer the speaker's speech acts and accents by the same cue law
(:mod:`reactdiff_lite.data.cues`), with cue-response probabilities drawn from the same
persona law. The evaluation uses them as a reference; synthetic data only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..schema import FPS
from .behaviour import behave, perform_session, speaking_affect
from .people import draw_persona, keyed_rng, make_script
from .synthetic import read_manifest


def simulate_item(root: str | Path, split: str, item: int) -> dict:
    """Re-simulate an item's session: continuous tracks of its speaker and listener.

    Returns dict(plan, speaker=Behaviour, listener=Behaviour, speaker_role, pair, spoken
    (both persons' speaking displays, pair column order), speaker_column).
    """
    m = read_manifest(root)
    if m is None:
        raise FileNotFoundError(f"{Path(root) / 'manifest.json'} is missing: not a generated dataset")
    pairs = m["splits"][split]["pairs"]
    pair, s = pairs[item % len(pairs)], int(item >= len(pairs))  # s = the speaker's column
    frames = m["config"]["clip_frames"]
    script = make_script(m["scripts"][pair["script"]], frames / FPS)
    world = m["config"]
    session = perform_session(pair, script, frames, m["personas"], world.get("cues", True), world.get("rho", 0.0))
    return {
        "plan": session.plan,
        "speaker": session.behaviour[s],
        "listener": session.behaviour[1 - s],
        "speaker_role": pair["roles"][s],
        "pair": pair,
        "spoken": session.spoken,
        "speaker_column": s,
        "rho": world.get("rho", 0.0),
    }


def oracle_reactions(root: str | Path, split: str, item: int, k: int, seed: int = 0) -> dict:
    """Draw ``k`` fresh appropriate listener reactions for one item's speaker.

    The speaker's exact performance is re-simulated from the manifest; each reaction is a
    new listener persona (drawn from the persona law) with new noise, reacting to it in
    the same session timing.

    Args:
        root: a generated dataset; split: its split; item: mirrored item index.
        k: reactions to draw; seed: same seed, same reactions.

    Returns:
        dict(emotion=(k, T, 25) float32, tdmm=(k, T, 58) float32), T = clip frames - 1.
    """
    sim = simulate_item(root, split, item)
    plan, s = sim["plan"], sim["speaker_column"]
    role = 1 - sim["speaker_role"]
    T = plan.speech.shape[1] - 1
    emotion, tdmm = [], []
    for i in range(k):
        persona = draw_persona(
            keyed_rng(seed, "oracle-persona", split, item, i), keyed_rng(seed, "oracle-persona-cues", split, item, i)
        )
        rng, cue_rng = keyed_rng(seed, "oracle", split, item, i), keyed_rng(seed, "oracle-cues", split, item, i)
        spoken = speaking_affect(plan, role, persona, rng)
        b = behave(plan, role, persona, spoken, sim["spoken"][s], rng, cue_rng, sim["rho"])
        emotion.append(b.emotion[:T])
        tdmm.append(b.tdmm[:T].astype(np.float32))
    return {"emotion": np.stack(emotion), "tdmm": np.stack(tdmm)}
