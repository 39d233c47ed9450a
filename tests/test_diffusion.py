"""Diffusion machinery (models.schedulers), the conditional denoiser (models.denoiser) and
LatentDiffusion (models.diffusion).

- Numerics agree with diffusers' DDPMScheduler / DDIMScheduler where the options coincide
  (skipped when diffusers is not importable); golden values hard-coded from a run verified
  against diffusers guard the same numerics without it.
- The denoiser: shapes, condition dropout, masking, previous-window handling, training,
  determinism.
"""

from __future__ import annotations

import math

import pytest
import torch

from reactdiff_lite.config import DenoiserConfig, DiffusionConfig, from_dict, to_dict
from reactdiff_lite.models.denoiser import ReactionDenoiser
from reactdiff_lite.models.diffusion import LatentDiffusion
from reactdiff_lite.models.schedulers import (
    ddim_step,
    ddpm_step,
    guided,
    make_schedule,
    make_timesteps,
    prediction_target,
    q_sample,
    randn,
    sample_loop,
    sample_trajectory,
    split_prediction,
)

try:
    from diffusers import DDIMScheduler, DDPMScheduler
except ImportError:  # the golden values below still guard the numerics
    DDIMScheduler = DDPMScheduler = None

needs_diffusers = pytest.mark.skipif(DDPMScheduler is None, reason="diffusers is not importable")
F64 = dict(dtype=torch.float64)


pytestmark = pytest.mark.usefixtures("one_thread")


DIFFUSERS_SCHEDULE = {"linear_unscaled": "linear", "cosine": "squaredcos_cap_v2"}


def diffusers_like(cls, kind: str, T: int = 1000, **options):
    """A diffusers scheduler with our float64 ᾱ, so steps compare on the same inputs.

    (Its own float32 ᾱ agrees with ours to 1e-6: ``test_schedules_match_diffusers``.)
    """
    options.setdefault("clip_sample", False)
    sched = cls(num_train_timesteps=T, beta_schedule=DIFFUSERS_SCHEDULE[kind], **options)
    ours = make_schedule(kind, T)
    sched.alphas_cumprod = ours.alphas_cumprod.clone()
    if cls is DDIMScheduler and not options.get("set_alpha_to_one", True):
        sched.final_alpha_cumprod = ours.alphas_cumprod[0].clone()
    return sched, ours


def toy_model(schedule):
    """A fixed ε-model: the optimal denoiser for x0 ~ N(0, 0.25 I) plus a small nonlinearity."""

    def fn(x, t):
        a = schedule.alphas_cumprod.to(x.dtype)[t].reshape(-1, 1, 1)  # (B, 1, 1)
        return (1 - a).sqrt() * x / (0.25 * a + 1 - a) + 0.05 * torch.tanh(x.flip(-1))

    return fn


# ----------------------------------------------------------------------------- vs diffusers


@needs_diffusers
@pytest.mark.parametrize("T", [1000, 250])
@pytest.mark.parametrize("kind", ["linear_unscaled", "cosine"])
def test_schedules_match_diffusers(kind, T):
    ours = make_schedule(kind, T)
    theirs = DDPMScheduler(num_train_timesteps=T, beta_schedule=DIFFUSERS_SCHEDULE[kind])
    torch.testing.assert_close(ours.betas, theirs.betas.double(), rtol=0, atol=1e-6)
    torch.testing.assert_close(ours.alphas_cumprod, theirs.alphas_cumprod.double(), rtol=0, atol=1e-6)


@needs_diffusers
def test_scaled_linear_is_diffusers_linear_with_scaled_ends():
    """improved-diffusion's 1000/T scaling: T=250 spans β from 4e-4 to 0.08."""
    ours = make_schedule("linear", 250)
    theirs = DDPMScheduler(num_train_timesteps=250, beta_start=4e-4, beta_end=0.08)
    torch.testing.assert_close(ours.alphas_cumprod, theirs.alphas_cumprod.double(), rtol=0, atol=1e-6)
    torch.testing.assert_close(make_schedule("linear", 1000).betas, make_schedule("linear_unscaled", 1000).betas)


@needs_diffusers
@pytest.mark.parametrize("steps", [1, 7, 30, 50, 1000])
@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_timesteps_match_diffusers(spacing, steps):
    for offset in [0, 1] if spacing == "leading" else [0]:
        sched = DDIMScheduler(timestep_spacing=spacing, steps_offset=offset)
        sched.set_timesteps(steps)
        assert make_timesteps(1000, steps, spacing, offset).tolist() == sched.timesteps.tolist()


