"""The dyadic world: synthetic two-person conversations written in REACT 2024 layout.

The REACT data needs a licence, so reactdiff-lite ships a generator (``dyadic_world.md``).
Two persons take turns. A **script** fixes the stimulus: the turn schedule, the phrases
and syllables of each turn, and affect episodes (a joke -> smile and laugh, a complaint
-> frown, news -> surprise with raised brows). A **persona** fixes a person's traits
(expressivity, mimicry gain, reaction lag 0.2-1.0 s, nod/smile/"mm-hm" propensity,
baseline valence, head-motion style, voice). A **session** is one script performed by a
pair of personas, with timing jitter and noise.

While speaking, a person's face and voice follow the script. While listening, the person
*reacts* to the other, so the listener is caused by the speaker:

    affect_L(t) = g * (h_tau * affect_S)(t - lag) + baseline + backchannels(pauses_S + lag)

with ``g`` the mimicry gain, ``h_tau`` a causal exponential low-pass (damping) and
backchannels (nods, brief smiles, a soft "mm-hm") fired at the speaker's phrase ends and
turn ends. Sessions of one script give similar speakers and different listeners: the
appropriate set ``A[k, j] = 1`` iff items k and j share script and speaker role. Because
the causal model is known, :func:`oracle_reactions` draws fresh appropriate listeners
(new persona, new noise) for any speaker performance.

Per person-clip the generator writes an emotion CSV (15 binary AUs thresholded from
continuous intensities, valence/arousal in [-1, 1], 8 expression probabilities), a 3DMM
npy (52 expression coefficients = a fixed seeded linear map of AU intensities, pitch/yaw/
roll with nods in pitch, translation), a 16 kHz mono wav (source-filter speech synthesis)
and a 64x64 mp4 of cartoon faces (:mod:`reactdiff_lite.render`).
"""

from __future__ import annotations

import io
import json
import shutil
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ..render import render_faces
from ..utils import atomic_write, atomic_write_json, atomic_write_text
from .schema import (AUDIO_RATE, EMOTION_NAMES, FPS, SAMPLES_PER_FRAME, SPLITS, TDMM_DIM)

GENERATOR_VERSION = "1.0"
VIDEO_SIZE = 64


# ----------------------------------------------------------------------------- presets
@dataclass(frozen=True)
class Preset:
    clip_frames: int            # frames per clip file (models use clip_frames - 1)
    scripts: tuple[int, int, int]   # scripts per split (train, val, test)
    personas: tuple[int, int, int]  # persona pool per split, disjoint across splits
    sessions_per_script: int    # performances of each script: the appropriate-set size
    clips_per_recording: int    # clips (sessions) recorded by one persona pair


PRESETS = {
    "smoke": Preset(clip_frames=151, scripts=(2, 2, 2), personas=(4, 3, 3),
                    sessions_per_script=3, clips_per_recording=3),
    "default": Preset(clip_frames=751, scripts=(25, 6, 6), personas=(16, 6, 6),
                      sessions_per_script=4, clips_per_recording=4),
    # the tiny format sample committed under data/sample/ (one train pair of 11 frames)
    "sample": Preset(clip_frames=11, scripts=(1, 0, 0), personas=(2, 0, 0),
                     sessions_per_script=1, clips_per_recording=1),
}

# Site-like names, as in the real 2024 release (react_benchmark.md): NoXI sessions with
# Expert/Novice video folders, RECOLA groups with P25/P26-style persons; Emotion uses P1/P2.
_NOXI = ("Expert_video", "Novice_video")
_RECOLA = (("P25", "P26"), ("P41", "P42"), ("P45", "P46"))
KINDS = ("joke", "complaint", "news")  # affect episodes -> smile, frown, surprise


def _rng(*keys: int | str) -> np.random.Generator:
    """An independent generator for a tuple of keys (ints or strings)."""
    return np.random.default_rng([k if isinstance(k, int) else zlib.crc32(k.encode()) for k in keys])


# ---------------------------------------------------------------------------- personas
@dataclass(frozen=True)
class Persona:
    expressivity: float   # scales the person's own affect displays
    mimicry: float        # gain g of the lagged, damped mimicry while listening
    lag: float            # reaction lag in seconds (0.2-1.0)
    nod: float            # probability of a nod at a speaker pause
    smile: float          # probability of a brief smile at a pause; laughter contagion
    mmhm: float           # probability of a vocal "mm-hm" at a pause
    valence: float        # baseline valence (mood)
    head: float           # head-motion amplitude (radians)
    f0: float             # voice pitch (Hz)
    formant: float        # vocal-tract scale of the formants


