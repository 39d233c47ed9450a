"""Online latency, "speaker frame in -> listener frame out", of the online and offline models.

For each model size (``smoke``, ``default``) the script builds two models from the configs,
with **random weights** (compute does not depend on the values):

- ``offline``: the default, non-causal model (``configs/stage{1,2}_<size>.yaml``), run in
  both modes: ``online`` (window-causal: the F frames after a window hidden) and ``offline``;
- ``frame-causal``: the online track (``configs/stage{1,2}_online.yaml`` for ``default``;
  the smoke configs with ``autoencoder.causal``, ``diffusion.denoiser.causal`` and
  ``context_after=0`` for ``smoke``).

and reports, for one live stream (one speaker, K = 1 reaction, the config's DDIM steps and
guidance, η = 0), on the CPU with 1 and 2 threads (and on CUDA when present):

- **look-ahead**: the algorithmic look-ahead in frames (``ReactionModel.lookahead``): how
  many later speaker frames a listener frame may depend on (0 for the frame-causal model);
- **window step**: the compute of one window step of ``sampling.generate`` (encode the
  speaker chunk, denoise the W-frame window, decode it), timed on a clip of several windows
  and divided by the number of windows; **per frame** amortised = window step / W; the
  **real-time factor** of window stepping = frames generated per second / 25 = W / (25 ·
  window step) (> 1: faster than real time);
- **latency, window stepping**: a window step starts when the last speaker frame it needs
  has arrived, so the worst listener frame (a window's first) waits
  ``max(look-ahead, W − 1)`` frames of 40 ms, plus the window step;
- **frame stepping** (frame-causal model only): at every new speaker frame t, re-encode
  the current chunk and re-denoise the current window with the frames not yet heard set to
  zero, and emit listener frame t. Because the model is frame-causal, this gives exactly the
  window-stepped reaction (checked here: the listener latents are compared with
  ``torch.equal``), with a latency of one frame step and no waiting; its real-time factor is
  1 / (25 · frame step).

Usage::

    python benchmarks/online_latency.py [--sizes smoke,default] [--threads 1,2]
                                        [--device auto|cpu|cuda] [--windows 4] [--repeats 3]
                                        [--json online_latency.json]

Timings are wall-clock medians on a possibly shared machine: the load average is printed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import time
from pathlib import Path

import torch

from reactdiff_lite.config import load_config, to_dict
from reactdiff_lite.latents import ReactionModel
from reactdiff_lite.models.autoencoder import ReactionAutoencoder
from reactdiff_lite.models.diffusion import LatentDiffusion
from reactdiff_lite.models.schedulers import randn
from reactdiff_lite.sampling import generate
from reactdiff_lite.schema import FPS, SAMPLES_PER_FRAME
from reactdiff_lite.tasks import resolve_stage2
from reactdiff_lite.utils import derive_seed
from reactdiff_lite.windows import person_window, window_condition

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
CAUSAL_SMOKE = (["autoencoder.causal=true"], ["diffusion.denoiser.causal=true", "diffusion.denoiser.context_after=0"])
MODELS = {  # (size, model) -> (stage-1 config, stage-2 config, stage-1 overrides, stage-2 overrides)
    ("smoke", "offline"): ("stage1_smoke", "stage2_smoke", [], []),
    ("smoke", "frame-causal"): ("stage1_smoke", "stage2_smoke", *CAUSAL_SMOKE),
    ("default", "offline"): ("stage1_default", "stage2_default", [], []),
    ("default", "frame-causal"): ("stage1_online", "stage2_online", [], []),
}


def build(size: str, kind: str, device: torch.device) -> ReactionModel:
    """A two-stage model of the configs of ``(size, kind)`` with random weights.

    The denoiser's zero-initialised layers (adaLN-Zero gates, output) get random values too,
    as training would give them: otherwise the untrained model ignores the speaker, and the
    frame-stepping check would hold whatever the speaker path did."""
    one, two, over1, over2 = MODELS[size, kind]
    stage1 = load_config(CONFIGS / f"{one}.yaml", over1)
    stored = {"autoencoder": to_dict(stage1.autoencoder), "data": to_dict(stage1.data)}
    cfg = resolve_stage2(load_config(CONFIGS / f"{two}.yaml", over2), stored, f"{one}.yaml")
    torch.manual_seed(0)
    ae = ReactionAutoencoder(cfg.autoencoder)
    ae.normalizer.fit(torch.randn(256, cfg.autoencoder.latent_dim))
    diffusion = LatentDiffusion(cfg.diffusion)
    with torch.no_grad():
        for p in diffusion.parameters():
            if not p.any():
                p.normal_(0, 0.3)
    return ReactionModel(ae.to(device).eval(), diffusion.to(device).eval(), cfg, device)


def speaker(frames: int) -> dict[str, torch.Tensor]:
    """One random speaker clip (1, T, …): emotion, 3DMM, audio (the presets read no video)."""
    g = torch.Generator().manual_seed(0)
    fe = torch.softmax(torch.randn(1, frames, 8, generator=g), -1)
    au, va = (torch.rand(1, frames, 15, generator=g) > 0.7).float(), torch.rand(1, frames, 2, generator=g) * 2 - 1
    return {
        "emotion": torch.cat([au, va, fe], -1),
        "tdmm": torch.randn(1, frames, 58, generator=g) * 0.1,
        "audio": torch.randn(1, frames * SAMPLES_PER_FRAME, generator=g) * 0.05,
    }


def heard(person: dict[str, torch.Tensor], first: int, length: int, t: int) -> dict[str, torch.Tensor]:
    """Frames ``[first, first + length)`` of ``person`` with every frame after t (not yet heard) zero."""
    window = {key: x.clone() for key, x in person_window(person, first, length).items()}
    for key, x in window.items():
        scale = SAMPLES_PER_FRAME if key == "audio" else 1
        x[:, (t + 1 - first) * scale :] = 0
    return window


@torch.no_grad()
def frame_stepping(model: ReactionModel, person: dict[str, torch.Tensor], frames: int) -> tuple[torch.Tensor, list]:
    """Listener latents (1, frames, Dz) made one speaker frame at a time, and the seconds of each step.

    Frame t: encode the current chunk with the frames after t zero, denoise the current window
    from its noise (the draw ``generate`` makes for it, seed 0) and decode it; output frame t.
    """
    den, opts, dev = model.diffusion.config.denoiser, model.config.sample, model.device
    W, P, C, Dz = den.window, den.context_before, model.encode_chunk, den.latent_dim
    T = person["emotion"].shape[1]
    spk, lst = torch.zeros(1, T, Dz, device=dev), torch.zeros(1, T, Dz, device=dev)
    g = torch.Generator(dev).manual_seed(derive_seed(0, 0))  # generate's generator of batch 0
    online, times = torch.ones(1, dtype=torch.bool, device=dev), []
    for t in range(frames):
        begin = time.perf_counter()
        w, c = t // W, t // C * C
        if t % W == 0:
            x_T = randn((1, W, Dz), g, dev)  # the window's noise, drawn once
        spk[:, c : c + C] = model.encode(heard(person, c, C, t)).to(dev)  # (1, C, Dz)
        start = torch.full((1,), w * W, dtype=torch.long, device=dev)
        context, mask, prev = window_condition(spk, lst, start, W, P, 0, online)
        window = model.diffusion.sample(
            context, mask, prev, steps=opts.steps, eta=0.0, guidance=opts.guidance, spacing=opts.spacing, x_T=x_T
        )  # (1, W, Dz)
        model.decode(window)  # emotion and 3DMM of the window; frame t - wW is the output
        lst[:, t] = window[:, t - w * W]
        times.append(time.perf_counter() - begin)
    return lst[:, :frames].cpu(), times


def measure(model: ReactionModel, mode: str, windows: int, repeats: int) -> dict:
    """One row of the table: look-ahead, window step, frame step (frame-causal only)."""
    den = model.diffusion.config.denoiser
    W, online = den.window, mode == "online"
    person = speaker(windows * W)

    def run() -> dict[str, torch.Tensor]:
        return generate(model, person, 1, online=online, eta=0.0, seed=0, batch_size=1)

    reference = run()  # warm-up
    steps = []
    for _ in range(repeats):
        begin = time.perf_counter()
        run()
        steps.append((time.perf_counter() - begin) / windows)
    step = statistics.median(steps)
    lookahead = model.lookahead(online)
    row = {
        "lookahead_frames": lookahead,
        "window": W,
        "window_step_ms": 1000 * step,
        "per_frame_ms": 1000 * step / W,
        "rtf_window": W / (FPS * step),
        "latency_window_ms": 1000 * (max(lookahead, W - 1) / FPS + step),
    }
    if den.causal:
        frames = W + W // 2  # a window and a half: crosses a window boundary
        latents, times = frame_stepping(model, person, frames)
        frame = statistics.median(times[1:])  # the first step warms up
        row |= {
            "frame_step_ms": 1000 * frame,
            "rtf_frame": 1 / (FPS * frame),
            "latency_frame_ms": 1000 * frame,
            "frame_stepping_exact": torch.equal(latents[0], reference["latent"][0, 0, :frames]),
        }
    return row


def table(rows: list[dict]) -> str:
    """The markdown table of the rows."""
    head = (
        "| size | model | mode | device | threads | look-ahead (frames) | window step (ms) | per frame (ms) | "
        "RTF window stepping | worst latency, window stepping (ms) | frame step (ms) | RTF frame stepping | "
        "frame stepping = window stepping |\n|" + "---|" * 5 + "---:|" * 8
    )
    lines = [head]
    for r in rows:
        frame = (
            f"{r['frame_step_ms']:.1f} | {r['rtf_frame']:.2f} | {r['frame_stepping_exact']}"
            if "frame_step_ms" in r
            else "– | – | –"
        )
        lines.append(
            f"| {r['size']} | {r['model']} | {r['mode']} | {r['device']} | {r['threads']} | {r['lookahead_frames']} | "
            f"{r['window_step_ms']:.1f} | {r['per_frame_ms']:.2f} | {r['rtf_window']:.1f} | "
            f"{r['latency_window_ms']:.0f} | {frame} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="smoke,default")
    parser.add_argument("--threads", default="1,2", help="CPU thread counts")
    parser.add_argument("--device", default="auto", help="auto: CPU, and CUDA too when present")
    parser.add_argument("--windows", type=int, default=4, help="windows per timed clip")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per row (median)")
    parser.add_argument("--json", type=Path, help="also write the rows and the machine's state here")
    args = parser.parse_args()
    cuda = torch.cuda.is_available() and args.device != "cpu"
    setups = [] if args.device == "cuda" else [("cpu", int(n)) for n in args.threads.split(",")]
    setups += [("cuda", torch.get_num_threads())] if cuda else []
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "load_average": os.getloadavg(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name() if cuda else None,
        "weights": "random (timing does not depend on them)",
    }
    print(
        f"{info['date']}: load average {info['load_average'][0]:.2f} on {info['cpus']} CPUs; torch {torch.__version__}"
    )
    print(f"CUDA: {info['cuda'] or 'none on this machine'}")
    rows = []
    for device, threads in setups:
        torch.set_num_threads(threads)
        for size in args.sizes.split(","):
            for kind in ("offline", "frame-causal"):
                model = build(size, kind, torch.device(device))
                for mode in ("online",) if kind == "frame-causal" else ("online", "offline"):
                    row = {"size": size, "model": kind, "mode": mode, "device": device, "threads": threads}
                    rows.append(row | measure(model, mode, args.windows, args.repeats))
                    print(table(rows[-1:]).splitlines()[-1], flush=True)
    print("\n" + table(rows))
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "rows": rows}, indent=1) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
