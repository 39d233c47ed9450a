"""Cartoon faces from facial attributes: see a reaction instead of reading 25 curves.

The synthetic dyadic world (:mod:`reactdiff_lite.data.synthetic`) writes its mp4 files
with this renderer, and the notebooks draw generated reactions with it (through
:mod:`reactdiff_lite.plots`). Each frame is drawn from that frame's attributes only:

- brows follow AU1 (inner raise), AU2 (outer raise) and AU4 (lowerer);
- eyes narrow with AU6 (cheek raiser) and AU7 (lid tightener), widen with AU1/AU2;
- mouth corners rise with AU12 (lip corner puller) and drop with AU15 (depressor);
- the mouth opens with AU25 (lips part) and AU26 (jaw drop);
- cheeks blush with AU6; the head turns and nods with the 3DMM rotation
  (pitch, yaw, roll = columns 52:55).

Values may be binary occurrences or continuous probabilities/intensities in [0, 1].
Shape geometry is computed for all frames at once in numpy (one function per facial
part); PIL fills the polygons on one tall canvas at twice the size, which is
box-filtered down (antialiasing). A 751-frame clip renders in about a tenth of a second.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .schema import AU, AU_NAMES, TDMM_ROT

_AU = {name: i for i, name in enumerate(AU_NAMES)}
_BACKGROUND = np.array([219, 227, 237])
_SKIN = np.array([250, 212, 168])
_BLUSH = np.array([242, 140, 140])
_NOSE = (214, 170, 130)
_DARK = (46, 31, 26)
_MOUTH = (140, 31, 36)
_WHITE = (255, 255, 255)
_SUPERSAMPLE = 2  # draw at 2x and box-filter down: antialiased edges
_CHUNK = 64  # frames per canvas: small canvases stay in cache
_SIDES = (-1.0, 1.0)  # left and right in face-local coordinates

# Face-local points (T, n, 2) -> per-frame flat pixel lists; ``feature=False`` for the head outline.
Projection = Callable[..., list]


@dataclass
class _Shape:
    """One filled polygon (or, with ``width``, an open line) per frame."""

    points: list  # per frame: a flat pixel list [x0, y0, x1, y1, ...]
    fill: tuple | list  # one RGB tuple, or one per frame
    width: int = 0  # > 0: draw a line of this width instead of a polygon

    def draw(self, canvas, t: int) -> None:
        fill = self.fill[t] if isinstance(self.fill, list) else self.fill
        if self.width:
            canvas.line(self.points[t], fill=fill, width=self.width)
        else:
            canvas.polygon(self.points[t], fill=fill)


def to_numpy(x) -> np.ndarray:
    """numpy float32 view of an array or a (possibly CUDA, grad-tracking) tensor."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def _ellipse(cu, cv, a, b, n: int = 16) -> np.ndarray:
    """(T, n, 2) points of ellipses with centres (cu, cv) and radii (a, b), each (T,) or scalar."""
    theta = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack(
        np.broadcast_arrays(
            np.asarray(cu)[..., None] + np.asarray(a)[..., None] * np.cos(theta),
            np.asarray(cv)[..., None] + np.asarray(b)[..., None] * np.sin(theta),
        ),
        -1,
    )


def _projection(pitch: np.ndarray, yaw: np.ndarray, roll: np.ndarray, canvas_size: int) -> Projection:
    """Face-local coordinates (u right, v down, in [-1, 1]) -> image pixels of each frame.

    The head shifts a little with yaw/pitch and rolls; the features shift more, which reads
    as a 3D turn. Frame t is drawn at row ``t % _CHUNK`` of a tall canvas of _CHUNK frames.
    """
    T = len(pitch)
    hx, hy, cr, sr = 0.25 * yaw, 0.25 * pitch, np.cos(roll), np.sin(roll)
    offset = (np.arange(T) % _CHUNK)[:, None] * canvas_size

    def to_px(p: np.ndarray, feature: bool = True) -> list:
        u = p[..., 0] + (0.45 * yaw[:, None] if feature else 0)
        v = p[..., 1] + (0.45 * pitch[:, None] if feature else 0)
        x = hx[:, None] + cr[:, None] * u - sr[:, None] * v
        y = hy[:, None] + sr[:, None] * u + cr[:, None] * v
        return np.stack([(x + 1) * canvas_size / 2, (y + 1) * canvas_size / 2 + offset], -1).reshape(T, -1).tolist()

    return to_px


