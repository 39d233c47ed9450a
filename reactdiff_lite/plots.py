"""Figures: every plotting helper of the library, in one low-level module.

Faces come from :func:`reactdiff_lite.render.render_faces`; this module lays them out
with matplotlib. It imports only schema, render, numpy and matplotlib (import-linter
keeps it below the data layer), so any module may draw without pulling in IPython.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .render import render_faces, to_numpy
from .schema import AU, AU_NAMES, FPS, VA
from .utils import atomic_write


def _rows(emotion, tdmm) -> tuple[list, list]:
    """Normalise one (T, 25) clip or (R, T, 25) rows into lists of R arrays (poses likewise)."""
    e = to_numpy(emotion)
    rows = [e] if e.ndim == 2 else list(e)
    if tdmm is None:
        poses = [None] * len(rows)
    else:
        p = to_numpy(tdmm)
        p = p.reshape(*p.shape[:-2], p.shape[-1]) if p.ndim >= 3 and p.shape[-2] == 1 else p
        poses = [p] if p.ndim == 2 else list(p)
    if len(poses) != len(rows):
        raise ValueError(f"{len(rows)} emotion rows but {len(poses)} 3DMM rows")
    return rows, poses


def face_strip(emotion, tdmm=None, *, n: int = 8, size: int = 64, labels=None, fps: int = FPS, ax=None):
    """A strip of ``n`` evenly spaced faces per row, one row per sequence.

    Args:
        emotion: (T, 25) or (R, T, 25): one clip or R clips drawn as R rows.
        tdmm: None, (T, 58) or (R, T, 58) (a middle axis of 1 is squeezed).
        n: frames per row; size: face size in pixels; labels: R row names.
        fps: frame rate for the time labels; ax: draw into this matplotlib axis.

    Returns:
        The matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    rows, poses = _rows(emotion, tdmm)
    T = rows[0].shape[0]
    idx = np.linspace(0, T - 1, n).round().astype(int)
    grid = np.concatenate(
        [
            np.concatenate(list(render_faces(r[idx], None if p is None else p[idx], size)), axis=1)
            for r, p in zip(rows, poses, strict=True)
        ],
        axis=0,
    )  # (R*size, n*size, 3)
    if ax is None:
        fig, ax = plt.subplots(figsize=(1.1 * n, 1.1 * len(rows) + 0.4))
    ax.imshow(grid)
    ax.set_xticks((np.arange(n) + 0.5) * size, [f"{i / fps:.1f}s" for i in idx])
    ax.set_yticks((np.arange(len(rows)) + 0.5) * size, labels if labels is not None else [""] * len(rows))
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    return ax.figure


def animate(
    emotion,
    tdmm=None,
    *,
    size: int = 64,
    labels=None,
    fps: int = FPS,
    step: int = 1,
    max_frames: int | None = None,
    html: bool = True,
):
    """Animate one or several sequences side by side.

    Args:
        emotion, tdmm: as in :func:`face_strip`.
        step: draw every ``step``-th frame (playback keeps real time).
        max_frames: stop after this many drawn frames.
        html: return ``IPython.display.HTML`` (JS player for notebooks; IPython is imported
            only then); False returns the matplotlib ``FuncAnimation``.
    """
    import matplotlib.pyplot as plt
    from matplotlib import animation

    rows, poses = _rows(emotion, tdmm)
    idx = np.arange(0, rows[0].shape[0], step)[:max_frames]
    faces = [render_faces(r[idx], None if p is None else p[idx], size) for r, p in zip(rows, poses, strict=True)]
    frames = np.concatenate(faces, axis=2)  # (F, size, R*size, 3)
    fig, ax = plt.subplots(figsize=(1.6 * len(rows), 1.9))
    image = ax.imshow(frames[0])
    ax.set_xticks((np.arange(len(rows)) + 0.5) * size, labels if labels is not None else [""] * len(rows))
    ax.set_yticks([])
    title = ax.set_title("0.00 s", fontsize=9)

    def draw(i: int):
        image.set_data(frames[i])
        title.set_text(f"{idx[i] / fps:.2f} s")
        return image, title

    anim = animation.FuncAnimation(fig, draw, frames=len(frames), interval=1000 * step / fps, blit=True)
    plt.close(fig)
    if not html:
        return anim
    from IPython.display import HTML

    return HTML(anim.to_jshtml())


# ----------------------------------------------------------------------------- run figures


def save_figure(fig, path: str | Path) -> Path:
    """Write ``fig`` as a PNG atomically and close it."""
    import matplotlib.pyplot as plt

    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png", bbox_inches="tight"))
    plt.close(fig)
    return Path(path)