def draw_persona(rng: np.random.Generator) -> Persona:
    """A persona from the population (the oracle draws fresh ones from the same law)."""
    return Persona(expressivity=round(rng.uniform(0.75, 1.25), 4), mimicry=round(rng.uniform(0.45, 0.85), 4),
                   lag=round(rng.uniform(0.2, 1.0), 4), nod=round(rng.uniform(0.4, 0.9), 4),
                   smile=round(rng.uniform(0.25, 0.7), 4), mmhm=round(rng.uniform(0.15, 0.6), 4),
                   valence=round(rng.uniform(-0.15, 0.3), 4), head=round(rng.uniform(0.03, 0.08), 4),
                   f0=round(rng.uniform(95, 230), 2), formant=round(rng.uniform(0.9, 1.15), 4))


# ----------------------------------------------------------------------------- scripts
@dataclass(frozen=True)
class Turn:
    role: int                                  # 0 = role A, 1 = role B
    start: float                               # seconds
    end: float
    phrases: tuple[tuple[float, float], ...]   # fractions of the turn
    episode: tuple[str, float, float] | None   # (kind, start, end) as fractions of the turn
    seed: int                                  # syllables and vowels of this turn


def make_script(seed: int, duration: float) -> tuple[Turn, ...]:
    """The stimulus: alternating turns (2-5 s, gaps 0.2-0.6 s), phrases (0.8-2 s, pauses
    0.25-0.5 s) and, in 2 of 3 turns, one affect episode."""
    rng = _rng(seed, "script")
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
        turns.append(Turn(role, round(t, 3), round(end, 3), tuple(phrases), episode, int(rng.integers(2**31))))
        t, role = end + rng.uniform(0.2, 0.6), 1 - role
    return tuple(turns)


# ---------------------------------------------------------------------------- sessions
@dataclass
class Plan:
    """Frame-level stimulus of one session (both roles share its timing). Arrays are (2, T)."""
    floor: np.ndarray     # role r holds the turn (0/1, smoothed edges)
    speech: np.ndarray    # speech activity in [0, 1]
    syll: np.ndarray      # syllable nucleus (jaw opening) in [0, 1]
    vowel: np.ndarray     # vowel index per frame (int)
    episode: np.ndarray   # (2, T, 3) envelopes of joke / complaint / news
    laugh: np.ndarray     # laughter after a joke, in [0, 1]
    pauses: list          # per role: [(frame, weight)] phrase ends (1) and turn ends (1.5)


def _box(t: np.ndarray, a: float, b: float, rise: float, fall: float) -> np.ndarray:
    """Trapezoid envelope: 0 before a, ramps up over ``rise`` s, down over ``fall`` s after b."""
    return np.clip(np.minimum((t - a) / rise + 1, (b - t) / fall + 1), 0, 1) * (t >= a - rise) * (t <= b + fall)


def session_plan(script: tuple[Turn, ...], session_seed: int, frames: int) -> Plan:
    """Jitter the script's timing for one session (turn edges +-0.1 s) and render it to frames."""
    rng = _rng(session_seed, "timing")
    t = np.arange(frames) / FPS
    floor, speech, syll = np.zeros((2, frames)), np.zeros((2, frames)), np.zeros((2, frames))
    vowel, episode, laugh = np.zeros((2, frames), np.int64), np.zeros((2, frames, 3)), np.zeros((2, frames))
    pauses: list = [[], []]
    last_end = 0.0
    for turn in script:
        start = max(turn.start + rng.normal(0, 0.1), last_end + 0.1)
        end = max(turn.end + rng.normal(0, 0.1), start + 0.8)
        last_end, length, r = end, end - start, turn.role
        floor[r] = np.maximum(floor[r], _box(t, start, end, 0.2, 0.2))
        srng = _rng(turn.seed, "syllables")
        for i, (pa, pb) in enumerate(turn.phrases):
            a, b = start + pa * length, start + pb * length
            speech[r] = np.maximum(speech[r], _box(t, a, b, 0.06, 0.06))
            onsets = np.arange(a, b, 1 / 4.5) + srng.uniform(-0.03, 0.03, len(np.arange(a, b, 1 / 4.5)))
            for o in onsets:  # raised-cosine nucleus of ~0.16 s per syllable
                syll[r] = np.maximum(syll[r], np.clip(np.cos(np.pi * (t - o - 0.08) / 0.16), 0, 1) * (np.abs(t - o - 0.08) < 0.08))
                vowel[r, (t >= o) & (t < o + 1 / 4.5)] = srng.integers(5)
            pauses[r].append((int(round(b * FPS)), 1.5 if i == len(turn.phrases) - 1 else 1.0))
        if turn.episode is not None:
            kind, ea, eb = turn.episode
            a = start + ea * length + rng.normal(0, 0.05)
            b = start + eb * length + rng.normal(0, 0.05)
            k = KINDS.index(kind)
            episode[r, :, k] = np.maximum(episode[r, :, k], _box(t, a, b, 0.3, 0.5))
            if kind == "joke":
                laugh[r] = np.maximum(laugh[r], _box(t, b - 0.1, b + 0.7, 0.05, 0.1))
    speech *= 1 - laugh  # laughter replaces speech
    pauses = [[(f, w) for f, w in p if f < frames] for p in pauses]
    return Plan(floor, speech, syll * speech, vowel, episode, laugh, pauses)


