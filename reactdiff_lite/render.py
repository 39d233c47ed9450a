"""Cartoon faces from facial attributes: see a reaction instead of reading 25 curves.

The synthetic dyadic world (``dyadic_world.md``) writes its mp4 files with this
renderer, and the notebooks draw generated reactions with it. Each frame is drawn
from that frame's attributes only:

- brows follow AU1 (inner raise), AU2 (outer raise) and AU4 (lowerer);
- eyes narrow with AU6 (cheek raiser) and AU7 (lid tightener), widen with AU1/AU2;
- mouth corners rise with AU12 (lip corner puller) and drop with AU15 (depressor);
- the mouth opens with AU25 (lips part) and AU26 (jaw drop);
- cheeks blush with AU6; the head turns and nods with the 3DMM rotation
  (pitch, yaw, roll = columns 52:55).

Values may be binary occurrences or continuous probabilities/intensities in [0, 1].
Shape geometry is computed for all frames at once in numpy; PIL fills the polygons on
one tall canvas at twice the size, which is box-filtered down (antialiasing). A
751-frame clip renders in about a tenth of a second.
"""

from __future__ import annotations

import numpy as np

from .data.schema import AU_NAMES, TDMM_ROT

_AU = {name: i for i, name in enumerate(AU_NAMES)}
_BACKGROUND = np.array([219, 227, 237])
_SKIN = np.array([250, 212, 168])
_BLUSH = np.array([242, 140, 140])
_DARK = (46, 31, 26)
_MOUTH = (140, 31, 36)
_WHITE = (255, 255, 255)
_SUPERSAMPLE = 2  # draw at 2x and box-filter down: antialiased edges
_CHUNK = 64       # frames per canvas: small canvases stay in cache


