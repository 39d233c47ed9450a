"""The voices of the dyadic world: source-filter speech synthesis, one wav per person-clip.

A glottal pulse train (pitch from the persona, rising with arousal) and noise are shaped
per 10 ms STFT frame by the formant resonances of each syllable's vowel. Laughter is
breathy voiced /a/ pulsed at 5 Hz with raised pitch; a backchannel is a soft nasal "mm-hm".
The speaker's own cues (:mod:`reactdiff_lite.data.cues`, generator 1.1) shape the pitch
and energy: F0 rises over a question's last 0.3 s and falls over a statement's, and each
pitch accent is a short F0 and energy peak. The face never shows these (at rho = 0).
"""

from __future__ import annotations

import numpy as np
import torch

from ..schema import AUDIO_RATE, FPS, SAMPLES_PER_FRAME
from .behaviour import Behaviour, smooth_noise
from .cues import prosody
from .people import Persona, SessionPlan, envelope

# Formants (F1, F2, F3) in Hz of the vowels /a e i o u/ and of the nasal murmur /m/.
_VOWELS = np.array([[730, 1090, 2440], [530, 1840, 2480], [270, 2290, 3010], [570, 840, 2410], [300, 870, 2240]])
_NASAL = np.array([250, 1000, 2200])
_BANDWIDTH = np.array([60, 90, 120])  # Hz, per formant
_FORMANT_GAIN = np.array([1.0, 0.6, 0.3])
_N_FFT, _HOP = 512, 160
_STFT_PER_FRAME = SAMPLES_PER_FRAME // _HOP  # 4 STFT frames per video frame


def _mmhm(starts: list, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gate and pitch rise of every "mm-hm" ("mm" 0.18 s, a gap, "hm" 0.22 s rising) at STFT times ``ts``."""
    gate, pitch = np.zeros(len(ts)), np.zeros(len(ts))
    for f in starts:
        c = f / FPS
        gate += envelope(ts, c, c + 0.18, 0.03, 0.04) + envelope(ts, c + 0.26, c + 0.48, 0.03, 0.06)
        pitch += 0.15 * np.clip((ts - c - 0.26) / 0.22, 0, 1) * (ts > c + 0.26) * (ts < c + 0.56)
    return gate, pitch


def _vocal_tract(persona: Persona) -> tuple[np.ndarray, np.ndarray]:
    """Per sound (5 vowels, then /m/) the voiced and the noise filter magnitude per STFT bin: (6, B) each.

    |H(f)| = sum_k a_k / (1 + ((f - F_k) / b_k)^2) with the persona's formant scale, times a
    glottal roll-off for the voiced source.
    """
    freqs = np.fft.rfftfreq(_N_FFT, 1 / AUDIO_RATE)  # (B,)
    formants = np.concatenate([_VOWELS, _NASAL[None]]) * persona.formant  # (6, 3)
    resonance = (_FORMANT_GAIN / (1 + ((freqs[None, :, None] - formants[:, None, :]) / _BANDWIDTH) ** 2)).sum(-1)
    tilt = 1 / np.sqrt(1 + (freqs / 300) ** 2)  # glottal roll-off
    return resonance * tilt, 0.3 * resonance + np.clip(freqs / 6000, 0, 1)


def synth_audio(
    plan: SessionPlan, role: int, behaviour: Behaviour, persona: Persona, rng: np.random.Generator
) -> np.ndarray:
    """Source-filter speech of one person in one clip.

    Returns (T * 640,) float32 mono samples at 16 kHz.
    """
    T = plan.speech.shape[1]
    n = T * SAMPLES_PER_FRAME
    frames = 1 + n // _HOP
    at = np.arange(frames) * _HOP / SAMPLES_PER_FRAME  # STFT frame -> video frame

    def up(x: np.ndarray) -> np.ndarray:  # video rate -> STFT rate
        return np.interp(at, np.arange(T), x)

    ts = at / FPS
    # Glottal gates (STFT rate): syllables, laughter pulsed at 5 Hz, "mm-hm", breath noise.
    voiced = up(plan.syll[role] * 0.8 + 0.2 * plan.speech[role])
    ha = up(behaviour.laugh) * (0.5 + 0.5 * np.cos(2 * np.pi * 5 * ts)) ** 2
    mm, pitch_mm = _mmhm(behaviour.mmhm, ts)
    noise_gate = up(plan.speech[role] * (1 - plan.syll[role])) * 0.25 + 0.5 * ha
    # Pitch contour: persona f0, arousal, laughter and "mm-hm" shapes, slow drift, speech acts and accents.
    arousal = up(behaviour.va[:, 1])
    drift = smooth_noise(rng, (frames,), 0.3 * _STFT_PER_FRAME)  # 0.3 s at the STFT rate
    cue_f0, cue_energy = prosody(plan.cues[role], ts)
    f0 = persona.f0 * (1 + 0.25 * arousal + 0.5 * up(behaviour.laugh) + pitch_mm + 0.03 * drift) * cue_f0
    f0_samples = np.interp(np.arange(n) / _HOP, np.arange(frames), f0)
    phase = np.cumsum(f0_samples / AUDIO_RATE)
    pulses = np.diff(np.floor(phase), prepend=0.0).astype(np.float32)  # one impulse per period
    noise = rng.standard_normal(n).astype(np.float32)
    # Formants per STFT frame: the syllable's vowel, /a/ when laughing, /m/ for "mm-hm".
    code = up(plan.vowel[role]).round().astype(int)  # (F,) vowel index
    code = np.where(ha > 0.05, 0, code)  # laughter: /a/
    code = np.where(mm > 0.05, len(_VOWELS), code)  # "mm-hm": /m/
    voiced_filter, noise_filter = _vocal_tract(persona)
    filt_v = torch.from_numpy(voiced_filter.astype(np.float32))[code]  # (F, B)
    filt_n = torch.from_numpy(noise_filter.astype(np.float32))[code]
    gain_v = torch.from_numpy((np.clip(voiced + ha + 0.35 * mm, 0, 1.2) * cue_energy).astype(np.float32))[:, None]
    gain_n = torch.from_numpy((0.08 * noise_gate).astype(np.float32))[:, None]
    window = torch.hann_window(_N_FFT)

    def stft(x: np.ndarray) -> torch.Tensor:  # (F, B) complex
        return torch.stft(torch.from_numpy(x), _N_FFT, _HOP, window=window, return_complex=True).T

    spectrum = stft(pulses) * (gain_v * filt_v) + stft(noise) * (gain_n * filt_n)  # (F, B)
    y = torch.istft(spectrum.T, _N_FFT, _HOP, window=window, length=n).numpy()
    y = 5.0 * y + 3e-4 * rng.standard_normal(n).astype(np.float32)  # room noise floor
    return np.clip(y, -1, 1).astype(np.float32)
