"""Training and sampling speed of ReactDiff at the default (CPU demo) and paper configs.

For each config (``configs/stage{1,2}_<name>.yaml``) the script measures, in a fresh
process each (so the peak memory is that run's own):

1. **stage-1 training throughput**: windows of ``data.window`` frames (clips) per second of
   the real training step (``ReactionAutoencoder.loss`` -> backward -> gradient clipping ->
   AdamW), and peak memory;
2. **stage-2 training throughput**: the same for ``LatentDiffusion.loss`` on latent windows
   with speaker context and previous-listener context;
3. **sampling throughput**: whole reactions per second of ``reactdiff_lite.sampling.generate``
   (window by window, offline) with DDIM-10, DDIM-20 and DDPM over all T training steps, and
   the speed-up ratios DDIM-10 / DDPM and DDIM-20 / DDPM measured in the same process.

Batches are random tensors with the shapes and dtypes of the data (the cost does not
depend on the values); the models are built from the configs exactly as ``train`` builds
them. On a CPU the paper-sized runs use a smaller batch (``--cpu-batch``) for training and
sample 2 reactions of one window (50 frames) with every sampler, so that DDPM over all
1000 steps finishes in minutes; the ratios compare like with like. GPU numbers appear only
when a CUDA device is present (AMP as in training: bf16 where supported).

Usage::

    python benchmarks/train_speed.py [--configs default,paper] [--device auto|cpu|cuda]
                                     [--steps 5] [--cpu-batch 8] [--frames 150]

Timings are wall-clock on a possibly shared machine: the load average is printed; rerun
when the machine is quiet.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI: idle threads sleep

ROOT = Path(__file__).resolve().parents[1]


def _peak_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _person(cfg, B: int, T: int, device):
    import torch

    g = torch.Generator().manual_seed(0)
    fe = torch.softmax(torch.randn(B, T, 8, generator=g), -1)
    person = {
        "emotion": torch.cat(
            [(torch.rand(B, T, 15, generator=g) > 0.7).float(), torch.rand(B, T, 2, generator=g) * 2 - 1, fe], -1
        ),
        "tdmm": torch.randn(B, T, 58, generator=g) * 0.1,
        "audio": torch.randn(B, T * 640, generator=g) * 0.05,
    }
    if cfg.autoencoder.encoder.video:
        size = cfg.data.frame_size
        person["frames"] = torch.randint(0, 256, (B, T, size, size), generator=g, dtype=torch.uint8)
    return {k: v.to(device) for k, v in person.items()}


def _time_steps(step, steps: int, device) -> float:
    import torch

    step()  # warm-up (allocations, kernels)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def _amp(device, cfg):
    from contextlib import nullcontext

    import torch

    if device.type != "cuda" or not cfg.optim.amp:
        return nullcontext
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return lambda: torch.autocast("cuda", dtype=dtype)


def _bench_training(net, opt, loss_fn, autocast, cfg, B: int, steps: int, device) -> dict:
    """Time ``steps`` optimiser steps (forward, backward, clipping, AdamW) of ``loss_fn``."""
    import torch

    def step():
        with autocast():
            loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.optim.grad_clip)
        opt.step()

    seconds = _time_steps(step, steps, device)
    return {
        "batch": B,
        "s_per_step": seconds,
        "clips_per_s": B / seconds,
        "peak_mb": _peak_mb(device),
        "params_m": sum(p.numel() for p in net.parameters()) / 1e6,
    }


def bench_stage1(name: str, device: str, steps: int, cpu_batch: int) -> dict:
    import torch

    from reactdiff_lite.config import load_config
    from reactdiff_lite.models.autoencoder import ReactionAutoencoder
    from reactdiff_lite.train import parameter_groups

    device = torch.device(device)
    cfg = load_config(ROOT / "configs" / f"stage1_{name}.yaml")
    B = cfg.optim.batch_size if device.type == "cuda" else min(cfg.optim.batch_size, cpu_batch)
    net = ReactionAutoencoder(cfg.autoencoder).to(device)
    opt = torch.optim.AdamW(parameter_groups(net, cfg.optim.weight_decay), lr=cfg.optim.lr)
    batch, autocast = _person(cfg, B, cfg.data.window, device), _amp(device, cfg)

    return _bench_training(net, opt, lambda: net.loss(batch)[0], autocast, cfg, B, steps, device)


def _stage2_parts(name: str, device):
    import torch

    from reactdiff_lite.config import load_config, stage_dict
    from reactdiff_lite.models.diffusion import LatentDiffusion
    from reactdiff_lite.tasks import resolve_stage2

    s1 = load_config(ROOT / "configs" / f"stage1_{name}.yaml")
    cfg = resolve_stage2(load_config(ROOT / "configs" / f"stage2_{name}.yaml"), stage_dict(s1), "stage-1 config")
    torch.manual_seed(0)
    return cfg, LatentDiffusion(cfg.diffusion).to(device)


def bench_stage2(name: str, device: str, steps: int, cpu_batch: int) -> dict:
    import torch

    from reactdiff_lite.train import parameter_groups

    device = torch.device(device)
    cfg, net = _stage2_parts(name, device)
    d = cfg.diffusion.denoiser
    B = cfg.optim.batch_size if device.type == "cuda" else min(cfg.optim.batch_size, cpu_batch)
    g = torch.Generator().manual_seed(0)
    S = d.context_before + d.window + d.context_after
    x0 = torch.randn(B, d.window, d.latent_dim, generator=g).to(device)
    speaker = torch.randn(B, S, d.latent_dim, generator=g).to(device)
    prev = torch.randn(B, d.context_before, d.latent_dim, generator=g).to(device)
    mask = (torch.rand(B, S, generator=g) > 0.1).to(device)
    opt = torch.optim.AdamW(parameter_groups(net, cfg.optim.weight_decay), lr=cfg.optim.lr)
    autocast = _amp(device, cfg)

    return _bench_training(net, opt, lambda: net.loss(x0, speaker, mask, prev), autocast, cfg, B, steps, device)


def bench_sampling(name: str, device: str, frames: int, reactions: int, ddpm: bool) -> dict:
    import torch

    from reactdiff_lite.latents import ReactionModel
    from reactdiff_lite.models.autoencoder import ReactionAutoencoder
    from reactdiff_lite.sampling import generate

    device = torch.device(device)
    cfg, diffusion = _stage2_parts(name, device)
    ae = ReactionAutoencoder(cfg.autoencoder).to(device)
    ae.normalizer.fit(torch.randn(64, cfg.autoencoder.latent_dim, device=device))
    model = ReactionModel(ae.eval(), diffusion.eval(), cfg, device)
    latents = torch.randn(1, frames, cfg.autoencoder.latent_dim)  # one speaker, K = reactions
    out = {"frames": frames, "reactions": reactions, "guidance": cfg.sample.guidance}
    runs = [("DDIM-10", dict(steps=10)), ("DDIM-20", dict(steps=20))]
    if ddpm:
        runs.append(
            (f"DDPM-{cfg.diffusion.num_train_steps}", dict(steps=cfg.diffusion.num_train_steps, sampler="ddpm"))
        )
    for label, options in runs:

        def run(options=options):
            generate(model, latents, k=reactions, batch_size=reactions, **options)

        seconds = _time_steps(run, 1, device) if label.startswith("DDIM") else _once(run, device)
        out[label] = {"s": seconds, "reactions_per_s": reactions / seconds}
    out["peak_mb"] = _peak_mb(device)
    return out


def _once(fn, device) -> float:
    import torch

    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def _isolated(fn, *args):
    """Run ``fn(*args)`` in a fresh process (its own peak memory)."""
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", default="default,paper")
    parser.add_argument("--device", default="auto", help="auto: CPU, and CUDA too when present")
    parser.add_argument("--steps", type=int, default=5, help="timed optimiser steps per stage")
    parser.add_argument("--cpu-batch", type=int, default=8, help="batch cap for paper-sized models on a CPU")
    parser.add_argument("--frames", type=int, default=150, help="frames per sampled reaction")
    parser.add_argument("--reactions", type=int, default=10, help="reactions sampled together (K)")
    parser.add_argument("--no-ddpm", action="store_true", help="skip DDPM over all training steps (slow on a CPU)")
    args = parser.parse_args()
    import torch

    devices = (
        ["cpu"]
        if args.device == "cpu"
        else ["cuda"]
        if args.device == "cuda"
        else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    )
    print(
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; torch {torch.__version__}; devices {devices}"
    )
    for device in devices:
        for name in args.configs.split(","):
            cap = args.cpu_batch if name != "default" else 10**9
            s1 = _isolated(bench_stage1, name, device, args.steps, cap)
            s2 = _isolated(bench_stage2, name, device, args.steps, cap)
            print(f"\n[{device}] {name} config")
            for stage, r in (("stage 1 (autoencoder)", s1), ("stage 2 (latent diffusion)", s2)):
                print(
                    f"  {stage:28s} batch {r['batch']:4d}  {r['s_per_step'] * 1000:8.1f} ms/step  "
                    f"{r['clips_per_s']:8.1f} clips/s  peak {r['peak_mb']:8.0f} MB  ({r['params_m']:.2f} M params)"
                )
            frames, reactions = args.frames, args.reactions
            if device == "cpu" and name != "default":  # a paper-sized DDPM-1000 would take hours on a CPU
                frames, reactions = min(frames, 50), min(reactions, 2)
            smp = _isolated(bench_sampling, name, device, frames, reactions, not args.no_ddpm)
            print(
                f"  sampling {smp['reactions']} reactions x {smp['frames']} frames "
                f"(guidance {smp['guidance']}), peak {smp['peak_mb']:.0f} MB:"
            )
            for label in [k for k in smp if k.startswith("DD")]:
                print(f"    {label:10s} {smp[label]['s']:8.2f} s  {smp[label]['reactions_per_s']:8.2f} reactions/s")
            ddpm = next((k for k in smp if k.startswith("DDPM")), None)
            if ddpm:
                for label in ("DDIM-10", "DDIM-20"):
                    print(f"    speed-up {label} / {ddpm}: {smp[ddpm]['s'] / smp[label]['s']:.1f}x")


if __name__ == "__main__":
    main()
