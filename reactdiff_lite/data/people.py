"""Who talks, what they say, and when: personas, scripts and session plans of the dyadic world.

A **script** fixes the stimulus: the turn schedule, the phrases and syllables of each
turn, and affect episodes (a joke -> smile and laugh, a complaint -> frown, news ->
surprise with raised brows). A **persona** fixes a person's traits (expressivity, mimicry
gain, reaction lag 0.2-1.0 s, nod/smile/"mm-hm" propensity, baseline valence, head-motion
style, voice). A **session** is one script performed by a pair of personas, with timing
jitter: :func:`session_plan` renders it to frame-level tracks both persons share.
Since generator 1.1 a script also fixes its speech acts and accents (question or statement
at every phrase end, 0-2 pitch accents per phrase; :mod:`reactdiff_lite.data.cues`), drawn
from their own random stream so every earlier draw is unchanged, and a persona has
response probabilities to them, also from their own stream.
How a person behaves given a plan is :mod:`reactdiff_lite.data.behaviour`.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from ..schema import FPS
from .cues import CUE_LAW, draw_phrase_cues, phrase_cue_times

KINDS = ("joke", "complaint", "news")  # affect episodes -> smile, frown, surprise
SYLLABLE_RATE = 4.5  # syllables per second


def keyed_rng(*keys: int | str) -> np.random.Generator:
    """An independent generator for a tuple of keys (ints or strings): every random draw of
    the world is a function of the dataset seed and what is being drawn."""
    return np.random.default_rng([k if isinstance(k, int) else zlib.crc32(k.encode()) for k in keys])


# ---------------------------------------------------------------------------- personas
@dataclass(frozen=True)
class Persona:
    expressivity: float  # scales the person's own affect displays
    mimicry: float  # gain g of the lagged, damped mimicry while listening
    lag: float  # reaction lag in seconds (0.2-1.0)
    nod: float  # probability of a nod at a speaker pause
    smile: float  # probability of a brief smile at a pause; laughter contagion
    mmhm: float  # probability of a vocal "mm-hm" at a pause
    valence: float  # baseline valence (mood)
    head: float  # head-motion amplitude (radians)
    f0: float  # voice pitch (Hz)
    formant: float  # vocal-tract scale of the formants
    question: float  # probability of responding to a question end (0.7-0.95)
    statement: float  # probability of responding to a statement end (0.2-0.5)
    accent: float  # probability of a brow flash after a pitch accent

    def cue_response(self) -> dict[str, float]:
        """Response probability per cue kind."""
        return {"question": self.question, "statement": self.statement, "accent": self.accent}


def draw_persona(rng: np.random.Generator, cue_rng: np.random.Generator) -> Persona:
    """A persona from the population (the oracle draws fresh ones from the same law).
    ``cue_rng`` draws the cue-response probabilities, so ``rng``'s draws are those of 1.0."""
    return Persona(
        expressivity=round(rng.uniform(0.75, 1.25), 4),
        mimicry=round(rng.uniform(0.45, 0.85), 4),
        lag=round(rng.uniform(0.2, 1.0), 4),
        nod=round(rng.uniform(0.4, 0.9), 4),
        smile=round(rng.uniform(0.25, 0.7), 4),
        mmhm=round(rng.uniform(0.15, 0.6), 4),
        valence=round(rng.uniform(-0.15, 0.3), 4),
        head=round(rng.uniform(0.03, 0.08), 4),
        f0=round(rng.uniform(95, 230), 2),
        formant=round(rng.uniform(0.9, 1.15), 4),
        question=round(cue_rng.uniform(*CUE_LAW.respond_question), 4),
        statement=round(cue_rng.uniform(*CUE_LAW.respond_statement), 4),
        accent=round(cue_rng.uniform(*CUE_LAW.respond_accent), 4),
    )


# ----------------------------------------------------------------------------- scripts
@dataclass(frozen=True)
class Turn:
    role: int  # 0 = role A, 1 = role B
    start: float  # seconds
    end: float
    phrases: tuple[tuple[float, float], ...]  # fractions of the turn
    episode: tuple[str, float, float] | None  # (kind, start, end) as fractions of the turn
    seed: int  # syllables and vowels of this turn
    cues: tuple[tuple[str, tuple[float, ...]], ...] = ()  # per phrase: end kind, accent positions


def make_script(seed: int, duration: float) -> tuple[Turn, ...]:
    """The stimulus: alternating turns (2-5 s, gaps 0.2-0.6 s), phrases (0.8-2 s, pauses
    0.25-0.5 s), in 2 of 3 turns one affect episode, and per phrase its cues (own stream)."""
    rng, cue_rng = keyed_rng(seed, "script"), keyed_rng(seed, "script-cues")
    turns, t, role = [], rng.uniform(0.0, 0.4), 0
    while t < duration - 1.0:
        end = min(t + rng.uniform(2.0, 5.0), duration - 0.2)
        length, phrases, p = end - t, [], 0.0
        while p < length - 0.5:
            q = min(p + rng.uniform(0.8, 2.0), length)
            phrases.append((round(p / length, 4), round(q / length, 4)))
            p = q + rng.uniform(0.25, 0.5)
        episode = None
        if rng.random() < 0.67:
            kind = KINDS[int(rng.integers(len(KINDS)))]
            a = rng.uniform(0.0, 0.5)
            episode = (kind, round(a, 4), round(min(1.0, a + rng.uniform(1.2, 2.5) / length), 4))
        cues = tuple(draw_phrase_cues(cue_rng) for _ in phrases)
        turns.append(Turn(role, round(t, 3), round(end, 3), tuple(phrases), episode, int(rng.integers(2**31)), cues))
        t, role = end + rng.uniform(0.2, 0.6), 1 - role
    return tuple(turns)


