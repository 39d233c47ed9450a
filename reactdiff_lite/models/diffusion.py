"""Stage 2 of ReactDiff: latent diffusion over listener reaction windows.

ReactDiff (Li et al., arXiv 2505.14151) generates a listener's latent reaction window by
window, with a DDPM-trained denoiser conditioned on the speaker's latent, sampled with DDIM.
This module holds the diffusion machinery and the conditional denoiser.

Forward process (Ho et al. 2020, DDPM), with ᾱ_t = ∏_{s<=t} (1 - β_s):

    q(x_t | x_0) = N(sqrt(ᾱ_t) x_0, (1 - ᾱ_t) I),   x_t = sqrt(ᾱ_t) x_0 + sqrt(1 - ᾱ_t) ε

The network predicts ε, x_0 or v = sqrt(ᾱ_t) ε - sqrt(1 - ᾱ_t) x_0 (Salimans & Ho 2022);
each determines the other two given x_t. Training minimises ||f(x_t, t, c) - target||².

Samplers, with x̂_0, ε̂ the model's estimates at step t and t' < t the next timestep:
- DDPM ancestral (posterior q(x_t' | x_t, x̂_0), "fixed_small" variance):
      x_t' = sqrt(ᾱ_t') β'_t / (1 - ᾱ_t) x̂_0 + sqrt(α'_t) (1 - ᾱ_t') / (1 - ᾱ_t) x_t + σ_t z,
      α'_t = ᾱ_t / ᾱ_t',  β'_t = 1 - α'_t,  σ_t² = (1 - ᾱ_t') / (1 - ᾱ_t) β'_t.
- DDIM (Song et al. 2021, eq. 12), any subsequence of timesteps, any η:
      x_t' = sqrt(ᾱ_t') x̂_0 + sqrt(1 - ᾱ_t' - σ_t²) ε̂ + σ_t z,  σ_t = η sqrt((1 - ᾱ_t')/(1 - ᾱ_t) (1 - ᾱ_t/ᾱ_t')).
  η = 1 gives exactly the DDPM posterior step above.
- Classifier-free guidance (Ho & Salimans 2022): the condition is dropped at random in
  training; at sampling ε = ε_u + s (ε_c - ε_u).

Numerics follow ``diffusers`` (DDPMScheduler, DDIMScheduler) where the options coincide;
``tests/test_diffusion.py`` checks that. Conventions worth knowing:
- Schedules are computed in float64; step coefficients are Python floats, so a float32
  sample is updated in float32 with coefficients rounded once.
- ``clip_sample`` and thresholding are not implemented (latents are not bounded images):
  compare with diffusers' ``clip_sample=False``.
- diffusers' DDIM ``step`` always steps to ``t - T // steps`` whatever the spacing; our
  loop steps to the next timestep actually in the list. They agree for "leading" spacing
  and for "trailing" when ``steps`` divides ``T``; for "linspace" diffusers' DDIM loop is
  inconsistent and ours is not. DDPM's ``step`` in diffusers does use the next listed timestep.
- The last DDIM step has no previous ᾱ: ``set_alpha_to_one=True`` uses 1 (a clean
  sample), ``False`` uses ᾱ_0, as diffusers. DDPM always uses 1 there.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from reactdiff_lite.models import checkpoint as ckpt
from reactdiff_lite.models.mmt import sinusoidal_positions

ScheduleKind = Literal["linear", "linear_unscaled", "cosine"]
Prediction = Literal["eps", "x0", "v"]
Spacing = Literal["leading", "trailing", "linspace"]
Sampler = Literal["ddim", "ddpm"]
ModelFn = Callable[[Tensor, Tensor], Tensor]  # (x_t (B, ...), t (B,) long) -> model output


# ----------------------------------------------------------------------------- schedules

def linear_betas(num_steps: int, beta_start: float = 1e-4, beta_end: float = 0.02,
                 *, scale: bool = True) -> Tensor:
    """Linear β schedule (Ho et al. 2020), float64.

    Args:
        num_steps: T, the number of training timesteps.
        beta_start, beta_end: β at t = 0 and t = T - 1 for T = 1000.
        scale: multiply both ends by 1000 / T as improved-diffusion does, so any T spans
            the same noise levels; ``False`` is diffusers' ``beta_schedule="linear"``.
    """
    factor = 1000 / num_steps if scale else 1.0
    return torch.linspace(beta_start * factor, beta_end * factor, num_steps, dtype=torch.float64)


def cosine_betas(num_steps: int, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """Cosine schedule (Nichol & Dhariwal 2021), float64; diffusers' ``squaredcos_cap_v2``.

    ᾱ(τ) = cos²((τ + s) / (1 + s) · π/2) on τ ∈ [0, 1];  β_t = min(1 - ᾱ((t+1)/T) / ᾱ(t/T), max_beta).
    """
    def alpha_bar(tau: float) -> float:
        return math.cos((tau + s) / (1 + s) * math.pi / 2) ** 2

    betas = [min(1 - alpha_bar((i + 1) / num_steps) / alpha_bar(i / num_steps), max_beta)
             for i in range(num_steps)]
    return torch.tensor(betas, dtype=torch.float64)


@dataclass(frozen=True)
class NoiseSchedule:
    """β_t, α_t = 1 - β_t and ᾱ_t = ∏_{s<=t} α_s for t = 0 … T-1, float64 on CPU."""

    betas: Tensor           # (T,)
    alphas: Tensor          # (T,)
    alphas_cumprod: Tensor  # (T,)

    @classmethod
    def from_betas(cls, betas: Tensor) -> "NoiseSchedule":
        betas = betas.to(torch.float64)
        if betas.ndim != 1 or not ((betas > 0) & (betas < 1)).all():
            raise ValueError("betas must be a 1-D tensor with values in (0, 1)")
        alphas = 1.0 - betas
        return cls(betas, alphas, torch.cumprod(alphas, dim=0))

    @property
    def num_steps(self) -> int:
        return self.betas.shape[0]

    def alpha_bar(self, t: int) -> float:
        """ᾱ_t as a float; ᾱ_{-1} = 1 (no noise before the first step)."""
        return self.alphas_cumprod[t].item() if t >= 0 else 1.0


def make_schedule(kind: ScheduleKind = "cosine", num_steps: int = 1000) -> NoiseSchedule:
    """A named schedule: "linear" (scaled by 1000/T), "linear_unscaled" (diffusers), "cosine"."""
    if kind == "linear":
        return NoiseSchedule.from_betas(linear_betas(num_steps, scale=True))
    if kind == "linear_unscaled":
        return NoiseSchedule.from_betas(linear_betas(num_steps, scale=False))
    if kind == "cosine":
        return NoiseSchedule.from_betas(cosine_betas(num_steps))
    raise ValueError(f"unknown noise schedule {kind!r}; expected linear, linear_unscaled or cosine")


def _at(values: Tensor, t: Tensor, like: Tensor) -> Tensor:
    """values[t] shaped (B, 1, …, 1) to broadcast against ``like`` (B, …), in its dtype/device."""
    out = values[t.detach().cpu()].to(like.device, like.dtype)  # (B,), gathered in float64 on the CPU
    return out.reshape(-1, *([1] * (like.ndim - 1)))


# ----------------------------------------------------------------------------- training pieces

def q_sample(schedule: NoiseSchedule, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
    """Noise clean samples to level t (diffusers' ``add_noise``).

    Args:
        x0: clean samples (B, …); t: timesteps (B,) long; noise: ε ~ N(0, I), like x0.
    """
    a = _at(schedule.alphas_cumprod, t, x0)  # (B, 1, …)
    # q(x_t | x_0) = N(sqrt(ᾱ_t) x_0, (1 − ᾱ_t) I)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def prediction_target(schedule: NoiseSchedule, x0: Tensor, t: Tensor, noise: Tensor,
                      prediction: Prediction) -> Tensor:
    """What the network learns to output: ε, x0, or v = sqrt(ᾱ_t) ε − sqrt(1 − ᾱ_t) x0."""
    if prediction == "eps":
        return noise
    if prediction == "x0":
        return x0
    if prediction == "v":
        a = _at(schedule.alphas_cumprod, t, x0)
        return a.sqrt() * noise - (1 - a).sqrt() * x0
    raise ValueError(f"unknown prediction {prediction!r}; expected eps, x0 or v")


def split_prediction(schedule: NoiseSchedule, output: Tensor, x_t: Tensor, t: Tensor,
                     prediction: Prediction) -> tuple[Tensor, Tensor]:
    """(x̂0, ε̂) from a model output of the given kind, using x_t = sqrt(ᾱ) x0 + sqrt(1 − ᾱ) ε.

    Args:
        output: the network's output, like x_t; t: (B,) long timesteps.
    """
    a = _at(schedule.alphas_cumprod, t, x_t)
    sa, sb = a.sqrt(), (1 - a).sqrt()
    if prediction == "eps":
        return (x_t - sb * output) / sa, output
    if prediction == "x0":
        return output, (x_t - sa * output) / sb
    if prediction == "v":
        # x0 = sqrt(ᾱ) x_t − sqrt(1 − ᾱ) v ;  ε = sqrt(ᾱ) v + sqrt(1 − ᾱ) x_t
        return sa * x_t - sb * output, sa * output + sb * x_t
    raise ValueError(f"unknown prediction {prediction!r}; expected eps, x0 or v")


# ----------------------------------------------------------------------------- randomness

def randn(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device | str = "cpu",
          dtype: torch.dtype = torch.float32) -> Tensor:
    """N(0, I) drawn on the generator's device, then moved (diffusers' ``randn_tensor``)."""
    where = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=where, dtype=dtype).to(device)


def _step_noise(like: Tensor, generator: torch.Generator | None, noise: Tensor | None) -> Tensor:
    if noise is not None and generator is not None:
        raise ValueError("pass either noise or generator, not both")
    return noise if noise is not None else randn(tuple(like.shape), generator, like.device, like.dtype)


# ----------------------------------------------------------------------------- samplers

def make_timesteps(num_train_steps: int, steps: int, spacing: Spacing = "leading",
                   steps_offset: int = 0) -> Tensor:
    """Descending sampling timesteps, as diffusers' ``set_timesteps`` (Lin et al. 2023, table 2).

    Args:
        num_train_steps: T. steps: how many to keep (1 … T).
        spacing: "leading" k·(T // steps) + steps_offset; "trailing" round(T − k·T/steps) − 1;
            "linspace" round(linspace(0, T − 1, steps)).
        steps_offset: added to "leading" timesteps only (Stable Diffusion uses 1).
    """
    if not 1 <= steps <= num_train_steps:
        raise ValueError(f"steps={steps} must be between 1 and the {num_train_steps} training steps")
    if spacing == "leading":
        ts = np.arange(steps)[::-1] * (num_train_steps // steps) + steps_offset
    elif spacing == "trailing":
        ts = np.round(num_train_steps - np.arange(steps) * (num_train_steps / steps)) - 1
    elif spacing == "linspace":
        ts = np.linspace(0, num_train_steps - 1, steps).round()[::-1]
    else:
        raise ValueError(f"unknown spacing {spacing!r}; expected leading, trailing or linspace")
    return torch.from_numpy(ts.astype(np.int64).copy())


def ddpm_step(schedule: NoiseSchedule, output: Tensor, t: int, x_t: Tensor, *, prev_t: int | None = None,
              prediction: Prediction = "eps", generator: torch.Generator | None = None,
              noise: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """One ancestral step x_t -> x_t' from the posterior q(x_t' | x_t, x̂0).

    Matches diffusers' ``DDPMScheduler.step`` with ``variance_type="fixed_small"``,
    ``clip_sample=False``. Noise is drawn (from ``generator``, or given as ``noise``) when t > 0.

    Args:
        output: model output at (x_t, t). t: current timestep. x_t: sample (B, …).
        prev_t: next timestep (default t − 1; −1 means the clean end, ᾱ = 1).
    Returns:
        (x_t', x̂0).
    """
    prev_t = t - 1 if prev_t is None else prev_t
    a_t, a_prev = schedule.alpha_bar(t), schedule.alpha_bar(prev_t)
    alpha, beta = a_t / a_prev, 1 - a_t / a_prev  # α'_t, β'_t between the two steps
    tt = torch.full((x_t.shape[0],), t, dtype=torch.long)
    x0, _ = split_prediction(schedule, output, x_t, tt, prediction)
    # posterior mean μ̃(x_t, x̂0)
    mean = (math.sqrt(a_prev) * beta / (1 - a_t)) * x0 + (math.sqrt(alpha) * (1 - a_prev) / (1 - a_t)) * x_t
    if t == 0:
        return mean, x0
    variance = max((1 - a_prev) / (1 - a_t) * beta, 1e-20)  # σ_t², "fixed_small"
    return mean + math.sqrt(variance) * _step_noise(x_t, generator, noise), x0


def ddim_step(schedule: NoiseSchedule, output: Tensor, t: int, prev_t: int, x_t: Tensor, *,
              eta: float = 0.0, prediction: Prediction = "eps", set_alpha_to_one: bool = True,
              generator: torch.Generator | None = None, noise: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """One DDIM step x_t -> x_t' (Song et al. 2021, eq. 12).

    Matches diffusers' ``DDIMScheduler.step`` with ``clip_sample=False`` when ``prev_t`` is
    ``t - T // steps`` (what diffusers uses). Noise is drawn whenever eta > 0.

    Args:
        output: model output at (x_t, t). t, prev_t: current and next timestep (prev_t < 0: last step).
        eta: 0 deterministic DDIM, 1 the DDPM posterior variance.
        set_alpha_to_one: at the last step use ᾱ = 1 (True) or ᾱ_0 (False).
    Returns:
        (x_t', x̂0).
    """
    a_t = schedule.alpha_bar(t)
    a_prev = schedule.alpha_bar(prev_t) if prev_t >= 0 or set_alpha_to_one else schedule.alpha_bar(0)
    tt = torch.full((x_t.shape[0],), t, dtype=torch.long)
    x0, eps = split_prediction(schedule, output, x_t, tt, prediction)
    sigma = eta * math.sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))
    # x_t' = sqrt(ᾱ_t') x̂0 + sqrt(1 − ᾱ_t' − σ²) ε̂ + σ z
    x_prev = math.sqrt(a_prev) * x0 + math.sqrt(max(1 - a_prev - sigma ** 2, 0.0)) * eps
    if eta > 0:
        x_prev = x_prev + sigma * _step_noise(x_t, generator, noise)
    return x_prev, x0


def guided(model_fn: Callable[[Tensor, Tensor, Tensor], Tensor], scale: float) -> ModelFn:
    """Classifier-free guidance: f(x, t) = f_u + s (f_c − f_u), both halves in one batch.

    ``model_fn(x, t, keep_cond)`` is the conditional model. Guidance is linear in the
    output, and ε, x0 and v are affine in one another at fixed (x_t, t), so guiding any of
    them is the same sampler. ``scale == 1`` is the conditional model alone (one pass).
    """
    def fn(x: Tensor, t: Tensor) -> Tensor:
        B = x.shape[0]
        if scale == 1:
            return model_fn(x, t, torch.ones(B, dtype=torch.bool, device=x.device))
        keep = torch.arange(2 * B, device=x.device) < B  # first half conditional
        cond, uncond = model_fn(torch.cat([x, x]), torch.cat([t, t]), keep).chunk(2)
        return uncond + scale * (cond - uncond)  # ε = ε_u + s (ε_c − ε_u)
    return fn


def denoise_steps(model_fn: ModelFn, schedule: NoiseSchedule, x_T: Tensor, timesteps: Tensor, *,
                  sampler: Sampler = "ddim", eta: float = 0.0, prediction: Prediction = "eps",
                  set_alpha_to_one: bool = True,
                  generator: torch.Generator | None = None) -> Iterator[tuple[int, Tensor, Tensor]]:
    """Run the reverse process from x_T along ``timesteps``, yielding (t, x_t', x̂0) per step.

    Each step goes to the next listed timestep (−1 after the last). ``sampler="ddpm"`` takes
    ancestral steps (all T timesteps give the original DDPM sampler); "ddim" uses ``eta``.
    """
    ts = [int(t) for t in timesteps]
    x = x_T
    for i, t in enumerate(ts):
        prev_t = ts[i + 1] if i + 1 < len(ts) else -1
        output = model_fn(x, torch.full((x.shape[0],), t, dtype=torch.long, device=x.device))
        if sampler == "ddim":
            x, x0 = ddim_step(schedule, output, t, prev_t, x, eta=eta, prediction=prediction,
                              set_alpha_to_one=set_alpha_to_one, generator=generator)
        elif sampler == "ddpm":
            x, x0 = ddpm_step(schedule, output, t, x, prev_t=prev_t, prediction=prediction, generator=generator)
        else:
            raise ValueError(f"unknown sampler {sampler!r}; expected ddim or ddpm")
        yield t, x, x0


def sample_loop(model_fn: ModelFn, schedule: NoiseSchedule, x_T: Tensor, timesteps: Tensor, **options) -> Tensor:
    """The final sample of :func:`denoise_steps` (same options)."""
    x = x_T
    for _, x, _ in denoise_steps(model_fn, schedule, x_T, timesteps, **options):
        pass
    return x


@dataclass
class Trajectory:
    """A whole reverse run, for pictures."""

    timesteps: Tensor  # (N,) the timestep each step started from, descending
    xs: Tensor         # (N + 1, B, …): x_T, then the sample after each step (xs[-1] is the result)
    x0_preds: Tensor   # (N, B, …): the model's x̂0 at each step


def sample_trajectory(model_fn: ModelFn, schedule: NoiseSchedule, x_T: Tensor, timesteps: Tensor,
                      **options) -> Trajectory:
    """Every intermediate sample and x̂0 of :func:`denoise_steps` (same options)."""
    ts, xs, x0s = [], [x_T], []
    for t, x, x0 in denoise_steps(model_fn, schedule, x_T, timesteps, **options):
        ts.append(t)
        xs.append(x)
        x0s.append(x0)
    return Trajectory(torch.tensor(ts), torch.stack(xs), torch.stack(x0s))


# ----------------------------------------------------------------------------- denoiser

@dataclass
class DenoiserConfig:
    latent_dim: int = 32          # Dz: channels of the autoencoder's per-frame latent
    window: int = 50              # W: listener frames denoised together
    context_before: int = 25      # speaker frames before the window; also P, the previous-window frames
    context_after: int = 25       # speaker frames after the window
    dim: int = 128                # transformer width
    depth: int = 3                # transformer blocks
    heads: int = 4                # attention heads
    mlp_ratio: float = 2.0        # feed-forward width / dim
    dropout: float = 0.0          # attention and feed-forward dropout


class Attention(nn.Module):
    """Multi-head scaled dot-product attention; ``context`` None is self-attention.

    ``mask`` (B, Lk) bool: False keys get zero weight, exactly.
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads, self.dropout = heads, dropout
        self.to_q = nn.Linear(dim, dim)
        self.to_kv = nn.Linear(dim, 2 * dim)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x: Tensor, context: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        context = x if context is None else context
        q = rearrange(self.to_q(x), "b n (h d) -> b h n d", h=self.heads)  # (B, H, Lq, d)
        k, v = (rearrange(z, "b n (h d) -> b h n d", h=self.heads) for z in self.to_kv(context).chunk(2, dim=-1))
        attn_mask = None if mask is None else mask[:, None, None, :]  # (B, 1, 1, Lk)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.to_out(rearrange(out, "b h n d -> b n (h d)"))  # (B, Lq, D)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN: x (B, L, D) scaled and shifted per sample by (B, D) vectors."""
    return x * (1 + scale[:, None]) + shift[:, None]


class DenoiserBlock(nn.Module):
    """Self-attention over listener frames, cross-attention to the memory, feed-forward.

    Each sub-layer is pre-norm, modulated by the timestep embedding c (adaLN-Zero, Peebles &
    Xie 2023): h ← h + g ⊙ f(LN(h) (1 + γ) + β) with (β, γ, g) = Linear(SiLU(c)), zero at
    initialisation so every block starts as the identity.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(dim, elementwise_affine=False) for _ in range(3))
        self.self_attn = Attention(dim, heads, dropout)
        self.cross_attn = Attention(dim, heads, dropout)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 9 * dim))
        nn.init.zeros_(self.modulation[1].weight)
        nn.init.zeros_(self.modulation[1].bias)

    def forward(self, h: Tensor, memory: Tensor, memory_mask: Tensor, c: Tensor) -> Tensor:
        """h (B, W, D) listener tokens; memory (B, M, D) with memory_mask (B, M); c (B, D)."""
        m = self.modulation(c).chunk(9, dim=-1)  # 9 × (B, D)
        h = h + m[2][:, None] * self.self_attn(modulate(self.norms[0](h), m[0], m[1]))
        h = h + m[5][:, None] * self.cross_attn(modulate(self.norms[1](h), m[3], m[4]), memory, memory_mask)
        return h + m[8][:, None] * self.mlp(modulate(self.norms[2](h), m[6], m[7]))


class ReactionDenoiser(nn.Module):
    """The stage-2 network: predicts ε (or x0, v) for a noisy listener latent window.

    Time is a sequence axis, handled by a small temporal transformer (our choice over a
    1-D U-Net: windows are short, the conditioning is a sequence too, and attention reaches
    across the whole window and its context in one layer):
    - listener tokens: Linear(x_t) at shared-axis positions context_before … context_before + W − 1;
    - memory tokens, read by cross-attention in every block: the speaker frames (positions
      0 … S − 1), the previous window's last P = context_before listener frames (positions
      0 … P − 1, simultaneous with ``speaker[:, :P]``), and one learned null token that is
      always visible, so attention is defined even when everything else is hidden;
    - all positions are sinusoidal on the shared time axis, plus a learned type embedding
      for speaker and previous-window tokens;
    - the timestep t ∈ {0 … num_timesteps − 1} is embedded with the same sinusoids (row t of
      the table), then an MLP, and enters through adaLN-Zero modulation of every sub-layer;
      the output projection starts at zero, so the untrained model predicts 0.

    Visibility: a speaker frame is visible where ``speaker_mask`` is True and ``keep_cond`` is
    True. A previous-window frame is visible where ``prev`` is given and the simultaneous
    speaker frame exists (``speaker_mask[:, k]``; ``keep_cond`` does not hide it, since
    guidance is about the speaker). So "no previous window" is ``prev=None``, or any
    values at frames outside the clip (e.g. zeros at the first window, whose past is masked).
    Hidden frames get zero attention weight and are zeroed before projection, so their
    values, even NaN, cannot leak.
    """

    def __init__(self, config: DenoiserConfig, num_timesteps: int = 1000):
        super().__init__()
        self.config, self.num_timesteps = config, num_timesteps
        d, dz = config.dim, config.latent_dim
        self.in_proj = nn.Linear(dz, d)
        self.speaker_proj = nn.Linear(dz, d)
        self.prev_proj = nn.Linear(dz, d)
        self.speaker_type = nn.Parameter(torch.zeros(d))
        self.prev_type = nn.Parameter(torch.zeros(d))
        self.null_token = nn.Parameter(torch.randn(d) * 0.02)
        self.memory_norm = nn.LayerNorm(d)
        self.time_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.blocks = nn.ModuleList(DenoiserBlock(d, config.heads, config.mlp_ratio, config.dropout)
                                    for _ in range(config.depth))
        self.out_norm = nn.LayerNorm(d, elementwise_affine=False)
        self.out_modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, 2 * d))
        self.out_proj = nn.Linear(d, dz)
        for layer in (self.out_modulation[1], self.out_proj):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        span = config.context_before + config.window + config.context_after
        self.register_buffer("positions", sinusoidal_positions(span, d), persistent=False)  # (S, D)
        self.register_buffer("time_table", sinusoidal_positions(num_timesteps, d), persistent=False)  # (T, D)

    def _check(self, x_t: Tensor, t: Tensor, speaker: Tensor, prev: Tensor | None) -> None:
        c = self.config
        S = c.context_before + c.window + c.context_after
        if x_t.ndim != 3 or x_t.shape[1:] != (c.window, c.latent_dim):
            raise ValueError(f"x_t has shape {tuple(x_t.shape)}, expected (B, {c.window}, {c.latent_dim})")
        if speaker.shape != (x_t.shape[0], S, c.latent_dim):
            raise ValueError(f"speaker has shape {tuple(speaker.shape)}, expected ({x_t.shape[0]}, {S}, "
                             f"{c.latent_dim}) = context_before + window + context_after frames")
        if prev is not None and prev.shape != (x_t.shape[0], c.context_before, c.latent_dim):
            raise ValueError(f"prev has shape {tuple(prev.shape)}, expected "
                             f"({x_t.shape[0]}, {c.context_before}, {c.latent_dim})")
        if t.shape != (x_t.shape[0],) or t.dtype != torch.long:
            raise ValueError(f"t is {t.dtype} {tuple(t.shape)}, expected torch.int64 ({x_t.shape[0]},)")

    def forward(self, x_t: Tensor, t: Tensor, speaker: Tensor, speaker_mask: Tensor | None = None,
                prev: Tensor | None = None, keep_cond: Tensor | None = None) -> Tensor:
        """Args:
            x_t: noisy listener latent window (B, W, Dz). t: timesteps (B,) long.
            speaker: speaker latent (B, S, Dz), S = context_before + W + context_after;
                ``speaker[:, context_before:context_before + W]`` is simultaneous with x_t.
            speaker_mask: (B, S) bool, False = not visible (clip edges, the future online).
            prev: previous window's last context_before listener latent frames (B, P, Dz) or None.
            keep_cond: (B,) bool, False drops the speaker (classifier-free guidance).
        Returns:
            the model output (B, W, Dz).
        """
        self._check(x_t, t, speaker, prev)
        B, W, _ = x_t.shape
        P, S = self.config.context_before, speaker.shape[1]
        ones = torch.ones(B, S, dtype=torch.bool, device=x_t.device)
        exists = ones if speaker_mask is None else speaker_mask.bool()  # (B, S)
        keep = ones[:, 0] if keep_cond is None else keep_cond.bool()  # (B,)
        speaker_visible = exists & keep[:, None]  # (B, S)
        prev_visible = exists[:, :P] & (prev is not None)  # (B, P)
        prev = torch.zeros_like(speaker[:, :P]) if prev is None else prev

        pos = self.positions  # (S, D) on the shared time axis
        h = self.in_proj(x_t) + pos[P:P + W]  # (B, W, D)
        spk = self.speaker_proj(speaker.masked_fill(~speaker_visible[..., None], 0)) + pos[:S] + self.speaker_type
        prv = self.prev_proj(prev.masked_fill(~prev_visible[..., None], 0)) + pos[:P] + self.prev_type
        null = self.null_token.expand(B, 1, -1)  # (B, 1, D)
        memory = self.memory_norm(torch.cat([null, spk, prv], dim=1))  # (B, 1 + S + P, D)
        memory_mask = torch.cat([ones[:, :1], speaker_visible, prev_visible], dim=1)  # (B, 1 + S + P)

        c = self.time_mlp(self.time_table[t])  # (B, D)
        for block in self.blocks:
            h = block(h, memory, memory_mask, c)
        shift, scale = self.out_modulation(c).chunk(2, dim=-1)
        return self.out_proj(modulate(self.out_norm(h), shift, scale))  # (B, W, Dz)


# ----------------------------------------------------------------------------- the model

@dataclass
class DiffusionConfig:
    schedule: ScheduleKind = "cosine"   # noise schedule
    num_train_steps: int = 1000         # T
    prediction: Prediction = "v"        # what the denoiser outputs: v stays well-conditioned
                                        # where ᾱ_t -> 0 (x̂0 from ε̂ divides by sqrt(ᾱ_t))
    cond_drop_prob: float = 0.1         # P(drop the speaker) in training, for guidance
    denoiser: DenoiserConfig = field(default_factory=DenoiserConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DiffusionConfig":
        """Inverse of ``to_dict``; unknown keys raise a TypeError naming them."""
        return cls(**{**d, "denoiser": DenoiserConfig(**d.get("denoiser", {}))})


class LatentDiffusion(nn.Module):
    """Schedule + denoiser + prediction type + condition dropout: stage 2 of ReactDiff."""

    def __init__(self, config: DiffusionConfig):
        super().__init__()
        if not 0 <= config.cond_drop_prob < 1:
            raise ValueError(f"cond_drop_prob must be in [0, 1), got {config.cond_drop_prob}")
        self.config = config
        self.schedule = make_schedule(config.schedule, config.num_train_steps)
        self.denoiser = ReactionDenoiser(config.denoiser, config.num_train_steps)

    def loss(self, x0: Tensor, speaker: Tensor, speaker_mask: Tensor | None = None, prev: Tensor | None = None,
             *, generator: torch.Generator | None = None) -> Tensor:
        """The DDPM objective E_{t, ε, keep} ||f(x_t, t, c·keep) − target||², one Monte-Carlo draw.

        Args:
            x0: clean listener latent window (B, W, Dz); the rest as ``ReactionDenoiser.forward``.
            generator: draws t ~ U{0 … T−1}, ε ~ N(0, I) and keep ~ Bernoulli(1 − cond_drop_prob).
        """
        B, dev = x0.shape[0], x0.device
        where = generator.device if generator is not None else dev
        t = torch.randint(0, self.schedule.num_steps, (B,), generator=generator, device=where).to(dev)  # (B,)
        noise = randn(tuple(x0.shape), generator, dev, x0.dtype)  # (B, W, Dz)
        keep = (torch.rand(B, generator=generator, device=where) >= self.config.cond_drop_prob).to(dev)  # (B,)
        x_t = q_sample(self.schedule, x0, t, noise)
        output = self.denoiser(x_t, t, speaker, speaker_mask, prev, keep)
        return F.mse_loss(output, prediction_target(self.schedule, x0, t, noise, self.config.prediction))

    def model_fn(self, speaker: Tensor, speaker_mask: Tensor | None = None, prev: Tensor | None = None,
                 guidance: float = 1.0) -> ModelFn:
        """The denoiser as f(x_t, t) for the samplers, conditioned and guided."""
        def cond(x: Tensor, t: Tensor, keep: Tensor) -> Tensor:
            reps = x.shape[0] // speaker.shape[0]  # 2 under guidance
            twice = (lambda z: None if z is None else torch.cat([z] * reps))
            return self.denoiser(x, t, twice(speaker), twice(speaker_mask), twice(prev), keep)
        return guided(cond, guidance)

    def _run(self, speaker: Tensor, speaker_mask: Tensor | None, prev: Tensor | None, steps: int, eta: float,
             guidance: float, spacing: Spacing, sampler: Sampler, generator: torch.Generator | None,
             x_T: Tensor | None) -> tuple[ModelFn, Tensor, Tensor, dict]:
        c = self.config.denoiser
        shape = (speaker.shape[0], c.window, c.latent_dim)
        x_T = randn(shape, generator, speaker.device, speaker.dtype) if x_T is None else x_T  # (B, W, Dz)
        timesteps = make_timesteps(self.schedule.num_steps, steps, spacing)
        options = dict(sampler=sampler, eta=eta, prediction=self.config.prediction, generator=generator)
        return self.model_fn(speaker, speaker_mask, prev, guidance), x_T, timesteps, options

    @torch.no_grad()
    def sample(self, speaker: Tensor, speaker_mask: Tensor | None = None, prev: Tensor | None = None, *,
               steps: int = 50, eta: float = 0.0, guidance: float = 1.0, spacing: Spacing = "trailing",
               sampler: Sampler = "ddim", generator: torch.Generator | None = None,
               x_T: Tensor | None = None) -> Tensor:
        """Generate listener latent windows (B, W, Dz) for speaker latents (B, S, Dz).

        Args:
            steps: sampling steps (T with sampler="ddpm" is the original ancestral sampler).
            eta: DDIM noise (0 deterministic). guidance: s in ε_u + s (ε_c − ε_u); 1 = conditional.
            spacing: timestep spacing; "trailing" starts at t = T − 1, the level x_T ~ N(0, I)
                actually matches (Lin et al. 2023), so it is our default.
            generator: draws x_T (unless given) and the per-step noise.
        """
        model_fn, x_T, timesteps, options = self._run(speaker, speaker_mask, prev, steps, eta, guidance,
                                                      spacing, sampler, generator, x_T)
        return sample_loop(model_fn, self.schedule, x_T, timesteps, **options)

    @torch.no_grad()
    def sample_trajectory(self, speaker: Tensor, speaker_mask: Tensor | None = None, prev: Tensor | None = None,
                          *, steps: int = 50, eta: float = 0.0, guidance: float = 1.0,
                          spacing: Spacing = "trailing", sampler: Sampler = "ddim",
                          generator: torch.Generator | None = None, x_T: Tensor | None = None) -> Trajectory:
        """As :meth:`sample`, keeping every intermediate x_t and x̂0 (for pictures)."""
        model_fn, x_T, timesteps, options = self._run(speaker, speaker_mask, prev, steps, eta, guidance,
                                                      spacing, sampler, generator, x_T)
        return sample_trajectory(model_fn, self.schedule, x_T, timesteps, **options)


# ----------------------------------------------------------------------------- checkpoints

MODULE_NAME = "diffusion"  # the name the model's state dict and config are stored under


def save_checkpoint(path: str | Path, model: LatentDiffusion, **extra: Any) -> Path:
    """Save the diffusion model's weights and config atomically (``models.checkpoint`` format).

    The schedule is rebuilt from the config, so the weights and config are the whole model.
    A stage-2 file can hold this beside the autoencoder: ``checkpoint.save_checkpoint(path,
    {"autoencoder": ae, "diffusion": model}, {"autoencoder": ..., "diffusion": model.config.to_dict()})``.

    Args:
        path: the ``.pt`` file. model: the model. extra: plain values to keep (step, metrics, ...).
    """
    return ckpt.save_checkpoint(path, {MODULE_NAME: model}, {MODULE_NAME: model.config.to_dict()}, **extra)


def load_checkpoint(path: str | Path, config: DiffusionConfig | None = None,
                    map_location: str | torch.device = "cpu") -> tuple[LatentDiffusion, DiffusionConfig, dict]:
    """Rebuild a ``LatentDiffusion`` from a checkpoint; returns ``(model in eval mode, config, extra)``.

    Args:
        path: a file holding a ``"diffusion"`` module and config (``save_checkpoint``, or stage 2).
        config: build from this config instead of the stored one; weights that do not fit it
            raise ``CheckpointError`` naming the file.
        map_location: device for the loaded tensors.
    """
    return ckpt.load_model(path, MODULE_NAME, DiffusionConfig, LatentDiffusion, config, map_location)
