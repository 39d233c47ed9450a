"""The behaviour law of the dyadic world: what a person shows, speaking or listening.

While speaking, a person's face follows the script (:mod:`reactdiff_lite.data.people`).
While listening, the person *reacts* to the other, so the listener is caused by the speaker:

    affect_L(t) = g * (h_tau * affect_S)(t - lag) + mood + backchannels(pauses_S + lag) + noise

with ``g`` the mimicry gain, ``h_tau`` a causal exponential low-pass (damping) and
backchannels (nods, brief smiles, a soft "mm-hm") fired at the speaker's phrase ends and
turn ends. Affect (smile, frown, surprise) then drives continuous AU intensities through
fixed loadings, valence/arousal, expression probabilities and 3DMM coefficients (a fixed
seeded linear map of the AU intensities, with nods in the pitch).

Since generator 1.1 the listener also answers the speaker's speech acts and accents, which
only the voice carries (:mod:`reactdiff_lite.data.cues`): brow flashes on AU1/AU2, arousal
bumps and nods, added on top of the 1.0 law from their own random stream, so with cues off
every frame outside the response windows is byte-identical.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..schema import AU_NAMES, FE_NAMES, FPS, TDMM_EXP
from .cues import CUE_LAW, FaceCues, leak, respond
from .people import Persona, SessionPlan, Turn, keyed_rng, session_plan

N_AU = len(AU_NAMES)  # 15
N_EXP = TDMM_EXP.stop - TDMM_EXP.start  # 52 expression coefficients
MMHM_FRAMES = 12  # a vocal backchannel lasts about 0.5 s; none starts closer to the clip end


def delay(x: np.ndarray, lag: int) -> np.ndarray:
    """x(t - lag) along axis 0, zero-filled at the start."""
    return np.concatenate([np.zeros_like(x[:lag]), x[: len(x) - lag]]) if lag > 0 else x


def lowpass(x: np.ndarray, tau: float) -> np.ndarray:
    """Causal exponential smoothing (h_tau * x)(t) with time constant tau seconds, axis 0."""
    k = np.exp(-np.arange(int(4 * tau * FPS) + 1) / (tau * FPS))
    k /= k.sum()
    flat = x.reshape(len(x), -1)
    return np.stack([np.convolve(flat[:, j], k)[: len(x)] for j in range(flat.shape[1])], 1).reshape(x.shape)


def smooth_noise(rng: np.random.Generator, shape: tuple, width: float) -> np.ndarray:
    """Unit-variance Gaussian noise smoothed over ~``width`` seconds (at FPS) along axis 0."""
    n = max(1, int(width * FPS))
    k = np.hanning(2 * n + 1)
    raw = rng.standard_normal((shape[0] + 2 * n,) + tuple(shape[1:]))
    flat = raw.reshape(len(raw), -1)
    out = np.stack([np.convolve(flat[:, j], k, "valid") for j in range(flat.shape[1])], 1)
    return (out / np.sqrt((k**2).sum())).reshape(shape)


def _bump(t: np.ndarray, centre: float, width: float) -> np.ndarray:
    """Gaussian bump of standard deviation ``width`` seconds."""
    return np.exp(-0.5 * ((t - centre) / width) ** 2)


# AU intensity = clip(factors @ AU_LOADINGS + noise). Factors: smile, frown, surprise,
# lips (speech opening), jaw (syllables), laugh, listening (attentive closed mouth).
# fmt: off
AU_LOADINGS = np.array([
    # AU1  AU2  AU4  AU6  AU7  AU9 AU10 AU12 AU14 AU15 AU17 AU23 AU24 AU25 AU26
    [0.0, 0.0, 0.0, .75, .25, 0.0, .10, 1.0, .35, 0.0, 0.0, 0.0, 0.0, .15, 0.0],   # smile
    [.15, 0.0, .95, 0.0, .45, .50, .40, 0.0, 0.0, .80, .40, .35, .30, 0.0, 0.0],   # frown
    [.90, .85, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, .40, .50],   # surprise
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, .20, 0.0, .90, 0.0],   # lips
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, .95],   # jaw
    [0.0, 0.0, 0.0, .40, 0.0, .20, .55, .50, 0.0, 0.0, 0.0, 0.0, 0.0, .80, .60],   # laugh
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, .20, 0.0, .35, 0.0, .30, 0.0, 0.0],   # listening
])
# fmt: on
BROW_AU = np.zeros(N_AU)  # a cue's brow flash on the AU intensities
BROW_AU[[AU_NAMES.index("AU1"), AU_NAMES.index("AU2")]] = CUE_LAW.brow_au


def au_to_expression_map() -> tuple[np.ndarray, np.ndarray]:
    """The fixed, seeded linear map AU intensities (15) -> 52 3DMM expression coefficients: (W, b)."""
    rng = keyed_rng(20240, "3dmm-map")
    return rng.normal(0, 0.5, (N_AU, N_EXP)), rng.normal(0, 0.05, N_EXP)


@dataclass
class Behaviour:
    """Continuous tracks of one person in one clip (all (T, ...) float)."""

    affect: np.ndarray  # (T, 3) smile, frown, surprise
    au: np.ndarray  # (T, 15) continuous intensities in [0, 1]
    va: np.ndarray  # (T, 2) valence, arousal in [-1, 1]
    fe: np.ndarray  # (T, 8) expression probabilities
    tdmm: np.ndarray  # (T, 58)
    speech: np.ndarray  # (T,) own speech activity
    laugh: np.ndarray  # (T,)
    mmhm: list  # frames where a vocal backchannel starts

    @property
    def emotion(self) -> np.ndarray:
        """(T, 25) REACT columns: binary AUs (intensity > 0.5), VA, FE."""
        return np.concatenate([(self.au > 0.5), self.va, self.fe], 1).astype(np.float32)

    @property
    def emotion_intensity(self) -> np.ndarray:
        """(T, 25) like ``emotion`` but with the continuous AU intensities (for rendering)."""
        return np.concatenate([self.au, self.va, self.fe], 1).astype(np.float32)


Display = tuple[np.ndarray, np.ndarray]  # what a speaker shows: (affect (T, 3), laugh (T,))


def speaking_affect(plan: SessionPlan, role: int, persona: Persona, rng: np.random.Generator) -> Display:
    """What a person shows while speaking: script episodes scaled by expressivity. Returns
    (affect (T, 3), laugh (T,)); this is what the other person mimics."""
    strength = persona.expressivity * rng.uniform(0.85, 1.15, 3)  # this session's delivery
    laugh = np.clip(plan.laugh[role] * persona.expressivity, 0, 1)
    affect = plan.episode[role] * strength
    affect[:, 0] += 0.6 * laugh
    return affect, laugh


def _reaction(plan: SessionPlan, role: int, persona: Persona, other: Display, rng: np.random.Generator) -> tuple:
    """What a listener does: lagged, damped mimicry of the other's affect, laughter contagion,
    and backchannels at the other's pauses (after the reaction lag).

    Returns (mimic (T, 3), nods (T,), smiles (T,), mmhm start frames).
    """
    T = plan.speech.shape[1]
    t = np.arange(T) / FPS
    other_affect, other_laugh = other
    lag = int(round(persona.lag * FPS))
    mimic = persona.mimicry * lowpass(delay(other_affect, lag), 0.4)  # (T, 3)
    mimic[:, 0] += persona.smile * lowpass(delay(other_laugh, lag), 0.3)
    nods, smiles, mmhm = np.zeros(T), np.zeros(T), []
    for frame, weight in plan.pauses[1 - role]:
        c = (frame + lag) / FPS + rng.normal(0, 0.06)
        u = rng.random(3)
        if u[0] < persona.nod * min(1.0, 0.7 * weight):
            nods += rng.uniform(0.7, 1.2) * np.sin(2 * np.pi * 2.2 * (t - c)) * _bump(t, c + 0.25, 0.2)
        if u[1] < persona.smile * 0.6 * weight:
            smiles += 0.55 * _bump(t, c + 0.3, 0.3)
        if u[2] < persona.mmhm * weight and int(c * FPS) + MMHM_FRAMES < T:
            mmhm.append(int(c * FPS))
    return mimic, nods, smiles, mmhm


def _action_units(factors: np.ndarray, rng: np.random.Generator, brow: np.ndarray) -> np.ndarray:
    """(T, 7) factors -> (T, 15) AU intensities in [0, 1]: loadings plus smooth and white noise,
    plus the cues' brow flashes ``brow`` (T,) on AU1/AU2."""
    T = len(factors)
    au = factors @ AU_LOADINGS + 0.06 * smooth_noise(rng, (T, N_AU), 0.3) + 0.03 * rng.standard_normal((T, N_AU))
    return np.clip(au + brow[:, None] * BROW_AU, 0, 1)


