"""Speech acts and accents: information only the voice carries (generator 1.1).

Every phrase end of a script is a **question** (rate ``question_rate``) or a
**statement**, and every phrase carries 0-2 **pitch accents**. In the speaker's audio
(:mod:`reactdiff_lite.data.audio`) a question's F0 rises over the last ``final_span``
seconds of the phrase, a statement's falls; an accent is a short F0 and energy peak. The
speaker's face does not show them (unless the leakage knob ``rho`` > 0).

The listener answers after its persona's lag: after a question end, with the persona's
probability ``Persona.question`` (drawn in ``respond_question``), a brow flash (AU1/AU2),
an arousal bump and a nod; after a statement end the same with ``Persona.statement``
(lower); after an accent, with ``Persona.accent``, a short brow flash. With probability
``rho`` a question or accent also shows on the speaker's own face (a brow raise or a
head tilt); statements, the unmarked case, never do.

Cue kinds and accent positions belong to the script (their own random stream, so the
sessions of one script, an appropriate set, share them); accent timing jitters per
session; responses and leakage draw from their own per-person streams. Every response
has compact support inside its **response window**, the frames from the cue to
``lag + window`` seconds after it, so with cues switched off a person's files differ only
there. The parameters below were fixed before any model was trained and are recorded in
every manifest (``cue_law``); they are never tuned to make a model pass.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..schema import FPS

CUE_KINDS = ("question", "statement", "accent")


@dataclass(frozen=True)
class CueLaw:
    """The fixed parameters of speech acts, accents and the responses to them."""

    question_rate: float = 0.25  # P(a phrase end is a question)
    accent_counts: tuple[float, float, float] = (0.3, 0.45, 0.25)  # P(0, 1, 2 accents in a phrase)
    accent_span: float = 0.35  # s: accents sit in the phrase, before its final movement
    accent_jitter: float = 0.03  # s: per-session timing jitter of an accent (sd)
    # audio (the speaker's voice)
    final_span: float = 0.3  # s: the phrase-final F0 movement
    question_rise: float = 0.4  # relative F0 rise at a question end
    statement_fall: float = 0.2  # relative F0 fall at a statement end
    accent_f0: float = 0.2  # relative F0 peak of an accent
    accent_energy: float = 0.6  # relative energy peak of an accent
    accent_width: float = 0.05  # s: sd of an accent's Gaussian peak
    # the listener's response, after its persona's lag
    respond_question: tuple[float, float] = (0.7, 0.95)  # persona probability range
    respond_statement: tuple[float, float] = (0.2, 0.5)
    respond_accent: tuple[float, float] = (0.15, 0.45)
    onset_jitter: float = 0.05  # s: sd of the response onset, clipped at +-2 sd
    brow: tuple[float, float] = (0.8, 1.1)  # flash amplitude range (AU intensity, before AU loadings)
    brow_au: tuple[float, float] = (1.0, 0.9)  # loadings on AU1, AU2
    brow_flash: float = 0.8  # s: flash length after a phrase end
    accent_flash: float = 0.5  # s: flash length after an accent
    arousal: tuple[float, float] = (0.35, 0.55)  # bump amplitude range (before tanh)
    arousal_span: float = 1.0  # s
    nod: tuple[float, float] = (0.7, 1.2)  # nod amplitude range (as backchannel nods)
    nod_span: float = 0.9  # s
    window: float = 1.5  # s: a response ends within lag + window after its cue
    # leakage onto the speaker's face (probability rho, a world parameter)
    leak_brow: float = 0.7  # AU intensity of a leaked brow raise
    leak_tilt: float = 0.06  # rad of a leaked head tilt (roll)


CUE_LAW = CueLaw()


def cue_law_spec() -> dict:
    """The cue parameters as recorded in the manifest."""
    return asdict(CUE_LAW)


def hann(t: np.ndarray, start: float, length: float) -> np.ndarray:
    """sin^2 pulse over [start, start + length] seconds, exactly 0 outside (compact support)."""
    x = (t - start) / length
    return np.where((x > 0) & (x < 1), np.sin(np.pi * np.clip(x, 0, 1)) ** 2, 0.0)


# ------------------------------------------------------------------------------ script
def draw_phrase_cues(rng: np.random.Generator) -> tuple[str, tuple[float, ...]]:
    """One phrase's cues: the kind of its end and its accents (fractions of the phrase part
    before the final movement, sorted, at least a fifth apart)."""
    kind = "question" if rng.random() < CUE_LAW.question_rate else "statement"
    n = int(rng.choice(3, p=CUE_LAW.accent_counts))
    slots = [(0.1, 0.9)] if n == 1 else [(0.05, 0.4), (0.6, 0.95)][:n]
    return kind, tuple(round(float(rng.uniform(a, b)), 4) for a, b in slots)


def phrase_cue_times(a: float, b: float, cues: tuple, rng: np.random.Generator) -> list[tuple[float, str]]:
    """(time, kind) of one performed phrase from ``a`` to ``b`` s: its accents (jittered by
    ``rng``, the session's cue-timing stream) and its end."""
    kind, accents = cues
    span = max(b - a - CUE_LAW.accent_span, 0.1)
    jitter = rng.normal(0, CUE_LAW.accent_jitter, len(accents))
    out = [(round(a + f * span + j, 3), "accent") for f, j in zip(accents, jitter, strict=True)]
    return out + [(round(b, 3), kind)]


# ------------------------------------------------------------------------------- voice
def prosody(cues: list, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """F0 and energy factors of a speaker's own cues at times ``ts`` (s): phrase-final rise
    (question) or fall (statement) over ``final_span``, held 0.1 s into the pause, and
    accent peaks. Returns (f0 factor, energy factor), both 1 away from cues."""
    f0, energy = np.ones(len(ts)), np.ones(len(ts))
    law = CUE_LAW
    for time, kind in cues:
        if kind == "accent":
            peak = np.exp(-0.5 * ((ts - time) / law.accent_width) ** 2)
            f0 *= 1 + law.accent_f0 * peak
            energy *= 1 + law.accent_energy * peak
            continue
        ramp = np.clip((ts - time + law.final_span) / law.final_span, 0, 1) * (ts < time + 0.1)
        f0 *= 1 + (law.question_rise if kind == "question" else -law.statement_fall) * ramp
    return f0, energy


# ---------------------------------------------------------------------------- the face
@dataclass
class FaceCues:
    """What cues add to one person's face, per frame (T,): exactly 0 outside response windows."""

    brow: np.ndarray  # brow flash intensity (times ``brow_au`` on AU1, AU2)
    arousal: np.ndarray  # added to arousal before tanh
    nod: np.ndarray  # added to the nod track (head pitch)
    roll: np.ndarray  # added to the head roll (rad)

    @staticmethod
    def zeros(T: int) -> FaceCues:
        return FaceCues(np.zeros(T), np.zeros(T), np.zeros(T), np.zeros(T))


def respond(other_cues: list, probs: dict, lag: float, T: int, rng: np.random.Generator) -> FaceCues:
    """A listener's responses to the other person's cues (before gating by listening).

    Args:
        other_cues: the speaker's (time, kind) cues; probs: response probability per kind
            (the persona's); lag: the persona's reaction lag (s); rng: the person's cue stream.
    """
    law, t = CUE_LAW, np.arange(T) / FPS
    out = FaceCues.zeros(T)
    for time, kind in other_cues:
        u, jitter = rng.random(), rng.normal(0, law.onset_jitter)  # every cue draws the same
        brow, arousal, nod = rng.uniform(*law.brow), rng.uniform(*law.arousal), rng.uniform(*law.nod)
        if u >= probs[kind]:
            continue
        c = time + lag + float(np.clip(jitter, -2 * law.onset_jitter, 2 * law.onset_jitter))
        if kind == "accent":
            out.brow += brow * hann(t, c, law.accent_flash)
            continue
        out.brow += brow * hann(t, c, law.brow_flash)
        out.arousal += arousal * hann(t, c, law.arousal_span)
        out.nod += nod * np.sin(2 * np.pi * 2.2 * (t - c)) * hann(t, c, law.nod_span)
    return out


def leak(own_cues: list, rho: float, T: int, rng: np.random.Generator) -> FaceCues:
    """With probability ``rho`` a question or accent also shows on the speaker's own face:
    a brow raise or (equally likely) a head tilt over the cue's final movement."""
    law, t = CUE_LAW, np.arange(T) / FPS
    out = FaceCues.zeros(T)
    if rho <= 0:
        return out
    for time, kind in own_cues:
        u, form = rng.random(), rng.random()
        if kind == "statement" or u >= rho:
            continue
        span = law.final_span + 0.2 if kind == "question" else 0.3
        pulse = hann(t, time - span + 0.1, span)
        if form < 0.5:
            out.brow += law.leak_brow * pulse
        else:
            out.roll += law.leak_tilt * pulse
    return out


def response_windows(other_cues: list, lag: float, T: int) -> np.ndarray:
    """(T,) bool: the frames from each of the other person's cues to ``lag + window`` s after it."""
    mask = np.zeros(T, bool)
    for time, _ in other_cues:
        a = int(np.floor(time * FPS))
        mask[max(a, 0) : min(int(np.ceil((time + lag + CUE_LAW.window) * FPS)) + 1, T)] = True
    return mask
