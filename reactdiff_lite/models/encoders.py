"""Per-frame modality encoders: every modality becomes a (B, T, D) stream at 25 fps.

ReactDiff (Li et al., arXiv 2505.14151, Sec. 3) describes a speaker with per-frame
features of two *classes*:

- the **facial class**: action units (AU, 15), facial expression probabilities (FE, 8)
  and valence/arousal (VA, 2) -- three streams, split with the column slices of
  ``reactdiff_lite.schema``; optionally the 3DMM coefficients (58) and grey face
  frames (a small CNN);
- the **acoustic class**: MFCC and a learned audio representation. The paper uses
  wav2vec 2.0, whose weights cannot be downloaded here, so the learned stream is a
  small convolutional encoder over the log-mel spectrogram (``LogMelConvEncoder``).

Time alignment. Audio arrives at 16 kHz, ``SAMPLES_PER_FRAME = 640`` samples per video
frame. Video frame ``t`` covers samples ``[640 t, 640 (t + 1))``. We pad the waveform by
``n_fft - 640`` samples in all and take an STFT with hop 640 and no centring::

    frames = 1 + (640 T + n_fft - 640 - n_fft) // 640 = T        (exactly T vectors)

By default the padding is split evenly, so STFT frame ``t`` is the ``n_fft`` window centred
on the middle of video frame ``t`` (it reads (n_fft − 640) / 2 samples of frame t + 1).
**Causal** encoders (``AutoencoderConfig.causal``, the online track) put all of it on the
left: STFT frame ``t`` covers samples ``[640 (t + 1) − n_fft, 640 (t + 1))``, so it ends
with video frame ``t`` and reads no later sample. The log-mel convolutions are then causal
too (left padding only), so every acoustic vector of frame t depends on samples before
``640 (t + 1)`` only; the facial streams are per frame.

From the mel power spectrogram ``M`` (n_mels bands) the two acoustic inputs are

    log-mel  L = log(M + 1e-6)
    MFCC     C = DCT-II_ortho(L)[:n_mfcc]       (torchaudio ``MFCC(log_mels=True)``)

We use ``log_mels=True`` on purpose: torchaudio's default dB conversion clamps with
``top_db`` relative to the maximum over the *whole batch*, so one clip's MFCC would
depend on the other clips in its batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchaudio
from einops import rearrange
from torch import Tensor, nn

from reactdiff_lite.config import EncoderConfig
from reactdiff_lite.schema import AU, AUDIO_RATE, EMOTION_DIM, FE, SAMPLES_PER_FRAME, TDMM_DIM, VA


class FrameMLP(nn.Module):
    """A per-frame two-layer MLP: (B, T, F) -> (B, T, D). ``norm`` adds a LayerNorm after
    the first projection, for inputs with a large or arbitrary scale (log energies)."""

    def __init__(self, in_dim: int, dim: int, norm: bool = False):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, dim), nn.LayerNorm(dim) if norm else nn.Identity(), nn.GELU(), nn.Linear(dim, dim)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)  # (B, T, D)


class FrameCNN(nn.Module):
    """Grey uint8 face frames (B, T, H, W) -> (B, T, D): three stride-2 convolutions,
    global average pooling, a linear layer. Any H, W works (32x32 from the data cache)."""

    def __init__(self, dim: int, channels: int = 16):
        super().__init__()
        c = channels
        self.net = nn.Sequential(
            nn.Conv2d(1, c, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(c, 2 * c, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(2 * c, dim, 3, stride=2, padding=1),
            nn.GELU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(dim, dim),
        )

    def forward(self, frames: Tensor) -> Tensor:
        b = frames.shape[0]
        x = frames.float() / 127.5 - 1.0  # uint8 -> [-1, 1]
        x = rearrange(x, "b t h w -> (b t) 1 h w")  # (B*T, 1, H, W)
        return rearrange(self.net(x), "(b t) d -> b t d", b=b)  # (B, T, D)


class AudioFeatures(nn.Module):
    """Waveform (B, 640 T) -> log-mel (B, T, n_mels) and MFCC (B, T, n_mfcc), one vector
    per video frame, with torchaudio's ``MFCC(log_mels=True)`` (see the module docstring).
    ``causal``: STFT frames end with their video frame (all padding on the left)."""

    def __init__(self, n_fft: int = 1024, n_mels: int = 40, n_mfcc: int = 13, causal: bool = False):
        super().__init__()
        extra = n_fft - SAMPLES_PER_FRAME
        self.pad = (extra, 0) if causal else (extra // 2, extra - extra // 2)  # (left, right) samples
        self.mfcc = torchaudio.transforms.MFCC(
            sample_rate=AUDIO_RATE,
            n_mfcc=n_mfcc,
            log_mels=True,
            melkwargs=dict(n_fft=n_fft, hop_length=SAMPLES_PER_FRAME, n_mels=n_mels, center=False),
        )

    def forward(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        x = F.pad(audio.float(), self.pad)  # (B, 640 T + n_fft - 640)
        log_mel = torch.log(self.mfcc.MelSpectrogram(x) + 1e-6)  # L = log(M + 1e-6), (B, n_mels, T)
        mfcc = log_mel.transpose(1, 2) @ self.mfcc.dct_mat  # C = DCT(L), (B, T, n_mfcc)
        return log_mel.transpose(1, 2), mfcc  # (B, T, n_mels), (B, T, n_mfcc)


class LogMelConvEncoder(nn.Module):
    """The learned acoustic stream: two 1-D convolutions over time on the log-mel
    spectrogram (B, T, n_mels) -> (B, T, D), a receptive field of 5 frames (200 ms):
    frames t − 2 … t + 2, or t − 4 … t when ``causal`` (each kernel of 3 padded by 2 on the
    left only). A small stand-in for the paper's wav2vec 2.0 features, trained from scratch."""

    def __init__(self, n_mels: int, dim: int, causal: bool = False):
        super().__init__()
        self.left = 2 if causal else 0  # frames padded on the left only, before each convolution
        padding = 0 if causal else 1  # else the convolution pads one frame on each side
        self.conv1 = nn.Conv1d(n_mels, dim, 3, padding=padding)
        self.norm = nn.LayerNorm(dim)
        self.conv2 = nn.Conv1d(dim, dim, 3, padding=padding)

    def _conv(self, conv: nn.Conv1d, x: Tensor) -> Tensor:
        x = x.transpose(1, 2)  # (B, C, T)
        return conv(F.pad(x, (self.left, 0)) if self.left else x).transpose(1, 2)  # (B, T, D)

    def forward(self, log_mel: Tensor) -> Tensor:
        x = F.gelu(self.norm(self._conv(self.conv1, log_mel)))  # (B, T, D)
        return self._conv(self.conv2, x)  # (B, T, D)