# ------------------------------------------------------------------------- behaviour
def _shift(x: np.ndarray, lag: int) -> np.ndarray:
    """x(t - lag) along axis 0, zero-filled at the start."""
    return np.concatenate([np.zeros_like(x[:lag]), x[:len(x) - lag]]) if lag > 0 else x


def _lowpass(x: np.ndarray, tau: float) -> np.ndarray:
    """Causal exponential smoothing (h_tau * x)(t) with time constant tau seconds, axis 0."""
    k = np.exp(-np.arange(int(4 * tau * FPS) + 1) / (tau * FPS))
    k /= k.sum()
    flat = x.reshape(len(x), -1)
    return np.stack([np.convolve(flat[:, j], k)[:len(x)] for j in range(flat.shape[1])], 1).reshape(x.shape)


def _smooth_noise(rng: np.random.Generator, shape: tuple, width: float) -> np.ndarray:
    """Unit-variance Gaussian noise smoothed over ~``width`` seconds along axis 0."""
    n = max(1, int(width * FPS))
    k = np.hanning(2 * n + 1)
    raw = rng.standard_normal((shape[0] + 2 * n,) + tuple(shape[1:]))
    flat = raw.reshape(len(raw), -1)
    out = np.stack([np.convolve(flat[:, j], k, "valid") for j in range(flat.shape[1])], 1)
    return (out / np.sqrt((k ** 2).sum())).reshape(shape)


def _bump(t: np.ndarray, centre: float, width: float) -> np.ndarray:
    return np.exp(-0.5 * ((t - centre) / width) ** 2)


# AU intensity = clip(factors @ _AU_LOADINGS + noise). Factors: smile, frown, surprise,
# lips (speech opening), jaw (syllables), laugh, listening (attentive closed mouth).
_AU_LOADINGS = np.array([
    # AU1  AU2  AU4  AU6  AU7  AU9 AU10 AU12 AU14 AU15 AU17 AU23 AU24 AU25 AU26
    [0.0, 0.0, 0.0, .75, .25, 0.0, .10, 1.0, .35, 0.0, 0.0, 0.0, 0.0, .15, 0.0],   # smile
    [.15, 0.0, .95, 0.0, .45, .50, .40, 0.0, 0.0, .80, .40, .35, .30, 0.0, 0.0],   # frown
    [.90, .85, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, .40, .50],   # surprise
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, .20, 0.0, .90, 0.0],   # lips
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, .95],   # jaw
    [0.0, 0.0, 0.0, .40, 0.0, .20, .55, .50, 0.0, 0.0, 0.0, 0.0, 0.0, .80, .60],   # laugh
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, .20, 0.0, .35, 0.0, .30, 0.0, 0.0],   # listening
])


def _tdmm_map() -> tuple[np.ndarray, np.ndarray]:
    """The fixed, seeded linear map AU intensities (15) -> 52 expression coefficients."""
    rng = _rng(20240, "3dmm-map")
    return rng.normal(0, 0.5, (15, 52)), rng.normal(0, 0.05, 52)