@needs_diffusers
def test_add_noise_and_velocity_match_diffusers():
    sched, ours = diffusers_like(DDPMScheduler, "cosine")
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(6, 5, 3, generator=g, **F64), torch.randn(6, 5, 3, generator=g, **F64)
    t = torch.tensor([0, 1, 250, 500, 998, 999])
    torch.testing.assert_close(q_sample(ours, x0, t, noise), sched.add_noise(x0, noise, t), rtol=0, atol=1e-6)
    torch.testing.assert_close(
        prediction_target(ours, x0, t, noise, "v"), sched.get_velocity(x0, noise, t), rtol=0, atol=1e-6
    )


@needs_diffusers
@pytest.mark.parametrize("prediction,theirs", [("eps", "epsilon"), ("x0", "sample"), ("v", "v_prediction")])
@pytest.mark.parametrize("kind", ["linear_unscaled", "cosine"])
def test_ddpm_step_matches_diffusers(kind, prediction, theirs):
    sched, ours = diffusers_like(DDPMScheduler, kind, prediction_type=theirs, variance_type="fixed_small")
    g = torch.Generator().manual_seed(1)
    x, out = torch.randn(2, 4, 3, generator=g, **F64), torch.randn(2, 4, 3, generator=g, **F64)
    for t, strided in [(999, False), (500, False), (0, False), (980, True), (0, True)]:
        if strided:  # after set_timesteps(50), prev_t is the next listed timestep
            sched.set_timesteps(50)
        want = sched.step(out, t, x, generator=torch.Generator().manual_seed(t)).prev_sample
        got, _ = ddpm_step(
            ours,
            out,
            t,
            x,
            prev_t=t - 20 if strided else None,
            prediction=prediction,
            generator=torch.Generator().manual_seed(t),
        )
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


@needs_diffusers
@pytest.mark.parametrize("prediction,theirs", [("eps", "epsilon"), ("x0", "sample"), ("v", "v_prediction")])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_step_matches_diffusers(eta, prediction, theirs):
    g = torch.Generator().manual_seed(2)
    x, out = torch.randn(2, 4, 3, generator=g, **F64), torch.randn(2, 4, 3, generator=g, **F64)
    for alpha_to_one, offset in [(True, 0), (False, 0), (True, 1)]:
        sched, ours = diffusers_like(
            DDIMScheduler, "cosine", prediction_type=theirs, set_alpha_to_one=alpha_to_one, steps_offset=offset
        )
        sched.set_timesteps(50)
        for t in (sched.timesteps[0].item(), 500 + offset, sched.timesteps[-1].item()):  # first, middle, last
            noise = torch.randn(x.shape, generator=g, **F64)
            want = sched.step(out, t, x, eta=eta, variance_noise=noise).prev_sample
            got, _ = ddim_step(
                ours, out, t, t - 20, x, eta=eta, prediction=prediction, set_alpha_to_one=alpha_to_one, noise=noise
            )
            torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


@needs_diffusers
@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_clipped_x0_steps_match_diffusers_clip_sample(sampler):
    """The official recipe's x̂0 clipping (ε prediction, 20-step cosine) is diffusers' clip_sample=True."""
    cls = DDIMScheduler if sampler == "ddim" else DDPMScheduler
    sched, ours = diffusers_like(cls, "cosine", T=20, prediction_type="epsilon", clip_sample=True)
    sched.set_timesteps(20)
    g = torch.Generator().manual_seed(5)
    x, out = 3 * torch.randn(2, 4, 3, generator=g, **F64), torch.randn(2, 4, 3, generator=g, **F64)
    for t in (19, 10, 0):
        if sampler == "ddim":
            want = sched.step(out, t, x, eta=0.0)
            got, x0 = ddim_step(ours, out, t, t - 1, x, prediction="eps", clip=True)
        else:
            want = sched.step(out, t, x, generator=torch.Generator().manual_seed(t))
            got, x0 = ddpm_step(
                ours, out, t, x, prediction="eps", clip=True, generator=torch.Generator().manual_seed(t)
            )
        torch.testing.assert_close(got, want.prev_sample, rtol=0, atol=1e-6)
        torch.testing.assert_close(x0, want.pred_original_sample, rtol=0, atol=1e-6)
        assert x0.abs().max() <= 1
    unclipped, _ = ddim_step(ours, out, 19, 18, x, prediction="eps")
    assert unclipped.abs().max() > 1  # the clip is what bounds it here