class ModalityEncoders(nn.Module):
    """All per-frame encoders of one person: behaviour dict -> named (B, T, D) streams.

    Streams: ``au, fe, va`` always; ``tdmm`` and ``video`` when on (facial class);
    ``logmel, mfcc`` when audio is on (acoustic class). See ``EncoderConfig.streams``.
    ``causal``: stream frame t depends on input frames (and audio samples) of times <= t only.
    """

    def __init__(self, cfg: EncoderConfig, causal: bool = False):
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.au = FrameMLP(AU.stop - AU.start, d)  # 15 -> D
        self.fe = FrameMLP(FE.stop - FE.start, d)  # 8 -> D
        self.va = FrameMLP(VA.stop - VA.start, d)  # 2 -> D
        if cfg.tdmm:
            self.tdmm = FrameMLP(TDMM_DIM, d)
        if cfg.video:
            self.video = FrameCNN(d, cfg.video_channels)
        if cfg.audio:
            self.audio_features = AudioFeatures(cfg.n_fft, cfg.n_mels, cfg.n_mfcc, causal)
            self.logmel = LogMelConvEncoder(cfg.n_mels, d, causal)
            self.mfcc = FrameMLP(cfg.n_mfcc, d, norm=True)

    def forward(self, person: dict[str, Tensor]) -> dict[str, Tensor]:
        """Args:
            person: ``emotion (B, T, 25)``; ``tdmm (B, T, 58)``, ``audio (B, 640 T)`` and
                ``frames (B, T, H, W)`` uint8 when those modalities are on. Instead of
                ``audio``, its features ``log_mel (B, T, n_mels)`` and ``mfcc (B, T, n_mfcc)``
                (what ``AudioFeatures`` computes) may be given.
        Returns: ``{stream name: (B, T, D)}`` in ``cfg.streams`` order.
        """
        check_person(person, self.cfg)
        emotion = person["emotion"].float()  # (B, T, 25)
        streams = {"au": self.au(emotion[..., AU]), "fe": self.fe(emotion[..., FE]), "va": self.va(emotion[..., VA])}
        if self.cfg.tdmm:
            streams["tdmm"] = self.tdmm(person["tdmm"].float())
        if self.cfg.video:
            streams["video"] = self.video(person["frames"])
        if self.cfg.audio:
            if "log_mel" in person:  # precomputed by ``AudioFeatures`` (stage 2 caches them)
                log_mel, mfcc = person["log_mel"].float(), person["mfcc"].float()
            else:
                log_mel, mfcc = self.audio_features(person["audio"])
            streams["logmel"], streams["mfcc"] = self.logmel(log_mel), self.mfcc(mfcc)
        return streams


def check_person(person: dict[str, Tensor], cfg: EncoderConfig) -> None:
    """Raise a ValueError naming the key and the problem when ``person`` does not fit ``cfg``."""
    if "emotion" not in person:
        raise ValueError(f"person dict has no 'emotion' (keys: {sorted(person)})")
    emotion = person["emotion"]
    if emotion.dim() != 3 or emotion.shape[-1] != EMOTION_DIM:
        raise ValueError(f"person['emotion'] has shape {tuple(emotion.shape)}, expected (B, T, {EMOTION_DIM})")
    b, t = emotion.shape[:2]
    features = cfg.audio and "log_mel" in person  # precomputed audio features instead of audio
    want = {
        "tdmm": (cfg.tdmm, (b, t, TDMM_DIM)),
        "audio": (cfg.audio and not features, (b, t * SAMPLES_PER_FRAME)),
        "log_mel": (features, (b, t, cfg.n_mels)),
        "mfcc": (features, (b, t, cfg.n_mfcc)),
        "frames": (cfg.video, None),
    }
    for key, (on, shape) in want.items():
        if not on:
            continue
        if key not in person:
            flag = {"frames": "video", "log_mel": "audio", "mfcc": "audio"}.get(key, key)
            raise ValueError(f"person dict has no {key!r} but EncoderConfig.{flag}=True (keys: {sorted(person)})")
        x = person[key]
        if key == "frames":
            if x.dim() != 4 or tuple(x.shape[:2]) != (b, t) or x.dtype != torch.uint8:
                raise ValueError(
                    f"person['frames'] has shape {tuple(x.shape)} dtype {x.dtype}, expected ({b}, {t}, H, W) uint8"
                )
        elif tuple(x.shape) != shape:
            hint = f" ({SAMPLES_PER_FRAME} samples per frame for T={t})" if key == "audio" else ""
            raise ValueError(f"person[{key!r}] has shape {tuple(x.shape)}, expected {shape}{hint}")