@dataclass
class Behaviour:
    """Continuous tracks of one person in one clip (all (T, ...) float)."""
    affect: np.ndarray     # (T, 3) smile, frown, surprise
    au: np.ndarray         # (T, 15) continuous intensities in [0, 1]
    va: np.ndarray         # (T, 2) valence, arousal in [-1, 1]
    fe: np.ndarray         # (T, 8) expression probabilities
    tdmm: np.ndarray       # (T, 58)
    speech: np.ndarray     # (T,) own speech activity
    laugh: np.ndarray      # (T,)
    mmhm: list             # frames where a vocal backchannel starts

    @property
    def emotion(self) -> np.ndarray:
        """(T, 25) REACT columns: binary AUs (intensity > 0.5), VA, FE."""
        return np.concatenate([(self.au > 0.5), self.va, self.fe], 1).astype(np.float32)

    @property
    def emotion_intensity(self) -> np.ndarray:
        """(T, 25) like ``emotion`` but with the continuous AU intensities (for rendering)."""
        return np.concatenate([self.au, self.va, self.fe], 1).astype(np.float32)


def speaking_affect(plan: Plan, role: int, persona: Persona, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """What a person shows while speaking: script episodes scaled by expressivity. Returns
    (affect (T, 3), laugh (T,)); this is what the other person mimics."""
    strength = persona.expressivity * rng.uniform(0.85, 1.15, 3)  # this session's delivery
    laugh = np.clip(plan.laugh[role] * persona.expressivity, 0, 1)
    affect = plan.episode[role] * strength
    affect[:, 0] += 0.6 * laugh
    return affect, laugh


def behave(plan: Plan, role: int, persona: Persona, spoken: tuple[np.ndarray, np.ndarray],
           other: tuple[np.ndarray, np.ndarray], rng: np.random.Generator) -> Behaviour:
    """One person's full behaviour: speaking where they hold the floor, reacting otherwise.

    Args:
        plan: the session's frame-level stimulus; role: this person's script role.
        persona: this person's traits; spoken: their own ``speaking_affect``.
        other: the other person's ``speaking_affect`` (what they react to).
        rng: this person's noise for this clip (backchannels, head motion, noise).
    """
    T = plan.speech.shape[1]
    t = np.arange(T) / FPS
    own, laugh = spoken
    o_affect, o_laugh = other
    listen = 1 - plan.floor[role]
    lag = int(round(persona.lag * FPS))
    # Listening: lagged, damped mimicry of the other's affect + laughter contagion.
    mimic = persona.mimicry * _lowpass(_shift(o_affect, lag), 0.4)               # (T, 3)
    mimic[:, 0] += persona.smile * _lowpass(_shift(o_laugh, lag), 0.3)
    # Backchannels at the other's phrase ends and turn ends, after the reaction lag.
    nods, smiles, mmhm = np.zeros(T), np.zeros(T), []
    for frame, weight in plan.pauses[1 - role]:
        c = (frame + lag) / FPS + rng.normal(0, 0.06)
        u = rng.random(3)
        if u[0] < persona.nod * min(1.0, 0.7 * weight):
            nods += rng.uniform(0.7, 1.2) * np.sin(2 * np.pi * 2.2 * (t - c)) * _bump(t, c + 0.25, 0.2)
        if u[1] < persona.smile * 0.6 * weight:
            smiles += 0.55 * _bump(t, c + 0.3, 0.3)
        if u[2] < persona.mmhm * weight and int(c * FPS) + 12 < T:
            mmhm.append(int(c * FPS))
    mood = np.array([max(persona.valence, 0) * 0.5, max(-persona.valence, 0) * 1.5, 0.0])
    affect = plan.floor[role][:, None] * own + listen[:, None] * (mimic + mood)
    affect[:, 0] += listen * smiles
    affect = np.clip(affect + 0.05 * _smooth_noise(rng, (T, 3), 0.6), 0, 1.5)
    speech, syll = plan.speech[role], plan.syll[role]
    factors = np.concatenate([affect, np.stack([speech * (0.5 + 0.5 * syll / max(syll.max(), 1e-6)),
                                                syll, laugh, listen * 0.9], 1)], 1)   # (T, 7)
    au = factors @ _AU_LOADINGS + 0.06 * _smooth_noise(rng, (T, 15), 0.3) + 0.03 * rng.standard_normal((T, 15))
    au = np.clip(au, 0, 1)
    smile, frown, surprise = affect.T
    va = np.tanh(np.stack([
        persona.valence + 1.1 * smile - 1.1 * frown + 0.15 * surprise + 0.08 * _smooth_noise(rng, (T,), 1.0),
        -0.25 + 0.45 * speech + 0.9 * surprise + 0.7 * laugh + 0.35 * frown + 0.25 * smile
        + 0.08 * _smooth_noise(rng, (T,), 1.0)], 1))
    logits = np.stack([np.full(T, 1.2), 4.5 * smile - 1, 3 * frown - 1.5, 4.5 * surprise - 1.5,
                       2 * surprise * frown - 2.5, 1.8 * frown - 2.8, 2.6 * frown - 2.2,
                       1.2 * smile - 2.8 + 2 * max(-persona.valence, 0)], 1) + 0.15 * _smooth_noise(rng, (T, 8), 0.4)
    fe = np.exp(logits - logits.max(1, keepdims=True))
    fe /= fe.sum(1, keepdims=True)
    W, b = _tdmm_map()
    exp = au @ W + b + 0.03 * rng.standard_normal((T, 52))
    pitch = persona.head * (0.4 * _smooth_noise(rng, (T,), 1.0) + 0.3 * speech * syll) + 0.12 * nods
    yaw = persona.head * _smooth_noise(rng, (T,), 2.5)
    roll = 0.3 * persona.head * _smooth_noise(rng, (T,), 2.5)
    trans = 0.01 * _smooth_noise(rng, (T, 3), 4.0)
    tdmm = np.concatenate([exp, np.stack([pitch, yaw, roll], 1), trans], 1)
    return Behaviour(affect, au, va, fe, tdmm, speech, laugh, mmhm)


# ----------------------------------------------------------------------------- audio
# Formants (F1, F2, F3) in Hz of the vowels /a e i o u/ and of the nasal murmur /m/.
_VOWELS = np.array([[730, 1090, 2440], [530, 1840, 2480], [270, 2290, 3010], [570, 840, 2410], [300, 870, 2240]])
_NASAL = np.array([250, 1000, 2200])
_N_FFT, _HOP = 512, 160


def synth_audio(plan: Plan, role: int, behaviour: Behaviour, persona: Persona, rng: np.random.Generator) -> np.ndarray:
    """Source-filter speech: a glottal pulse train (pitch rises with arousal) and noise,
    shaped per 10 ms frame by formant resonances in the STFT domain. Laughter is breathy
    voiced /a/ pulsed at 5 Hz with raised pitch; a backchannel is a soft nasal "mm-hm".

    Returns (T * 640,) float32 mono samples at 16 kHz.
    """
    T = plan.speech.shape[1]
    n = T * SAMPLES_PER_FRAME
    frames = 1 + n // _HOP
    at = np.arange(frames) * _HOP / SAMPLES_PER_FRAME          # STFT frame -> video frame
    up = lambda x: np.interp(at, np.arange(T), x)              # noqa: E731  video rate -> STFT rate
    ts = at / FPS
    # Glottal gates (STFT rate).
    voiced = up(plan.syll[role] * 0.8 + 0.2 * plan.speech[role])
    ha = up(behaviour.laugh) * (0.5 + 0.5 * np.cos(2 * np.pi * 5 * ts)) ** 2
    mm = np.zeros(frames)
    pitch_mm = np.zeros(frames)
    for f in behaviour.mmhm:  # "mm" (0.18 s), gap, "hm" (0.22 s, rising)
        c = f / FPS
        mm += _box(ts, c, c + 0.18, 0.03, 0.04) + _box(ts, c + 0.26, c + 0.48, 0.03, 0.06)
        pitch_mm += 0.15 * np.clip((ts - c - 0.26) / 0.22, 0, 1) * (ts > c + 0.26) * (ts < c + 0.56)
    noise_gate = up(plan.speech[role] * (1 - plan.syll[role])) * 0.25 + 0.5 * ha
    # Pitch contour: persona f0, arousal, phrase declination, laughter and "mm-hm" shapes.
    arousal = up(behaviour.va[:, 1])
    f0 = persona.f0 * (1 + 0.25 * arousal + 0.5 * up(behaviour.laugh) + pitch_mm
                       + 0.03 * _smooth_noise(rng, (frames,), 0.3 * 4))
    f0_samples = np.interp(np.arange(n) / _HOP, np.arange(frames), f0)
    phase = np.cumsum(f0_samples / AUDIO_RATE)
    pulses = np.diff(np.floor(phase), prepend=0.0).astype(np.float32)  # one impulse per period
    noise = rng.standard_normal(n).astype(np.float32)
    # Formants per STFT frame: the syllable's vowel, /a/ when laughing, /m/ for "mm-hm".
    code = up(plan.vowel[role]).round().astype(int)                     # (F,) vowel index
    code = np.where(ha > 0.05, 0, code)                                  # laughter: /a/
    code = np.where(mm > 0.05, len(_VOWELS), code)                       # "mm-hm": /m/
    freqs = np.fft.rfftfreq(_N_FFT, 1 / AUDIO_RATE)                      # (B,)
    formants = np.concatenate([_VOWELS, _NASAL[None]]) * persona.formant  # (6, 3)
    bandwidth, amp = np.array([60, 90, 120]), np.array([1.0, 0.6, 0.3])
    # Vocal-tract filter |H(f)| = sum_k a_k / (1 + ((f - F_k) / b_k)^2), one row per vowel.
    resonance = (amp / (1 + ((freqs[None, :, None] - formants[:, None, :]) / bandwidth) ** 2)).sum(-1)  # (6, B)
    tilt = 1 / np.sqrt(1 + (freqs / 300) ** 2)                          # glottal roll-off
    filt_v = torch.from_numpy((resonance * tilt).astype(np.float32))[code]                   # (F, B)
    filt_n = torch.from_numpy((0.3 * resonance + np.clip(freqs / 6000, 0, 1)).astype(np.float32))[code]
    gain_v = torch.from_numpy(np.clip(voiced + ha + 0.35 * mm, 0, 1.2).astype(np.float32))[:, None]
    gain_n = torch.from_numpy((0.08 * noise_gate).astype(np.float32))[:, None]
    window = torch.hann_window(_N_FFT)
    stft = lambda x: torch.stft(torch.from_numpy(x), _N_FFT, _HOP, window=window, return_complex=True).T  # noqa: E731
    spec = stft(pulses) * (gain_v * filt_v) + stft(noise) * (gain_n * filt_n)  # (F, B)
    y = torch.istft(spec.T, _N_FFT, _HOP, window=window, length=n).numpy()
    y = 5.0 * y + 3e-4 * rng.standard_normal(n).astype(np.float32)  # room noise floor
    return np.clip(y, -1, 1).astype(np.float32)


# --------------------------------------------------------------------------- writing
def _csv_text(emotion: np.ndarray) -> str:
    """REACT emotion CSV: a header row, then T rows x 25 columns (AUs as 0.0/1.0)."""
    head = ",".join(EMOTION_NAMES)
    rows = ["{},{}".format(",".join("%.1f" % v for v in row[:15]), ",".join("%.5f" % v for v in row[15:]))
            for row in emotion]
    return head + "\n" + "\n".join(rows) + "\n"


def _write_npy(path: Path, array: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, array)
    atomic_write(path, write)


def _write_wav(path: Path, audio: np.ndarray) -> None:
    atomic_write(path, lambda tmp: sf.write(tmp, audio, AUDIO_RATE, subtype="PCM_16", format="WAV"))


def write_mp4(path: Path, frames: np.ndarray, fps: int = FPS) -> None:
    """(T, H, W, 3) uint8 -> an H.264 mp4 at ``fps`` (PyAV), written atomically."""
    import av

    def write(tmp: Path) -> None:
        with av.open(str(tmp), "w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
            stream.options = {"preset": "ultrafast", "crf": "26"}
            stream.codec_context.thread_count = 1  # tiny frames: threads cost more than they give
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())
    atomic_write(path, write)


def _emotion_person(site: str, person: str) -> str:
    """Video person folder -> Emotion person folder (P1/P2 in the 2024 release)."""
    if site == "NoXI":
        return "P1" if person == _NOXI[0] else "P2"
    return "P1" if any(person == a for a, _ in _RECOLA) else "P2"


def _session(plan_: dict, script: tuple, frames: int, personas: dict) -> tuple[Plan, list, list]:
    """Plan and both persons' speaking affect for a session spec (shared by writer and oracle)."""
    plan = session_plan(script, plan_["session_seed"], frames)
    people = [Persona(**personas[p]) for p in plan_["personas"]]
    spoken = [speaking_affect(plan, plan_["roles"][c], people[c], _rng(plan_["session_seed"], "speak", c))
              for c in range(2)]
    return plan, people, spoken


def _write_session(root: str, split: str, spec: dict, script: tuple, frames: int, personas: dict) -> None:
    """Simulate one session and write both persons' four files."""
    torch.set_num_threads(1)
    plan, people, spoken = _session(spec, script, frames, personas)
    for c in range(2):
        rng = _rng(spec["session_seed"], "behave", c)
        role = spec["roles"][c]
        b = behave(plan, role, people[c], spoken[c], spoken[1 - c], rng)
        clip = spec["paths"][c]
        site, session, person, name = clip.split("/")
        base = Path(root) / split
        emotion_path = base / "Emotion" / site / session / _emotion_person(site, person) / f"{name}.csv"
        atomic_write_text(emotion_path, _csv_text(b.emotion))
        _write_npy(base / "3D_FV_files" / f"{clip}.npy", b.tdmm.astype(np.float32)[:, None, :])  # (T, 1, 58)
        _write_wav(base / "Audio_files" / f"{clip}.wav", synth_audio(plan, role, b, people[c], rng))
        write_mp4(base / "Video_files" / f"{clip}.mp4", render_faces(b.emotion_intensity, b.tdmm, VIDEO_SIZE))


def plan_dataset(preset: str, seed: int) -> dict:
    """The manifest: scripts, personas and sessions of every split (no files written)."""
    cfg = PRESETS[preset]
    manifest: dict = {"generator_version": GENERATOR_VERSION, "preset": preset, "seed": seed,
                      "config": asdict(cfg), "fps": FPS, "audio_rate": AUDIO_RATE,
                      "video_size": VIDEO_SIZE, "personas": {}, "scripts": {}, "splits": {}}
    recording = 0
    for s, split in enumerate(SPLITS):
        if cfg.scripts[s] == 0:
            continue
        rng = _rng(seed, "plan", split)
        persona_ids = [f"{split}-p{i:02d}" for i in range(cfg.personas[s])]
        for pid in persona_ids:
            manifest["personas"][pid] = asdict(draw_persona(_rng(seed, "persona", pid)))
        script_ids = [f"{split}-s{i:02d}" for i in range(cfg.scripts[s])]
        for sid in script_ids:
            manifest["scripts"][sid] = int(_rng(seed, "script", sid).integers(2**31))
        sessions = [sid for _ in range(cfg.sessions_per_script) for sid in script_ids]
        order = rng.permutation(len(sessions))
        pairs = []
        for start in range(0, len(sessions), cfg.clips_per_recording):
            recording += 1
            pair = [persona_ids[i] for i in rng.choice(len(persona_ids), 2, replace=False)]
            if recording % 4 == 0:   # every fourth recording is a RECOLA-style group
                site, folder = "RECOLA", f"group-{recording // 4}"
                persons = _RECOLA[(recording // 4) % len(_RECOLA)]
            else:
                site, folder, persons = "NoXI", f"{recording:03d}_2016-04-{1 + recording % 28:02d}_Synthville", _NOXI
            for clip, idx in enumerate(order[start:start + cfg.clips_per_recording], 1):
                pairs.append({"script": sessions[idx], "personas": pair,
                              "roles": [int(r) for r in rng.permutation(2)],
                              "session_seed": int(rng.integers(2**31)),
                              "paths": [f"{site}/{folder}/{persons[c]}/{clip}" for c in range(2)]})
        manifest["splits"][split] = {"scripts": script_ids, "personas": persona_ids, "pairs": pairs}
    return manifest


def neighbour_matrix(pairs: list[dict]) -> np.ndarray:
    """(2M, 2M) 0/1 in mirrored item order: A[k, j] = 1 iff same script and same speaker role."""
    M = len(pairs)
    script = [p["script"] for p in pairs] * 2
    role = [p["roles"][0] for p in pairs] + [p["roles"][1] for p in pairs]
    same_script = np.array(script)[:, None] == np.array(script)[None, :]
    same_role = np.array(role)[:, None] == np.array(role)[None, :]
    return (same_script & same_role).astype(np.int64)


def _owned(root: Path) -> list[Path]:
    return [root / "manifest.json", root / ".cache", *(root / s for s in SPLITS), *(root / f"{s}.csv" for s in SPLITS),
            *(root / f"neighbour_emotion_{s}.npy" for s in SPLITS)]


def generate(out: str | Path, preset: str = "default", seed: int = 0, workers: int | None = None) -> Path:
    """Write the synthetic dyadic world in REACT 2024 layout under ``out``.

    Args:
        out: dataset root. Earlier generated content (our manifest, splits) is replaced.
        preset: ``"smoke"`` (151-frame clips, a handful of sessions), ``"default"``
            (751-frame clips, 100/24/24 pairs) or ``"sample"`` (one 11-frame train pair).
        seed: everything is a function of it: same seed, byte-identical CSV/NPY files.
        workers: processes (default: 1 for smoke, 2 otherwise).

    Returns:
        The root path. ``manifest.json`` is written last and marks a complete dataset.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    root = Path(out)
    for path in _owned(root):
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    manifest = plan_dataset(preset, seed)
    frames = PRESETS[preset].clip_frames
    scripts = {sid: make_script(s, frames / FPS) for sid, s in manifest["scripts"].items()}
    jobs = [(str(root), split, pair, scripts[pair["script"]], frames, manifest["personas"])
            for split in manifest["splits"] for pair in manifest["splits"][split]["pairs"]]
    workers = workers or (2 if preset == "default" else 1)
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_write_session, *zip(*jobs), chunksize=4))
    else:
        for job in jobs:
            _write_session(*job)
    for split in manifest["splits"]:
        pairs = manifest["splits"][split]["pairs"]
        rows = [",speaker_path,listener_path"] + [f"{i},{p['paths'][0]},{p['paths'][1]}" for i, p in enumerate(pairs)]
        atomic_write_text(root / f"{split}.csv", "\n".join(rows) + "\n")
        _write_npy(root / f"neighbour_emotion_{split}.npy", neighbour_matrix(pairs))
    atomic_write_json(root / "manifest.json", manifest)
    return root


def read_manifest(root: str | Path) -> dict | None:
    path = Path(root) / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else None


def ensure_dataset(root: str | Path, preset: str = "default", seed: int = 0) -> Path:
    """Generate under ``root`` unless a complete dataset of this preset, seed and
    generator version is already there."""
    m = read_manifest(root)
    if m and (m.get("generator_version"), m.get("preset"), m.get("seed")) == (GENERATOR_VERSION, preset, seed):
        return Path(root)
    return generate(root, preset, seed)


# ---------------------------------------------------------------------------- oracle
def simulate_item(root: str | Path, split: str, item: int) -> dict:
    """Re-simulate an item's session: continuous tracks of its speaker and listener.

    Returns dict(plan, speaker=Behaviour, listener=Behaviour, speaker_role, pair).
    """
    m = read_manifest(root)
    if m is None:
        raise FileNotFoundError(f"{Path(root) / 'manifest.json'} is missing: not a generated dataset")
    pairs = m["splits"][split]["pairs"]
    pair, s = pairs[item % len(pairs)], int(item >= len(pairs))   # s = the speaker's column
    frames = m["config"]["clip_frames"]
    script = make_script(m["scripts"][pair["script"]], frames / FPS)
    plan, people, spoken = _session(pair, script, frames, m["personas"])
    b = [behave(plan, pair["roles"][c], people[c], spoken[c], spoken[1 - c], _rng(pair["session_seed"], "behave", c))
         for c in range(2)]
    return {"plan": plan, "speaker": b[s], "listener": b[1 - s], "speaker_role": pair["roles"][s],
            "pair": pair, "spoken": spoken, "speaker_column": s}


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
        persona = draw_persona(_rng(seed, "oracle-persona", split, item, i))
        rng = _rng(seed, "oracle", split, item, i)
        spoken = speaking_affect(plan, role, persona, rng)
        b = behave(plan, role, persona, spoken, sim["spoken"][s], rng)
        emotion.append(b.emotion[:T])
        tdmm.append(b.tdmm[:T].astype(np.float32))
    return {"emotion": np.stack(emotion), "tdmm": np.stack(tdmm)}


# ------------------------------------------------------------------------------- CLI
def _disk_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def cli_synth(args) -> int:
    """``python -m reactdiff_lite data synth --out DIR --preset smoke|default --seed N``."""
    start = time.perf_counter()
    root = generate(args.out, args.preset, args.seed)
    seconds = time.perf_counter() - start
    m = read_manifest(root)
    pairs = {s: len(m["splits"][s]["pairs"]) for s in m["splits"]}
    print(f"wrote {args.preset} dyadic world (seed {args.seed}) to {root} in {seconds:.1f} s")
    print(f"  pairs per split {pairs} (items = 2 x pairs), {m['config']['clip_frames']} frames per clip, "
          f"{len(m['scripts'])} scripts, {len(m['personas'])} personas, {_disk_size(root) / 1e6:.1f} MB")
    print(f"  check it: python -m reactdiff_lite data check --root {root}")
    return 0