def diffusers_loop(sched, model, x, steps, generator, **step_options):
    sched.set_timesteps(steps)
    for t in sched.timesteps:
        x = sched.step(model(x, t.repeat(x.shape[0])), int(t), x, generator=generator, **step_options).prev_sample
    return x


@needs_diffusers
@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("spacing", ["leading", "trailing"])
def test_ddim_loop_matches_diffusers(spacing, eta):
    """A whole 50-step DDIM run with the same toy model, x_T and generator stream."""
    sched, ours = diffusers_like(DDIMScheduler, "cosine", timestep_spacing=spacing)
    model = toy_model(ours)
    g = torch.Generator().manual_seed(3)
    x_T = randn((4, 10, 3), g, dtype=torch.float64)
    state = g.get_state()
    got = sample_loop(model, ours, x_T, make_timesteps(1000, 50, spacing), eta=eta, generator=g)
    g.set_state(state)
    want = diffusers_loop(sched, model, x_T, 50, g, eta=eta)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


@needs_diffusers
def test_ddpm_loop_matches_diffusers():
    """Full ancestral sampling (every timestep, T = 100) with the same generator stream."""
    sched, ours = diffusers_like(DDPMScheduler, "linear_unscaled", T=100)
    model = toy_model(ours)
    g = torch.Generator().manual_seed(4)
    x_T = randn((2, 10, 3), g, dtype=torch.float64)
    state = g.get_state()
    got = sample_loop(model, ours, x_T, make_timesteps(100, 100), sampler="ddpm", generator=g)
    g.set_state(state)
    torch.testing.assert_close(got, diffusers_loop(sched, model, x_T, 100, g), rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------- golden values


def test_golden_schedules():
    """ᾱ at t = 0, T/2, T − 1 from a run verified against diffusers."""
    golden = {
        ("cosine", 1000): (0.999958715775178, 0.49228517244880304, 2.4287669070348567e-09),
        ("linear", 250): (0.9996, 0.07403081329824181, 3.264409135490725e-05),
        ("linear_unscaled", 1000): (0.9999, 0.07779665836502389, 4.0358297653756754e-05),
    }
    for (kind, T), values in golden.items():
        a = make_schedule(kind, T).alphas_cumprod
        got = (a[0].item(), a[T // 2].item(), a[T - 1].item())
        assert got == pytest.approx(values, rel=1e-9, abs=1e-15), (kind, T)


def test_golden_timesteps():
    assert make_timesteps(1000, 7, "trailing").tolist() == [999, 856, 713, 570, 428, 285, 142]
    assert make_timesteps(1000, 7, "linspace").tolist() == [999, 832, 666, 500, 333, 166, 0]
    assert make_timesteps(1000, 7, "leading", steps_offset=1).tolist() == [853, 711, 569, 427, 285, 143, 1]


@pytest.mark.parametrize(
    "eta,golden",
    [
        (0.0, (-2.98612755553322, -0.17819403366076386, 0.9855268858701703)),
        (1.0, (8.68841270871054, -0.4788854396546841, -0.3861735848757748)),
    ],
)
def test_golden_ddim_loop(eta, golden):
    """The 50-step DDIM run of ``test_ddim_loop_matches_diffusers`` ("leading"), summarised."""
    ours = make_schedule("cosine", 1000)
    g = torch.Generator().manual_seed(3)
    x_T = randn((4, 10, 3), g, dtype=torch.float64)
    x = sample_loop(toy_model(ours), ours, x_T, make_timesteps(1000, 50, "leading"), eta=eta, generator=g)
    assert (x.sum().item(), x[0, 0, 0].item(), x[3, 9, 2].item()) == pytest.approx(golden, abs=1e-9)


# ----------------------------------------------------------------------------- identities


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_prediction_conversions_round_trip(prediction):
    s = make_schedule("cosine", 1000)
    g = torch.Generator().manual_seed(5)
    x0, noise = torch.randn(5, 7, 3, generator=g, **F64), torch.randn(5, 7, 3, generator=g, **F64)
    t = torch.tensor([0, 10, 500, 900, 999])
    x_t = q_sample(s, x0, t, noise)
    got_x0, got_eps = split_prediction(s, prediction_target(s, x0, t, noise, prediction), x_t, t, prediction)
    torch.testing.assert_close(got_eps, noise, rtol=0, atol=1e-6)
    torch.testing.assert_close(got_x0, x0, rtol=0, atol=1e-6 if prediction != "eps" else 1e-3)  # ᾱ_999 ≈ 2e-9


def test_ddim_eta_one_is_the_ddpm_posterior():
    s = make_schedule("linear", 1000)
    g = torch.Generator().manual_seed(6)
    x, out, noise = (torch.randn(3, 4, 2, generator=g, **F64) for _ in range(3))
    for t, prev in [(999, 979), (400, 380), (20, 0)]:
        a, _ = ddim_step(s, out, t, prev, x, eta=1.0, noise=noise)
        b, _ = ddpm_step(s, out, t, x, prev_t=prev, noise=noise)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_samplers_recover_a_point_mass():
    """With the exact ε of a single data point, DDIM (η = 0) lands on it."""
    s = make_schedule("cosine", 1000)
    target = torch.linspace(-1, 1, 12, **F64).reshape(1, 4, 3)

    def exact_eps(x, t):
        a = s.alphas_cumprod[t].reshape(-1, 1, 1)
        return (x - a.sqrt() * target) / (1 - a).sqrt()

    x_T = randn((2, 4, 3), torch.Generator().manual_seed(7), dtype=torch.float64)
    out = sample_loop(exact_eps, s, x_T, make_timesteps(1000, 10, "trailing"))
    torch.testing.assert_close(out, target.expand(2, -1, -1), rtol=0, atol=1e-9)


def test_guidance_formula():
    calls = []

    def model(x, t, keep):
        calls.append(keep.tolist())
        return x * torch.where(keep, 2.0, -1.0)[:, None]  # cond 2x, uncond -x

    x, t = torch.ones(3, 2), torch.zeros(3, dtype=torch.long)
    torch.testing.assert_close(guided(model, 3.0)(x, t), -1 + 3.0 * (2 - (-1)) * torch.ones(3, 2))
    torch.testing.assert_close(guided(model, 1.0)(x, t), 2 * x)
    assert calls == [[True] * 3 + [False] * 3, [True] * 3]  # one batched pass each


def test_bad_options_raise():
    with pytest.raises(ValueError, match="unknown noise schedule"):
        make_schedule("quadratic")
    with pytest.raises(ValueError, match="steps=0"):
        make_timesteps(1000, 0)
    with pytest.raises(ValueError, match="spacing"):
        make_timesteps(1000, 10, "middle")
    with pytest.raises(ValueError, match="either noise or generator"):
        ddim_step(
            make_schedule(),
            torch.zeros(1, 2),
            10,
            5,
            torch.zeros(1, 2),
            eta=1.0,
            generator=torch.Generator(),
            noise=torch.zeros(1, 2),
        )


# ----------------------------------------------------------------------------- the denoiser

SMALL = DenoiserConfig(latent_dim=6, window=8, context_before=4, context_after=3, dim=32, depth=2, heads=4)
S = SMALL.context_before + SMALL.window + SMALL.context_after


def randomised(config: DenoiserConfig = SMALL, seed: int = 0) -> ReactionDenoiser:
    """A denoiser with every weight random (the zero init would make dependence tests vacuous)."""
    torch.manual_seed(seed)
    net = ReactionDenoiser(config)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return net.eval()


def inputs(B: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, SMALL.window, SMALL.latent_dim, generator=g)
    spk = torch.randn(B, S, SMALL.latent_dim, generator=g)
    prev = torch.randn(B, SMALL.context_before, SMALL.latent_dim, generator=g)
    return x, torch.tensor([0, 50, 99][:B]), spk, prev


def test_denoiser_shapes_and_zero_init():
    x, t, spk, prev = inputs()
    net = ReactionDenoiser(SMALL)
    assert net(x, t, spk).shape == x.shape
    assert net(x, t, spk, prev=prev).abs().max() == 0  # adaLN-Zero / zero output projection
    net = randomised()
    out = net(x, t, spk, torch.ones(3, S, dtype=torch.bool), prev, torch.tensor([True, False, True]))
    assert out.shape == x.shape and out.isfinite().all()
    with pytest.raises(ValueError, match="speaker has shape"):
        net(x, t, spk[:, 1:])
    with pytest.raises(ValueError, match="x_t has shape"):
        net(x[:, 1:], t, spk)
    with pytest.raises(ValueError, match="prev has shape"):
        net(x, t, spk, prev=prev[:, 1:])


def test_keep_cond_false_removes_the_speaker():
    net = randomised()
    x, t, spk, prev = inputs()
    keep = torch.tensor([False, True, False])
    spk = spk.requires_grad_()
    out = net(x, t, spk, prev=prev, keep_cond=keep)
    out.sum().backward()
    assert spk.grad[~keep].abs().max() == 0 and spk.grad[keep].abs().min(-1).values.gt(0).all()
    other = net(x, t, torch.randn_like(spk), prev=prev, keep_cond=keep)
    torch.testing.assert_close(other[~keep], out[~keep], rtol=0, atol=0)
    assert (other[keep] - out[keep]).abs().max() > 1e-3


def test_flat_speaker_condition_is_one_token_of_the_whole_context():
    """``speaker_condition: flat`` (official): Linear(S·Dz -> D) of the flattened context, one memory token."""
    import dataclasses

    flat = dataclasses.replace(SMALL, speaker_condition="flat")
    net = randomised(flat)
    assert net.speaker_proj.weight.shape == (flat.dim, S * flat.latent_dim)
    x, t, spk, prev = inputs()
    keep = torch.tensor([False, True, True])
    spk = spk.requires_grad_()
    out = net(x, t, spk, prev=prev, keep_cond=keep)
    out.sum().backward()
    assert out.shape == x.shape and spk.grad[~keep].abs().max() == 0
    assert spk.grad[keep].abs().min(-1).values.gt(0).all()  # every frame of the context counts
    moved = torch.roll(spk.detach(), 1, dims=1)  # same frames, other order: a flat token tells them apart
    assert (net(x, t, moved, prev=prev, keep_cond=keep) - out)[keep].abs().max() > 1e-3


@pytest.mark.parametrize("loss", ["mse", "l1"])
def test_training_loss_kind(loss):
    """With x0 prediction the target is x0 itself; the untrained model outputs 0."""
    den = DenoiserConfig(latent_dim=6, window=8, context_before=0, context_after=0, dim=16, depth=1, heads=2)
    model = LatentDiffusion(DiffusionConfig(prediction="x0", loss=loss, denoiser=den))
    x0 = torch.randn(4, 8, 6, generator=torch.Generator().manual_seed(0))
    got = model.loss(x0, torch.randn(4, 8, 6), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(got, x0.abs().mean() if loss == "l1" else (x0**2).mean())


def test_masked_speaker_frames_have_no_influence():
    net = randomised()
    x, t, spk, prev = inputs()
    mask = torch.ones(3, S, dtype=torch.bool)
    mask[:, -SMALL.context_after - 2 :] = False  # the future hidden (online)
    mask[0, :2] = False  # a clip edge
    spk = spk.requires_grad_()
    out = net(x, t, spk, mask, prev)
    out.sum().backward()
    assert spk.grad[~mask].abs().max() == 0 and spk.grad[mask].abs().sum(-1).gt(0).all()
    garbage = spk.detach().masked_fill(~mask[..., None], float("nan"))
    torch.testing.assert_close(net(x, t, garbage, mask, prev), out, rtol=0, atol=0)


def test_previous_window_and_its_absence():
    net = randomised()
    x, t, spk, prev = inputs()
    with_prev, without = net(x, t, spk, prev=prev), net(x, t, spk)
    assert (with_prev - without).abs().max() > 1e-3  # prev is used
    # the first window: its past lies outside the clip, so zeros there equal "no prev"
    mask = torch.ones(3, S, dtype=torch.bool)
    mask[:, : SMALL.context_before] = False
    torch.testing.assert_close(net(x, t, spk, mask, torch.zeros_like(prev)), net(x, t, spk, mask), rtol=0, atol=0)
    # guidance drops the speaker but keeps prev
    keep = torch.zeros(3, dtype=torch.bool)
    assert (net(x, t, spk, prev=prev, keep_cond=keep) - net(x, t, spk, keep_cond=keep)).abs().max() > 1e-3


def tiny_model(**options) -> LatentDiffusion:
    torch.manual_seed(0)
    return LatentDiffusion(DiffusionConfig(num_train_steps=100, denoiser=SMALL, **options))


@pytest.mark.parametrize("prediction", ["eps", "x0"])
def test_loss_decreases_on_a_toy_batch(prediction):
    model = tiny_model(prediction=prediction)
    x0, _, spk, prev = inputs(B=3)
    x0 = spk[:, SMALL.context_before : SMALL.context_before + SMALL.window]  # listener mirrors speaker
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)

    def mean_loss(seed: int = 123) -> float:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            return sum(model.loss(x0, spk, prev=prev, generator=g).item() for _ in range(8)) / 8

    before = mean_loss()
    g = torch.Generator().manual_seed(1)
    for _ in range(60):
        opt.zero_grad()
        model.loss(x0, spk, prev=prev, generator=g).backward()
        opt.step()
    after = mean_loss()
    assert after < 0.7 * before, (before, after)


def test_determinism_with_a_generator():
    model = tiny_model(cond_drop_prob=0.5)
    randomised_state = randomised(SMALL, seed=1).state_dict()
    model.denoiser.load_state_dict(randomised_state)
    x0, _, spk, prev = inputs()
    losses = [model.loss(x0, spk, prev=prev, generator=torch.Generator().manual_seed(s)).item() for s in (0, 0, 1)]
    assert losses[0] == losses[1] != losses[2]
    draws = [
        model.sample(spk, prev=prev, steps=5, eta=0.5, guidance=2.0, generator=torch.Generator().manual_seed(s))
        for s in (0, 0, 1)
    ]
    assert draws[0].shape == (3, SMALL.window, SMALL.latent_dim)
    assert torch.equal(draws[0], draws[1]) and not torch.allclose(draws[0], draws[2])


def test_sample_trajectory_ends_at_the_sample():
    model = tiny_model()
    model.denoiser.load_state_dict(randomised(SMALL, seed=2).state_dict())
    _, _, spk, _ = inputs(B=2)
    kwargs = dict(steps=6, guidance=1.5, generator=torch.Generator().manual_seed(0))
    traj = model.sample_trajectory(spk, **kwargs)
    kwargs["generator"] = torch.Generator().manual_seed(0)
    assert traj.xs.shape == (7, 2, SMALL.window, SMALL.latent_dim) and traj.x0_preds.shape == (6, 2, SMALL.window, 6)
    assert traj.timesteps.tolist() == make_timesteps(100, 6, "trailing").tolist()
    torch.testing.assert_close(traj.xs[-1], model.sample(spk, **kwargs), rtol=0, atol=0)
    torch.testing.assert_close(traj.x0_preds[-1], traj.xs[-1], rtol=0, atol=1e-5)  # last DDIM step returns x̂0


def test_guided_sample_matches_two_separate_passes():
    """In float64: the random weights give outputs of order 10, where float32 rounding of the
    one batched pass against two separate passes alone reaches 1e-5."""
    model = tiny_model()
    model.denoiser.load_state_dict(randomised(SMALL, seed=3).state_dict())
    model.double()
    x, t, spk, prev = (z.double() if z.is_floating_point() else z for z in inputs(B=2))
    fn = model.model_fn(spk, None, prev, guidance=2.5)
    cond = model.denoiser(x, t[:2], spk, None, prev, torch.ones(2, dtype=torch.bool))
    uncond = model.denoiser(x, t[:2], spk, None, prev, torch.zeros(2, dtype=torch.bool))
    torch.testing.assert_close(fn(x, t[:2]), uncond + 2.5 * (cond - uncond), rtol=1e-10, atol=1e-10)
    with torch.no_grad():
        assert math.isfinite(float(sample_trajectory(fn, model.schedule, x, make_timesteps(100, 3)).xs.sum()))


def test_checkpoint_round_trip_and_mismatch(tmp_path):
    from reactdiff_lite.models.checkpoint import CheckpointError
    from reactdiff_lite.models.diffusion import load_checkpoint, save_checkpoint

    model = tiny_model(prediction="v")
    model.denoiser.load_state_dict(randomised(SMALL, seed=4).state_dict())
    save_checkpoint(tmp_path / "d.pt", model, step=7)
    loaded, config, extra = load_checkpoint(tmp_path / "d.pt")
    assert config == model.config and extra == {"step": 7} and not loaded.training
    _, _, spk, prev = inputs(B=2)
    kwargs = dict(steps=4, eta=1.0, guidance=2.0)
    torch.testing.assert_close(
        loaded.sample(spk, prev=prev, generator=torch.Generator().manual_seed(0), **kwargs),
        model.sample(spk, prev=prev, generator=torch.Generator().manual_seed(0), **kwargs),
        rtol=0,
        atol=0,
    )
    stored = to_dict(config)
    wider = from_dict(DiffusionConfig, {**stored, "denoiser": {**stored["denoiser"], "dim": 64}})
    with pytest.raises(CheckpointError, match=r"d\.pt.*shape mismatch"):
        load_checkpoint(tmp_path / "d.pt", wider)