def _numpy(x) -> np.ndarray:
    """numpy float32 view of an array or a (possibly CUDA, grad-tracking) tensor."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def _ellipse(cu, cv, a, b, n: int = 16) -> np.ndarray:
    """(T, n, 2) points of ellipses with centres (cu, cv) and radii (a, b), each (T,) or scalar."""
    theta = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack(np.broadcast_arrays(np.asarray(cu)[..., None] + np.asarray(a)[..., None] * np.cos(theta),
                                        np.asarray(cv)[..., None] + np.asarray(b)[..., None] * np.sin(theta)), -1)


def render_faces(emotion, tdmm=None, size: int = 64) -> np.ndarray:
    """Draw one cartoon face per frame.

    Args:
        emotion: (T, 25) attributes in REACT column order (AUs binary or continuous).
        tdmm: optional (T, 58) or (T, 1, 58) 3DMM coefficients; only the rotation
            (pitch, yaw, roll in radians) is used. None draws a frontal face.
        size: output height and width in pixels.

    Returns:
        (T, size, size, 3) uint8 RGB frames.
    """
    from PIL import Image, ImageDraw

    e = _numpy(emotion)
    if e.ndim != 2 or e.shape[1] < 15:
        raise ValueError(f"render_faces expects emotion (T, 25), got {e.shape}")
    T = e.shape[0]
    au = {name: np.clip(e[:, i], 0, 1) for name, i in _AU.items()}  # (T,) each
    rot = np.zeros((T, 3), np.float32) if tdmm is None else _numpy(tdmm).reshape(T, -1)[:, TDMM_ROT]
    pitch, yaw, roll = np.clip(rot, -0.6, 0.6).T  # (T,) each, radians

    # Face-local coordinates (u right, v down, in [-1, 1]) -> image pixels. The head shifts a
    # little with yaw/pitch and rolls; the features shift more, which reads as a 3D turn.
    S = size * _SUPERSAMPLE
    hx, hy, cr, sr = 0.25 * yaw, 0.25 * pitch, np.cos(roll), np.sin(roll)
    offset = (np.arange(T) % _CHUNK)[:, None] * S  # frames are drawn on tall canvases of _CHUNK frames

    def to_px(p: np.ndarray, feature: bool = True) -> list:
        """(T, n, 2) local points -> per-frame flat pixel lists for PIL."""
        u = p[..., 0] + (0.45 * yaw[:, None] if feature else 0)
        v = p[..., 1] + (0.45 * pitch[:, None] if feature else 0)
        x = hx[:, None] + cr[:, None] * u - sr[:, None] * v
        y = hy[:, None] + sr[:, None] * u + cr[:, None] * v
        return np.stack([(x + 1) * S / 2, (y + 1) * S / 2 + offset], -1).reshape(T, -1).tolist()

    sides = (-1.0, 1.0)
    head = to_px(_ellipse(0.0, 0.0, 0.74, 0.88, 28), feature=False)
    blush = np.rint(_SKIN + (_BLUSH - _SKIN) * 0.6 * au["AU6"][:, None]).astype(int).tolist()
    cheeks = [to_px(_ellipse(s * 0.45, 0.22, 0.13, 0.13, 10)) for s in sides]
    # Eyes: open height shrinks with AU6/AU7 and grows with AU1/AU2 (surprise).
    eye_h = 0.10 * (1 - 0.45 * au["AU7"] - 0.35 * au["AU6"] + 0.35 * (au["AU1"] + au["AU2"]) / 2)
    eyes = [to_px(_ellipse(s * 0.30, -0.10, 0.13, eye_h, 14)) for s in sides]
    pupils = [to_px(_ellipse(s * 0.30 + 0.08 * yaw, -0.10, 0.055, np.minimum(0.055, eye_h), 8)) for s in sides]
    # Brows: inner end up with AU1, outer end up with AU2, both down (inner more) with AU4.
    y_in = -0.36 - 0.14 * au["AU1"] + 0.11 * au["AU4"]
    y_out = -0.36 - 0.14 * au["AU2"] + 0.02 * au["AU4"]
    brows = [to_px(np.stack(np.broadcast_arrays(np.array([s * 0.12, s * 0.48])[None],
                                                np.stack([y_in, y_out], -1)), -1)) for s in sides]
    nose = to_px(_ellipse(0.0, 0.14, 0.06, 0.04, 8))
    # Mouth: corners bend up with AU12, down with AU15; opening from AU25 (lips) and AU26 (jaw).
    width = 0.25 + 0.07 * au["AU12"]
    corner = -0.13 * au["AU12"] + 0.11 * au["AU15"]
    half_open = 0.035 + 0.13 * (0.35 * au["AU25"] + 0.65 * au["AU26"])
    r = np.linspace(-1, 1, 11)
    mu = width[:, None] * np.concatenate([r, r[::-1]])
    centre = 0.43 + corner[:, None] * np.concatenate([r, r[::-1]]) ** 2
    lip = half_open[:, None] * np.sqrt(1 - np.concatenate([r, r[::-1]]) ** 2) * np.repeat([-1, 1], 11)
    mouth = to_px(np.stack([mu, centre + lip], -1))

    brow_width = max(1, round(0.08 * S / 2))
    skin, background = tuple(int(c) for c in _SKIN), tuple(int(c) for c in _BACKGROUND)
    out = np.empty((T, size, size, 3), np.uint8)
    for first in range(0, T, _CHUNK):
        frames = range(first, min(first + _CHUNK, T))
        canvas = Image.new("RGB", (S, S * len(frames)), background)
        draw = ImageDraw.Draw(canvas)
        for t in frames:
            draw.polygon(head[t], fill=skin)
            for part in cheeks:
                draw.polygon(part[t], fill=tuple(blush[t]))
            for part in eyes:
                draw.polygon(part[t], fill=_WHITE)
            for part in pupils:
                draw.polygon(part[t], fill=_DARK)
            for part in brows:
                draw.line(part[t], fill=_DARK, width=brow_width)
            draw.polygon(nose[t], fill=(214, 170, 130))
            draw.polygon(mouth[t], fill=_MOUTH)
        out[frames.start:frames.stop] = np.asarray(canvas.reduce(_SUPERSAMPLE)).reshape(len(frames), size, size, 3)
    return out


def _rows(emotion, tdmm) -> tuple[list, list]:
    """Normalise one (T, 25) clip or (R, T, 25) rows into lists of R arrays."""
    e = _numpy(emotion)
    rows = [e] if e.ndim == 2 else list(e)
    if tdmm is None:
        poses = [None] * len(rows)
    else:
        p = _numpy(tdmm)
        p = p.reshape(*p.shape[:-2], p.shape[-1]) if p.ndim >= 3 and p.shape[-2] == 1 else p
        poses = [p] if p.ndim == 2 else list(p)
    if len(poses) != len(rows):
        raise ValueError(f"{len(rows)} emotion rows but {len(poses)} 3DMM rows")
    return rows, poses


def face_strip(emotion, tdmm=None, *, n: int = 8, size: int = 64, labels=None, fps: int = 25, ax=None):
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
    grid = np.concatenate([np.concatenate(list(render_faces(r[idx], None if p is None else p[idx], size)), axis=1)
                           for r, p in zip(rows, poses)], axis=0)  # (R*size, n*size, 3)
    if ax is None:
        fig, ax = plt.subplots(figsize=(1.1 * n, 1.1 * len(rows) + 0.4))
    ax.imshow(grid)
    ax.set_xticks((np.arange(n) + 0.5) * size, [f"{i / fps:.1f}s" for i in idx])
    ax.set_yticks((np.arange(len(rows)) + 0.5) * size, labels if labels is not None else [""] * len(rows))
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    return ax.figure


def animate(emotion, tdmm=None, *, size: int = 64, labels=None, fps: int = 25, step: int = 1,
            max_frames: int | None = None, html: bool = True):
    """Animate one or several sequences side by side.

    Args:
        emotion, tdmm: as in :func:`face_strip`.
        step: draw every ``step``-th frame (playback keeps real time).
        max_frames: stop after this many drawn frames.
        html: return ``IPython.display.HTML`` (JS player for notebooks); False returns
            the matplotlib ``FuncAnimation``.
    """
    import matplotlib.pyplot as plt
    from matplotlib import animation

    rows, poses = _rows(emotion, tdmm)
    idx = np.arange(0, rows[0].shape[0], step)[:max_frames]
    faces = [render_faces(r[idx], None if p is None else p[idx], size) for r, p in zip(rows, poses)]
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