# ---------------------------------------------------------------------------- sessions
@dataclass
class SessionPlan:
    """Frame-level stimulus of one session (both roles share its timing). Arrays are (2, T)."""

    floor: np.ndarray  # role r holds the turn (0/1, smoothed edges)
    speech: np.ndarray  # speech activity in [0, 1]
    syll: np.ndarray  # syllable nucleus (jaw opening) in [0, 1]
    vowel: np.ndarray  # vowel index per frame (int)
    episode: np.ndarray  # (2, T, 3) envelopes of joke / complaint / news
    laugh: np.ndarray  # laughter after a joke, in [0, 1]
    pauses: list  # per role: [(frame, weight)] phrase ends (1) and turn ends (1.5)
    cues: list  # per role: [(time s, kind)] its speech acts and accents (empty without cues)


def envelope(t: np.ndarray, a: float, b: float, rise: float, fall: float) -> np.ndarray:
    """Trapezoid envelope: 0 before a, ramps up over ``rise`` s, down over ``fall`` s after b."""
    return np.clip(np.minimum((t - a) / rise + 1, (b - t) / fall + 1), 0, 1) * (t >= a - rise) * (t <= b + fall)


def _speak_phrases(
    plan: SessionPlan, turn: Turn, start: float, length: float, t: np.ndarray, cue_rng: np.random.Generator | None
) -> None:
    """Fill the turn's phrases into ``plan``: speech activity, a raised-cosine syllable nucleus
    of ~0.16 s per syllable with its vowel, a pause (weight 1, turn end 1.5) per phrase end
    and, unless ``cue_rng`` is None (cues off), the phrase's cues."""
    r = turn.role
    syllable_rng = keyed_rng(turn.seed, "syllables")
    for i, (pa, pb) in enumerate(turn.phrases):
        a, b = start + pa * length, start + pb * length
        plan.speech[r] = np.maximum(plan.speech[r], envelope(t, a, b, 0.06, 0.06))
        grid = np.arange(a, b, 1 / SYLLABLE_RATE)
        onsets = grid + syllable_rng.uniform(-0.03, 0.03, len(grid))
        for o in onsets:
            nucleus = np.clip(np.cos(np.pi * (t - o - 0.08) / 0.16), 0, 1) * (np.abs(t - o - 0.08) < 0.08)
            plan.syll[r] = np.maximum(plan.syll[r], nucleus)
            plan.vowel[r, (t >= o) & (t < o + 1 / SYLLABLE_RATE)] = syllable_rng.integers(5)
        plan.pauses[r].append((int(round(b * FPS)), 1.5 if i == len(turn.phrases) - 1 else 1.0))
        if cue_rng is not None:
            plan.cues[r] += phrase_cue_times(a, b, turn.cues[i], cue_rng)


def session_plan(script: tuple[Turn, ...], session_seed: int, frames: int, cues: bool = True) -> SessionPlan:
    """Jitter the script's timing for one session (turn edges +-0.1 s) and render it to frames.
    ``cues=False`` leaves out speech acts and accents (every other track is unchanged)."""
    rng = keyed_rng(session_seed, "timing")
    cue_rng = keyed_rng(session_seed, "cue-timing") if cues else None
    t = np.arange(frames) / FPS
    plan = SessionPlan(
        floor=np.zeros((2, frames)),
        speech=np.zeros((2, frames)),
        syll=np.zeros((2, frames)),
        vowel=np.zeros((2, frames), np.int64),
        episode=np.zeros((2, frames, 3)),
        laugh=np.zeros((2, frames)),
        pauses=[[], []],
        cues=[[], []],
    )
    last_end = 0.0
    for turn in script:
        start = max(turn.start + rng.normal(0, 0.1), last_end + 0.1)
        end = max(turn.end + rng.normal(0, 0.1), start + 0.8)
        last_end, length, r = end, end - start, turn.role
        plan.floor[r] = np.maximum(plan.floor[r], envelope(t, start, end, 0.2, 0.2))
        _speak_phrases(plan, turn, start, length, t, cue_rng)
        if turn.episode is not None:
            kind, ea, eb = turn.episode
            a = start + ea * length + rng.normal(0, 0.05)
            b = start + eb * length + rng.normal(0, 0.05)
            k = KINDS.index(kind)
            plan.episode[r, :, k] = np.maximum(plan.episode[r, :, k], envelope(t, a, b, 0.3, 0.5))
            if kind == "joke":
                plan.laugh[r] = np.maximum(plan.laugh[r], envelope(t, b - 0.1, b + 0.7, 0.05, 0.1))
    plan.speech *= 1 - plan.laugh  # laughter replaces speech
    plan.syll = plan.syll * plan.speech
    plan.pauses = [[(f, w) for f, w in p if f < frames] for p in plan.pauses]
    plan.cues = [[(c, k) for c, k in cues if c < (frames - 1) / FPS] for cues in plan.cues]
    return plan