def _head(to_px: Projection, au: dict) -> list[_Shape]:
    """The head and both cheeks, which blush with AU6."""
    blush = np.rint(_SKIN + (_BLUSH - _SKIN) * 0.6 * au["AU6"][:, None]).astype(int).tolist()
    head = _Shape(to_px(_ellipse(0.0, 0.0, 0.74, 0.88, 28), feature=False), tuple(int(c) for c in _SKIN))
    cheeks = [_Shape(to_px(_ellipse(s * 0.45, 0.22, 0.13, 0.13, 10)), [tuple(c) for c in blush]) for s in _SIDES]
    return [head, *cheeks]


def _eyes(to_px: Projection, au: dict, yaw: np.ndarray) -> list[_Shape]:
    """Eye whites, then pupils that look along the yaw. The open height shrinks with AU6/AU7
    and grows with AU1/AU2 (surprise)."""
    eye_h = 0.10 * (1 - 0.45 * au["AU7"] - 0.35 * au["AU6"] + 0.35 * (au["AU1"] + au["AU2"]) / 2)
    whites = [_Shape(to_px(_ellipse(s * 0.30, -0.10, 0.13, eye_h, 14)), _WHITE) for s in _SIDES]
    pupils = [
        _Shape(to_px(_ellipse(s * 0.30 + 0.08 * yaw, -0.10, 0.055, np.minimum(0.055, eye_h), 8)), _DARK) for s in _SIDES
    ]
    return whites + pupils


def _brows(to_px: Projection, au: dict, canvas_size: int) -> list[_Shape]:
    """Brow lines: inner end up with AU1, outer end up with AU2, both down (inner more) with AU4."""
    y_in = -0.36 - 0.14 * au["AU1"] + 0.11 * au["AU4"]
    y_out = -0.36 - 0.14 * au["AU2"] + 0.02 * au["AU4"]
    width = max(1, round(0.08 * canvas_size / 2))
    ends = np.stack([y_in, y_out], -1)  # (T, 2)
    return [
        _Shape(to_px(np.stack(np.broadcast_arrays(np.array([s * 0.12, s * 0.48])[None], ends), -1)), _DARK, width)
        for s in _SIDES
    ]


def _mouth(to_px: Projection, au: dict) -> list[_Shape]:
    """Nose, then the mouth: corners bend up with AU12 and down with AU15; the opening
    comes from AU25 (lips part) and AU26 (jaw drop)."""
    nose = _Shape(to_px(_ellipse(0.0, 0.14, 0.06, 0.04, 8)), _NOSE)
    width = 0.25 + 0.07 * au["AU12"]
    corner = -0.13 * au["AU12"] + 0.11 * au["AU15"]
    half_open = 0.035 + 0.13 * (0.35 * au["AU25"] + 0.65 * au["AU26"])
    r = np.linspace(-1, 1, 11)
    outline = np.concatenate([r, r[::-1]])  # upper lip left -> right, lower lip back
    mu = width[:, None] * outline
    centre = 0.43 + corner[:, None] * outline**2
    lip = half_open[:, None] * np.sqrt(1 - outline**2) * np.repeat([-1, 1], 11)
    return [nose, _Shape(to_px(np.stack([mu, centre + lip], -1)), _MOUTH)]


def _paint(shapes: list[_Shape], T: int, size: int) -> np.ndarray:
    """Fill every shape, in order, on tall canvases of _CHUNK frames; box-filter down.
    Returns (T, size, size, 3) uint8."""
    from PIL import Image, ImageDraw

    canvas_size = size * _SUPERSAMPLE
    background = tuple(int(c) for c in _BACKGROUND)
    out = np.empty((T, size, size, 3), np.uint8)
    for first in range(0, T, _CHUNK):
        frames = range(first, min(first + _CHUNK, T))
        canvas = Image.new("RGB", (canvas_size, canvas_size * len(frames)), background)
        draw = ImageDraw.Draw(canvas)
        for t in frames:
            for shape in shapes:
                shape.draw(draw, t)
        out[frames.start : frames.stop] = np.asarray(canvas.reduce(_SUPERSAMPLE)).reshape(len(frames), size, size, 3)
    return out


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
    e = to_numpy(emotion)
    if e.ndim != 2 or e.shape[1] < AU.stop:
        raise ValueError(f"render_faces expects emotion (T, 25), got {e.shape}")
    T = e.shape[0]
    au = {name: np.clip(e[:, i], 0, 1) for name, i in _AU.items()}  # (T,) each
    rot = np.zeros((T, 3), np.float32) if tdmm is None else to_numpy(tdmm).reshape(T, -1)[:, TDMM_ROT]
    pitch, yaw, roll = np.clip(rot, -0.6, 0.6).T  # (T,) each, radians
    canvas_size = size * _SUPERSAMPLE
    to_px = _projection(pitch, yaw, roll, canvas_size)
    shapes = [*_head(to_px, au), *_eyes(to_px, au, yaw), *_brows(to_px, au, canvas_size), *_mouth(to_px, au)]
    return _paint(shapes, T, size)