def plot_losses(runs: Mapping[str, list[dict]], path: str | Path) -> Path:
    """Training (batch) and val (EMA weights) loss against step, one panel per run.

    Args:
        runs: ``{title: log records}``; records are the lines of a run's ``log.jsonl``
            (``{"step", "loss"}`` and/or ``{"step", "val_loss"}``).
        path: the PNG to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(runs), figsize=(5.5 * len(runs), 3.4), squeeze=False)
    for ax, (title, records) in zip(axes[0], runs.items(), strict=True):
        train = [(r["step"], r["loss"]) for r in records if "loss" in r]
        val = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
        if train:
            ax.plot(*zip(*train, strict=True), lw=0.8, label="train (batch)")
        if val:
            ax.plot(*zip(*val, strict=True), "o-", ms=3, label="val (EMA weights)")
        ax.set(title=title, xlabel="optimiser step", ylabel="loss", yscale="log")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def reaction_faces(emotion: np.ndarray, tdmm: np.ndarray | None, labels: list[str], title: str, n: int = 10):
    """Rows of faces (speaker, real listener, generated listeners), ``n`` frames each.

    Args:
        emotion: (R, T, 25) rows. tdmm: (R, T, 58) head poses or None. labels: R row names.
    """
    fig = face_strip(emotion, tdmm, n=n, labels=labels)
    fig.axes[0].set_title(title, fontsize=9)
    return fig


CURVE_ROWS = (
    ("valence", VA.start),
    ("arousal", VA.start + 1),
    ("AU12 (smile)", AU_NAMES.index("AU12")),
    ("AU25 (lips part)", AU_NAMES.index("AU25")),
)


def reaction_curves(speaker: np.ndarray, listener: np.ndarray, generated: np.ndarray, fps: int = FPS):
    """Valence, arousal and two AUs over time: the speaker (left), the K generated reactions
    overlaid with the share of reactions showing each AU, and the real listener (right).

    Args:
        speaker, listener: (T, 25). generated: (K, T, 25).
    """
    import matplotlib.pyplot as plt

    t = np.arange(speaker.shape[0]) / fps
    fig, axes = plt.subplots(len(CURVE_ROWS), 2, figsize=(11, 1.6 * len(CURVE_ROWS)), sharex=True)
    for r, (name, d) in enumerate(CURVE_ROWS):
        axes[r, 0].plot(t, speaker[:, d], color="tab:blue", lw=1)
        axes[r, 0].set_ylabel(name, fontsize=8)
        for reaction in generated:
            axes[r, 1].plot(t, reaction[:, d], color="tab:orange", lw=0.6, alpha=0.35)
        if d < AU.stop:  # AUs are 0/1: show the share of reactions with it on
            axes[r, 1].plot(t, generated[:, :, d].mean(0), color="tab:red", lw=1, label="share of K on")
        axes[r, 1].plot(t, listener[:, d], color="black", lw=1, label="real listener")
    axes[0, 0].set_title("speaker", fontsize=9)
    axes[0, 1].set_title(
        f"listener: {len(generated)} generated reactions (orange) and the real one (black)", fontsize=9
    )
    for ax in axes[-1]:
        ax.set_xlabel("time (s)")
    axes[2, 1].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return fig


def diversity_curve(curve: Mapping) -> object:
    """FRDiv and FRCorr / K against the number of DDIM steps (``{steps: {...}, "oracle": {...}}``)."""
    import matplotlib.pyplot as plt

    steps = [s for s in curve if s != "oracle"]
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    ax.plot(steps, [curve[s]["FRDiv"] for s in steps], "o-", color="tab:orange", label="FRDiv (diversity)")
    ax2 = ax.twinx()
    ax2.plot(
        steps,
        [curve[s]["FRCorr_per_reaction"] for s in steps],
        "s--",
        color="tab:blue",
        label="FRCorr / K (appropriateness)",
    )
    if "oracle" in curve:
        oracle = curve["oracle"]
        ax.axhline(oracle["FRDiv"], color="tab:orange", lw=0.8, ls=":", label="Oracle FRDiv")
        ax2.axhline(oracle["FRCorr_per_reaction"], color="tab:blue", lw=0.8, ls=":", label="Oracle FRCorr / K")
    ax.set(xscale="log", xlabel="DDIM steps", ylabel="FRDiv")
    ax.set_xticks(steps, [str(s) for s in steps])
    ax2.set_ylabel("FRCorr / K")
    lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(
        lines, [line.get_label() for line in lines], fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2
    )
    ax.set_title("diversity and appropriateness vs DDIM steps (test subset)", fontsize=9)
    fig.tight_layout()
    return fig


# The course's roadmap: every box is a component of the library, tagged with the notebooks that build it.
# (x, y) are box centres on a 16.7 x 7 canvas; the top row is the training path, the bottom row inference.
ROADMAP_BOXES = {
    "world": ((1.3, 5.2), "dyadic world\nspeaker + listener\nclips, cues", ("01",)),
    "encoders": ((4.1, 5.2), "modality encoders\nface (emotion, 3DMM)\nvoice (log-mel)", ("02",)),
    "mmt": ((6.9, 5.2), "multimodal transformer\nintra-class, then\ninter-class attention", ("03",)),
    "autoencoder": ((9.7, 5.2), "stage 1: reaction\nautoencoder E, D\nreaction → latent z", ("04",)),
    "diffusion": (
        (12.5, 5.2),
        "stage 2: latent diffusion\ndenoiser on noisy z_t,\nspeaker, previous window",
        ("05", "06"),
    ),
    "training": ((15.3, 5.2), "training loop\nEMA, checkpoints,\nresume, DDP", ("06",)),
    "speaker": ((1.3, 1.6), "a test speaker\nface + voice", ("06",)),
    "condition": ((4.1, 1.6), "speaker condition\nE's MMT on the\nspeaker's streams", ("03", "06")),
    "sampler": ((6.9, 1.6), "DDIM sampler\nK noise draws,\nguidance s", ("05", "06", "08")),
    "decoder": ((9.7, 1.6), "decoder D\nz → K listener\nreactions", ("04", "06")),
    "metrics": ((12.5, 1.6), "REACT metrics\nFRCorr, FRDist, FRDiv,\nFRVar, FRDvs, FRSyn", ("07",)),
    "compare": ((15.3, 1.6), "explore, compare\ndiversity vs steps,\nlearned competitors", ("08", "09")),
}
ROADMAP_ARROWS = (
    ("world", "encoders"),
    ("encoders", "mmt"),
    ("mmt", "autoencoder"),
    ("autoencoder", "diffusion"),
    ("diffusion", "training"),
    ("speaker", "condition"),
    ("condition", "sampler"),
    ("sampler", "decoder"),
    ("decoder", "metrics"),
    ("metrics", "compare"),
    ("mmt", "condition"),  # the trained encoder is what conditions sampling
    ("diffusion", "sampler"),  # the trained denoiser is what the sampler runs
    ("autoencoder", "decoder"),
)


def roadmap(notebook: str | None = None, ax=None):
    """The course's roadmap: ReactDiff's training path (top) and inference path (bottom), both
    stages, with the components that notebook ``notebook`` (``"01"`` … ``"09"``) builds or uses
    highlighted. Drawn from :data:`ROADMAP_BOXES`, so the picture is the library's own map."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    if ax is None:
        _, ax = plt.subplots(figsize=(13, 4.2))
    w, h = 2.45, 1.55
    for (x, y), text, notebooks in ROADMAP_BOXES.values():
        on = notebook in notebooks
        ax.add_patch(
            FancyBboxPatch(
                (x - w / 2, y - h / 2),
                w,
                h,
                boxstyle="round,pad=0.05",
                facecolor="#ffd59e" if on else "#f2f2f2",
                edgecolor="#d46a00" if on else "#999999",
                lw=2.2 if on else 0.8,
            )
        )
        ax.text(x, y, text, ha="center", va="center", fontsize=7.5, weight="bold" if on else "normal")
    for a, b in ROADMAP_ARROWS:
        (xa, ya), (xb, yb) = ROADMAP_BOXES[a][0], ROADMAP_BOXES[b][0]
        start = (xa + w / 2, ya) if ya == yb else (xa, ya - h / 2)
        end = (xb - w / 2, yb) if ya == yb else (xb, yb + h / 2)
        ax.annotate("", xy=end, xytext=start, arrowprops={"arrowstyle": "->", "color": "#555555", "lw": 1})
    ax.text(0.1, 6.55, "training: learn E, D (stage 1), then the denoiser on E's latents (stage 2)", fontsize=8.5)
    ax.text(0.1, 0.05, "inference: condition on a new speaker, sample K latents, decode, score", fontsize=8.5)
    ax.set(xlim=(0, 16.7), ylim=(-0.2, 6.9), title=f"Course roadmap{f': notebook {notebook}' if notebook else ''}")
    ax.axis("off")
    return ax.figure