def _valence_arousal(
    persona: Persona,
    affect: np.ndarray,
    speech: np.ndarray,
    laugh: np.ndarray,
    cue: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """(T, 2) valence (mood, smile vs frown) and arousal (speech, surprise, laughter, cue
    responses ``cue``) in [-1, 1]."""
    T = len(affect)
    smile, frown, surprise = affect.T
    valence_noise, arousal_noise = 0.08 * smooth_noise(rng, (T,), 1.0), 0.08 * smooth_noise(rng, (T,), 1.0)
    valence = persona.valence + 1.1 * smile - 1.1 * frown + 0.15 * surprise + valence_noise
    arousal = -0.25 + 0.45 * speech + 0.9 * surprise + 0.7 * laugh + 0.35 * frown + 0.25 * smile + arousal_noise
    arousal = arousal + cue
    return np.tanh(np.stack([valence, arousal], 1))


def _expressions(persona: Persona, affect: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(T, 8) expression probabilities: a softmax over one logit per expression (FE_NAMES order)."""
    T = len(affect)
    smile, frown, surprise = affect.T
    logits = np.stack(
        [
            np.full(T, 1.2),  # Neutral
            4.5 * smile - 1,  # Happy
            3 * frown - 1.5,  # Sad
            4.5 * surprise - 1.5,  # Surprise
            2 * surprise * frown - 2.5,  # Fear
            1.8 * frown - 2.8,  # Disgust
            2.6 * frown - 2.2,  # Anger
            1.2 * smile - 2.8 + 2 * max(-persona.valence, 0),  # Contempt
        ],
        1,
    )
    logits = logits + 0.15 * smooth_noise(rng, (T, len(FE_NAMES)), 0.4)
    fe = np.exp(logits - logits.max(1, keepdims=True))
    return fe / fe.sum(1, keepdims=True)


def _tdmm(
    persona: Persona,
    au: np.ndarray,
    speech: np.ndarray,
    syll: np.ndarray,
    nods: np.ndarray,
    roll: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """(T, 58) 3DMM: expression = mapped AUs; pitch/yaw/roll = head motion, talking and nods,
    plus the head tilts ``roll`` (T,) a cue leaks onto the speaker's face."""
    T = len(au)
    W, b = au_to_expression_map()
    expression = au @ W + b + 0.03 * rng.standard_normal((T, N_EXP))
    pitch = persona.head * (0.4 * smooth_noise(rng, (T,), 1.0) + 0.3 * speech * syll) + 0.12 * nods
    yaw = persona.head * smooth_noise(rng, (T,), 2.5)
    roll = 0.3 * persona.head * smooth_noise(rng, (T,), 2.5) + roll
    translation = 0.01 * smooth_noise(rng, (T, 3), 4.0)
    return np.concatenate([expression, np.stack([pitch, yaw, roll], 1), translation], 1)


def face_cues(plan: SessionPlan, role: int, persona: Persona, cue_rng: np.random.Generator, rho: float) -> FaceCues:
    """What cues add to one person's face: responses to the other person's cues while
    listening, and (probability ``rho``) leaks of their own cues while holding the floor."""
    T = plan.speech.shape[1]
    listen, floor = 1 - plan.floor[role], plan.floor[role]
    heard = respond(plan.cues[1 - role], persona.cue_response(), persona.lag, T, cue_rng)
    shown = leak(plan.cues[role], rho, T, cue_rng)
    brow = listen * heard.brow + floor * shown.brow
    return FaceCues(brow, listen * heard.arousal, listen * heard.nod, floor * shown.roll)


def behave(
    plan: SessionPlan,
    role: int,
    persona: Persona,
    spoken: Display,
    other: Display,
    rng: np.random.Generator,
    cue_rng: np.random.Generator,
    rho: float = 0.0,
) -> Behaviour:
    """One person's full behaviour: speaking where they hold the floor, reacting otherwise.

    Args:
        plan: the session's frame-level stimulus; role: this person's script role.
        persona: this person's traits; spoken: their own ``speaking_affect``.
        other: the other person's ``speaking_affect`` (what they react to).
        rng: this person's noise for this clip (backchannels, head motion, noise).
        cue_rng: this person's cue stream (responses to cues, leaks); rho: cue leakage.
    """
    T = plan.speech.shape[1]
    own, laugh = spoken
    listen = 1 - plan.floor[role]
    mimic, nods, smiles, mmhm = _reaction(plan, role, persona, other, rng)
    mood = np.array([max(persona.valence, 0) * 0.5, max(-persona.valence, 0) * 1.5, 0.0])
    affect = plan.floor[role][:, None] * own + listen[:, None] * (mimic + mood)
    affect[:, 0] += listen * smiles
    affect = np.clip(affect + 0.05 * smooth_noise(rng, (T, 3), 0.6), 0, 1.5)  # (T, 3)
    speech, syll = plan.speech[role], plan.syll[role]
    lips = speech * (0.5 + 0.5 * syll / max(syll.max(), 1e-6))
    factors = np.concatenate([affect, np.stack([lips, syll, laugh, listen * 0.9], 1)], 1)  # (T, 7)
    cues = face_cues(plan, role, persona, cue_rng, rho)
    au = _action_units(factors, rng, cues.brow)
    va = _valence_arousal(persona, affect, speech, laugh, cues.arousal, rng)
    fe = _expressions(persona, affect, rng)
    tdmm = _tdmm(persona, au, speech, syll, nods + cues.nod, cues.roll, rng)
    return Behaviour(affect, au, va, fe, tdmm, speech, laugh, mmhm)


@dataclass
class Session:
    """One performed session of the manifest, per pair column (0 = CSV column 1)."""

    plan: SessionPlan
    people: list[Persona]
    spoken: list[Display]  # what each person shows while speaking
    behaviour: list[Behaviour]
    rngs: list[np.random.Generator]  # each person's noise, after ``behave``: the voice continues it


def perform_session(
    pair: dict, script: tuple[Turn, ...], frames: int, personas: dict, cues: bool = True, rho: float = 0.0
) -> Session:
    """Perform one session of the manifest: its plan, both personas, their speaking displays
    and behaviour (shared by the writer and the oracle, so both see the same people).

    Args:
        pair: a manifest pair (``script``, ``personas``, ``roles``, ``session_seed``, ``paths``).
        script: its script's turns; frames: clip frames; personas: the manifest's persona table.
        cues: speech acts and accents on (generator 1.1) or off; rho: their leakage to the face.
    """
    seed, roles = pair["session_seed"], pair["roles"]
    plan = session_plan(script, seed, frames, cues)
    people = [Persona(**personas[p]) for p in pair["personas"]]
    spoken = [speaking_affect(plan, roles[c], people[c], keyed_rng(seed, "speak", c)) for c in range(2)]
    rngs = [keyed_rng(seed, "behave", c) for c in range(2)]
    behaviour = [
        behave(plan, roles[c], people[c], spoken[c], spoken[1 - c], rngs[c], keyed_rng(seed, "cues", c), rho)
        for c in range(2)
    ]
    return Session(plan, people, spoken, behaviour, rngs)
