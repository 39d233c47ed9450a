"""Stage 2 of ReactDiff: latent diffusion over listener reaction windows.

ReactDiff (Li et al., arXiv 2505.14151) generates a listener's latent reaction window by
window, with a DDPM-trained denoiser conditioned on the speaker's latent, sampled with DDIM.
This module holds the diffusion machinery: pure functions of a schedule, a model output
and a sample. The network is ``models.denoiser``; ``models.diffusion.LatentDiffusion``
puts the two together.

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
- ``clip=True`` clamps x̂_0 to [-1, 1] before it is used, as diffusers' ``clip_sample=True``
  (range 1; ε̂ is not recomputed, as their default ``use_clipped_model_output=False``): for
  min-max normalised latents (the official recipe). Off by default: standardised latents are
  not bounded. Dynamic thresholding is not implemented.
- diffusers' DDIM ``step`` always steps to ``t - T // steps`` whatever the spacing; our
  loop steps to the next timestep actually in the list. They agree for "leading" spacing
  and for "trailing" when ``steps`` divides ``T``; for "linspace" diffusers' DDIM loop is
  inconsistent and ours is not. DDPM's ``step`` in diffusers does use the next listed timestep.
- The last DDIM step has no previous ᾱ: ``set_alpha_to_one=True`` uses 1 (a clean
  sample), ``False`` uses ᾱ_0, as diffusers. DDPM always uses 1 there.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from reactdiff_lite.config import Prediction, Sampler, ScheduleKind, Spacing

ModelFn = Callable[[Tensor, Tensor], Tensor]  # (x_t (B, ...), t (B,) long) -> model output


# ----------------------------------------------------------------------------- schedules


def linear_betas(num_steps: int, beta_start: float = 1e-4, beta_end: float = 0.02, *, scale: bool = True) -> Tensor:
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

    betas = [min(1 - alpha_bar((i + 1) / num_steps) / alpha_bar(i / num_steps), max_beta) for i in range(num_steps)]
    return torch.tensor(betas, dtype=torch.float64)


@dataclass(frozen=True)
class NoiseSchedule:
    """β_t, α_t = 1 - β_t and ᾱ_t = ∏_{s<=t} α_s for t = 0 … T-1, float64 on CPU."""

    betas: Tensor  # (T,)
    alphas: Tensor  # (T,)
    alphas_cumprod: Tensor  # (T,)

    @classmethod
    def from_betas(cls, betas: Tensor) -> NoiseSchedule:
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


def prediction_target(schedule: NoiseSchedule, x0: Tensor, t: Tensor, noise: Tensor, prediction: Prediction) -> Tensor:
    """What the network learns to output: ε, x0, or v = sqrt(ᾱ_t) ε − sqrt(1 − ᾱ_t) x0."""
    if prediction == "eps":
        return noise
    if prediction == "x0":
        return x0
    if prediction == "v":
        a = _at(schedule.alphas_cumprod, t, x0)
        return a.sqrt() * noise - (1 - a).sqrt() * x0
    raise ValueError(f"unknown prediction {prediction!r}; expected eps, x0 or v")


def split_prediction(
    schedule: NoiseSchedule, output: Tensor, x_t: Tensor, t: Tensor, prediction: Prediction
) -> tuple[Tensor, Tensor]:
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


def randn(
    shape: tuple[int, ...],
    generator: torch.Generator | None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """N(0, I) drawn on the generator's device, then moved (diffusers' ``randn_tensor``)."""
    where = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=where, dtype=dtype).to(device)


def _step_noise(like: Tensor, generator: torch.Generator | None, noise: Tensor | None) -> Tensor:
    if noise is not None and generator is not None:
        raise ValueError("pass either noise or generator, not both")
    return noise if noise is not None else randn(tuple(like.shape), generator, like.device, like.dtype)


# ----------------------------------------------------------------------------- samplers


def make_timesteps(num_train_steps: int, steps: int, spacing: Spacing = "leading", steps_offset: int = 0) -> Tensor:
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


def ddpm_step(
    schedule: NoiseSchedule,
    output: Tensor,
    t: int,
    x_t: Tensor,
    *,
    prev_t: int | None = None,
    prediction: Prediction = "eps",
    clip: bool = False,
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """One ancestral step x_t -> x_t' from the posterior q(x_t' | x_t, x̂0).

    Matches diffusers' ``DDPMScheduler.step`` with ``variance_type="fixed_small"`` and
    ``clip_sample=clip``. Noise is drawn (from ``generator``, or given as ``noise``) when t > 0.

    Args:
        output: model output at (x_t, t). t: current timestep. x_t: sample (B, …).
        prev_t: next timestep (default t − 1; −1 means the clean end, ᾱ = 1).
        clip: clamp x̂0 to [-1, 1] first.
    Returns:
        (x_t', x̂0).
    """
    prev_t = t - 1 if prev_t is None else prev_t
    a_t, a_prev = schedule.alpha_bar(t), schedule.alpha_bar(prev_t)
    alpha, beta = a_t / a_prev, 1 - a_t / a_prev  # α'_t, β'_t between the two steps
    tt = torch.full((x_t.shape[0],), t, dtype=torch.long)
    x0, _ = split_prediction(schedule, output, x_t, tt, prediction)
    x0 = x0.clamp(-1, 1) if clip else x0
    # posterior mean μ̃(x_t, x̂0)
    mean = (math.sqrt(a_prev) * beta / (1 - a_t)) * x0 + (math.sqrt(alpha) * (1 - a_prev) / (1 - a_t)) * x_t
    if t == 0:
        return mean, x0
    variance = max((1 - a_prev) / (1 - a_t) * beta, 1e-20)  # σ_t², "fixed_small"
    return mean + math.sqrt(variance) * _step_noise(x_t, generator, noise), x0


def ddim_step(
    schedule: NoiseSchedule,
    output: Tensor,
    t: int,
    prev_t: int,
    x_t: Tensor,
    *,
    eta: float = 0.0,
    prediction: Prediction = "eps",
    clip: bool = False,
    set_alpha_to_one: bool = True,
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """One DDIM step x_t -> x_t' (Song et al. 2021, eq. 12).

    Matches diffusers' ``DDIMScheduler.step`` with ``clip_sample=clip`` when ``prev_t`` is
    ``t - T // steps`` (what diffusers uses). Noise is drawn whenever eta > 0.

    Args:
        output: model output at (x_t, t). t, prev_t: current and next timestep (prev_t < 0: last step).
        eta: 0 deterministic DDIM, 1 the DDPM posterior variance.
        clip: clamp x̂0 to [-1, 1] (ε̂ stays the model's).
        set_alpha_to_one: at the last step use ᾱ = 1 (True) or ᾱ_0 (False).
    Returns:
        (x_t', x̂0).
    """
    a_t = schedule.alpha_bar(t)
    a_prev = schedule.alpha_bar(prev_t) if prev_t >= 0 or set_alpha_to_one else schedule.alpha_bar(0)
    tt = torch.full((x_t.shape[0],), t, dtype=torch.long)
    x0, eps = split_prediction(schedule, output, x_t, tt, prediction)
    x0 = x0.clamp(-1, 1) if clip else x0
    sigma = eta * math.sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))
    # x_t' = sqrt(ᾱ_t') x̂0 + sqrt(1 − ᾱ_t' − σ²) ε̂ + σ z
    x_prev = math.sqrt(a_prev) * x0 + math.sqrt(max(1 - a_prev - sigma**2, 0.0)) * eps
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


def denoise_steps(
    model_fn: ModelFn,
    schedule: NoiseSchedule,
    x_T: Tensor,
    timesteps: Tensor,
    *,
    sampler: Sampler = "ddim",
    eta: float = 0.0,
    prediction: Prediction = "eps",
    clip: bool = False,
    set_alpha_to_one: bool = True,
    generator: torch.Generator | None = None,
) -> Iterator[tuple[int, Tensor, Tensor]]:
    """Run the reverse process from x_T along ``timesteps``, yielding (t, x_t', x̂0) per step.

    Each step goes to the next listed timestep (−1 after the last). ``sampler="ddpm"`` takes
    ancestral steps (all T timesteps give the original DDPM sampler); "ddim" uses ``eta``;
    ``clip`` clamps every x̂0 to [-1, 1].
    """
    ts = [int(t) for t in timesteps]
    x = x_T
    for i, t in enumerate(ts):
        prev_t = ts[i + 1] if i + 1 < len(ts) else -1
        output = model_fn(x, torch.full((x.shape[0],), t, dtype=torch.long, device=x.device))
        if sampler == "ddim":
            x, x0 = ddim_step(
                schedule,
                output,
                t,
                prev_t,
                x,
                eta=eta,
                prediction=prediction,
                clip=clip,
                set_alpha_to_one=set_alpha_to_one,
                generator=generator,
            )
        elif sampler == "ddpm":
            x, x0 = ddpm_step(
                schedule, output, t, x, prev_t=prev_t, prediction=prediction, clip=clip, generator=generator
            )
        else:
            raise ValueError(f"unknown sampler {sampler!r}; expected ddim or ddpm")
        yield t, x, x0


def sample_loop(model_fn: ModelFn, schedule: NoiseSchedule, x_T: Tensor, timesteps: Tensor, **options) -> Tensor:
    """The final sample of :func:`denoise_steps` (same options)."""
    x = x_T
    for _, x_next, _ in denoise_steps(model_fn, schedule, x_T, timesteps, **options):
        x = x_next
    return x


@dataclass
class Trajectory:
    """A whole reverse run, for pictures."""

    timesteps: Tensor  # (N,) the timestep each step started from, descending
    xs: Tensor  # (N + 1, B, …): x_T, then the sample after each step (xs[-1] is the result)
    x0_preds: Tensor  # (N, B, …): the model's x̂0 at each step


def sample_trajectory(
    model_fn: ModelFn, schedule: NoiseSchedule, x_T: Tensor, timesteps: Tensor, **options
) -> Trajectory:
    """Every intermediate sample and x̂0 of :func:`denoise_steps` (same options)."""
    ts, xs, x0s = [], [x_T], []
    for t, x, x0 in denoise_steps(model_fn, schedule, x_T, timesteps, **options):
        ts.append(t)
        xs.append(x)
        x0s.append(x0)
    return Trajectory(torch.tensor(ts), torch.stack(xs), torch.stack(x0s))