def appropriateness_diversity(
    points: Mapping[str, Mapping[str, tuple[float, float, float]]], learned: tuple[str, ...] = ()
) -> object:
    """The appropriateness-vs-diversity plane: FRCorr against FRDiv and FRDist against FRDiv.

    Args:
        points: ``{method: {"FRCorr" | "FRDist" | "FRDiv": (mean, ci_lo, ci_hi)}}``; each method is
            a point with its 95 % intervals as error bars on both axes.
        learned: the methods drawn as filled circles (trained models); the others are squares.
    Returns:
        the matplotlib figure (two panels side by side).
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    colours = plt.get_cmap("tab20")
    for ax, metric, better in zip(axes, ("FRCorr", "FRDist"), ("higher", "lower"), strict=True):
        for i, (name, p) in enumerate(points.items()):
            (x, xlo, xhi), (y, ylo, yhi) = p["FRDiv"], p[metric]
            ax.errorbar(
                x,
                y,
                xerr=[[x - xlo], [xhi - x]],
                yerr=[[y - ylo], [yhi - y]],
                fmt="o" if name in learned else "s",
                ms=7 if name in learned else 5,
                color=colours(i % 20),
                capsize=3,
                label=name,
            )
        ax.set(xlabel="FRDiv (diversity, higher is better)", ylabel=f"{metric} ({better} is better)")
        ax.grid(alpha=0.3)
    axes[0].set_title("appropriateness (FRCorr) vs diversity", fontsize=9)
    axes[1].set_title("distance to appropriate reactions (FRDist) vs diversity", fontsize=9)
    axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    return fig
