"""Procedural talking faces: a per-speaker appearance and a fast per-frame renderer.

Each speaker gets a distinct look (skin, face shape, eyes, brows, hair, clothes,
background) so identity has to come from the reference face, as with real data. Faces sit
at the canonical ``face_layout`` positions, so the lower-face masks cover the mouth here
exactly as on prepared real crops.

Speed matters (the default corpus must render in well under a minute), so everything that
does not move is drawn once per clip at 2x resolution into a premultiplied RGBA layer; per
frame only the mouth is drawn onto a copy, the layer is area-downsampled (anti-aliasing),
warped for head motion and composited over the static background.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter1d

from datamodules import face_layout as L

SUPERSAMPLE = 2
SHIFT = 4  # cv2 fixed-point bits: sub-pixel shapes, so the mouth moves smoothly
_ONE = 1 << SHIFT

Color = tuple[float, float, float]
T = TypeVar("T")

SKIN_TONES: tuple[Color, ...] = (
    (255, 224, 196), (241, 194, 167), (224, 172, 135), (198, 134, 96), (176, 118, 82),
    (141, 85, 56), (110, 66, 44), (84, 50, 34), (232, 190, 150), (250, 208, 178),
)
HAIR_COLORS: tuple[Color, ...] = (
    (25, 20, 18), (60, 40, 28), (100, 66, 38), (160, 115, 60), (215, 180, 110),
    (150, 60, 30), (120, 120, 120), (210, 210, 205), (45, 35, 30), (80, 50, 40),
)
IRIS_COLORS: tuple[Color, ...] = (
    (70, 45, 25), (110, 75, 40), (60, 110, 170), (80, 130, 90), (110, 120, 125), (35, 25, 20),
)
HAIR_STYLES = ("short", "long", "fringe", "bald", "bun")


@dataclass(frozen=True)
class Appearance:
    """Everything static about how one speaker looks; fractions are of the crop side."""

    skin: Color
    lip: Color
    hair: Color
    hair_style: str
    hairline: float
    iris: Color
    clothes: Color
    bg_a: Color
    bg_b: Color
    bg_kind: str
    face_hw: float
    face_hh: float
    jaw: float
    eye_dx: float
    eye_w: float
    eye_h: float
    brow_thick: float
    brow_tilt: float
    brow_len: float
    mouth_scale: float
    lip_thick: float
    light_side: float
    glasses: bool


def _color(values: object) -> Color:
    r, g, b = (float(v) for v in np.clip(np.asarray(values, dtype=np.float64), 0, 255))
    return (r, g, b)


def _jitter(rng: np.random.Generator, color: Color, amount: float) -> Color:
    return _color(np.asarray(color) * (1.0 + rng.uniform(-amount, amount, 3)))


def _pick(rng: np.random.Generator, options: tuple[T, ...]) -> T:
    return options[int(rng.integers(len(options)))]


def _hsv(h: float, s: float, v: float) -> Color:
    """OpenCV 8-bit HSV (hue 0..180) to an RGB colour."""
    return _color(cv2.cvtColor(np.uint8([[[h, s, v]]]), cv2.COLOR_HSV2RGB)[0, 0])


def sample_appearance(rng: np.random.Generator) -> Appearance:
    """A random but plausible face; every draw comes from ``rng`` (deterministic by seed)."""
    skin = _jitter(rng, _pick(rng, SKIN_TONES), 0.05)
    redden = np.array([25.0, 0.0, 5.0]) * rng.uniform(0.5, 1.5)
    lip = _color(np.asarray(skin) * np.array([0.82, 0.52, 0.55]) + redden)
    hue = rng.uniform(0, 180)
    bg_a, bg_b = (_hsv(hue, rng.uniform(20, 140), rng.uniform(v0, v1))
                  for v0, v1 in ((60, 230), (40, 200)))
    clothes = _hsv(rng.uniform(0, 180), rng.uniform(30, 220), rng.uniform(40, 220))
    return Appearance(
        skin=skin,
        lip=lip,
        hair=_jitter(rng, _pick(rng, HAIR_COLORS), 0.08),
        hair_style=_pick(rng, HAIR_STYLES),
        hairline=float(rng.uniform(0.20, 0.25)),
        iris=_jitter(rng, _pick(rng, IRIS_COLORS), 0.1),
        clothes=clothes,
        bg_a=bg_a,
        bg_b=bg_b,
        bg_kind=_pick(rng, ("vertical", "horizontal", "radial", "diagonal")),
        face_hw=L.FACE_HALF_WIDTH * float(rng.uniform(0.88, 1.06)),
        face_hh=L.FACE_HALF_HEIGHT * float(rng.uniform(0.95, 1.04)),
        jaw=float(rng.uniform(0.80, 1.0)),
        eye_dx=L.EYE_DX + float(rng.uniform(-0.015, 0.015)),
        eye_w=float(rng.uniform(0.045, 0.06)),
        eye_h=float(rng.uniform(0.022, 0.032)),
        brow_thick=float(rng.uniform(0.012, 0.026)),
        brow_tilt=float(rng.uniform(-10, 10)),
        brow_len=float(rng.uniform(0.055, 0.075)),
        mouth_scale=float(rng.uniform(0.9, 1.1)),
        lip_thick=float(rng.uniform(0.022, 0.034)),
        light_side=float(rng.uniform(-1, 1)),
        glasses=bool(rng.random() < 0.25),
    )


def _scaled(color: Color, factor: float) -> tuple[float, float, float, float]:
    r, g, b = (float(np.clip(c * factor, 0, 255)) for c in color)
    return (r, g, b, 255.0)


def _fp(v: float) -> int:
    """Pixel coordinate to cv2 fixed point."""
    return round(v * _ONE)


def _ellipse(img: np.ndarray, cx: float, cy: float, ax: float, ay: float, color: tuple,
             angle: float = 0.0, start: float = 0.0, end: float = 360.0,
             thickness: int = -1) -> None:
    cv2.ellipse(img, (_fp(cx), _fp(cy)), (max(0, _fp(ax)), max(0, _fp(ay))), angle, start, end,
                color, thickness, cv2.LINE_AA, SHIFT)


def _background(a: Appearance, size: int) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    t = {"vertical": y, "horizontal": x, "diagonal": (x + y) / 2,
         "radial": np.clip(np.hypot(x - 0.5, y - 0.45) / 0.7, 0, 1)}[a.bg_kind]
    return (np.asarray(a.bg_a, np.float32) * (1 - t[..., None])
            + np.asarray(a.bg_b, np.float32) * t[..., None])


def _draw_static(a: Appearance, side: int, rng: np.random.Generator) -> np.ndarray:
    """Premultiplied RGBA (side, side, 4) uint8: everything but the mouth and background."""
    img = np.zeros((side, side, 4), np.uint8)
    W = float(side)
    cx, fy = 0.5 * W, L.FACE_CENTER_Y * W
    hw, hh = a.face_hw * W, a.face_hh * W
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) + 0.5
    streaks = gaussian_filter1d(rng.normal(0, 1, side), 1.0)[None, :] * 0.07  # hair strands
    hair_px = np.broadcast_to(np.clip(np.asarray(a.hair) * (1 + streaks[..., None]), 0, 255),
                              (side, side, 3))

    if a.hair_style == "long":  # hair falling behind the head and shoulders
        _ellipse(img, cx, fy + 0.04 * W, hw + 0.075 * W, hh + 0.06 * W, (*a.hair, 255))
    # Clothes and neck.
    _ellipse(img, cx, 1.13 * W, 0.48 * W, 0.22 * W, (*a.clothes, 255))
    neck = _scaled(a.skin, 0.82)
    cv2.rectangle(img, (_fp(cx - 0.12 * W), _fp(L.CHIN_Y * W - 0.15 * W)),
                  (_fp(cx + 0.12 * W), _fp(1.0 * W)), neck, -1, cv2.LINE_AA, SHIFT)
    # Ears, then the face (upper oval plus a jaw oval that sets chin shape).
    for sgn in (-1, 1):
        _ellipse(img, cx + sgn * (hw - 0.005 * W), (L.EYE_Y + 0.06) * W, 0.035 * W, 0.065 * W,
                 _scaled(a.skin, 0.9))
    skin = (*a.skin, 255.0)
    _ellipse(img, cx, fy, hw, hh, skin)
    _ellipse(img, cx, fy + 0.06 * W, hw * a.jaw, hh - 0.06 * W, skin)
    # Baked side light: one cheek darker than the other.
    face = img[..., 3] > 0
    ramp = 1.0 + 0.09 * a.light_side * (x - cx) / hw
    img[..., :3] = np.where(face[..., None], np.clip(img[..., :3] * ramp[..., None], 0, 255),
                            img[..., :3]).astype(np.uint8)

    # Hair cap: inside a slightly larger head oval and above a hairline curving down at the temples.
    if a.hair_style != "bald":
        inside = ((x - cx) / (hw + 0.025 * W)) ** 2 + ((y - fy) / (hh + 0.035 * W)) ** 2 <= 1
        line = a.hairline if a.hair_style != "fringe" else L.BROW_Y - 0.045
        bend = 0.16 if a.hair_style != "fringe" else 0.06
        hairline = (line + bend * ((x - cx) / hw) ** 2) * W
        cap = inside & (y < np.minimum(hairline, (L.EYE_Y - 0.02) * W))
        if a.hair_style == "bun":
            cap |= np.hypot(x - cx, y - 0.11 * W) < 0.085 * W
        img[cap, :3] = hair_px[cap].astype(np.uint8)
        img[cap, 3] = 255

    # Eyes: sclera, iris, pupil, highlight, lid line.
    for sgn in (-1, 1):
        ex, ey = cx + sgn * a.eye_dx * W, L.EYE_Y * W
        ew, eh = a.eye_w * W, a.eye_h * W
        _ellipse(img, ex, ey, ew, eh, (245, 242, 238, 255))
        _ellipse(img, ex, ey, eh * 0.95, eh * 0.95, (*a.iris, 255))
        _ellipse(img, ex, ey, eh * 0.45, eh * 0.45, (12, 10, 10, 255))
        _ellipse(img, ex + 0.3 * eh, ey - 0.3 * eh, eh * 0.18, eh * 0.18, (255, 255, 255, 255))
        _ellipse(img, ex, ey, ew, eh, _scaled(a.skin, 0.45), start=180, end=360,
                 thickness=max(1, round(W * 0.008)))
        # Brow: a thick arc above the eye, tilted outwards-up or -down per speaker.
        _ellipse(img, ex, L.BROW_Y * W + 0.02 * W, a.brow_len * W, 0.025 * W,
                 _scaled(a.hair, 0.7), angle=sgn * a.brow_tilt, start=200, end=340,
                 thickness=max(1, round(a.brow_thick * W)))
        if a.glasses:
            _ellipse(img, ex, ey, ew * 1.35, eh * 2.3, (30, 30, 35, 255),
                     thickness=max(1, round(W * 0.012)))
    if a.glasses:
        cv2.line(img, (_fp(cx - a.eye_dx * W + a.eye_w * 1.35 * W), _fp(L.EYE_Y * W)),
                 (_fp(cx + a.eye_dx * W - a.eye_w * 1.35 * W), _fp(L.EYE_Y * W)),
                 (30, 30, 35, 255), max(1, round(W * 0.012)), cv2.LINE_AA, SHIFT)
    # Nose: shaded ridge, tip and nostrils.
    shade = _scaled(a.skin, 0.8)
    cv2.line(img, (_fp(cx + 0.02 * W), _fp((L.EYE_Y + 0.05) * W)),
             (_fp(cx + 0.03 * W), _fp((L.NOSE_TIP_Y - 0.02) * W)), shade,
             max(1, round(W * 0.008)), cv2.LINE_AA, SHIFT)
    _ellipse(img, cx, L.NOSE_TIP_Y * W, 0.04 * W, 0.022 * W, _scaled(a.skin, 0.9))
    for sgn in (-1, 1):
        _ellipse(img, cx + sgn * 0.025 * W, (L.NOSE_TIP_Y + 0.012) * W, 0.011 * W, 0.007 * W,
                 _scaled(a.skin, 0.5))
    return img


class FaceRenderer:
    """Renders one speaker's face at ``size`` px with a given mouth state and head pose."""

    def __init__(self, appearance: Appearance, size: int, rng: np.random.Generator) -> None:
        if size < 16 or size % 2:
            raise ValueError(f"image size must be even and >= 16, got {size}")
        self.appearance = appearance
        self.size = size
        self.side = size * SUPERSAMPLE
        self.layer = _draw_static(appearance, self.side, rng)
        self.background = np.clip(_background(appearance, size) + 0.5, 0, 255).astype(np.uint8)
        a, W = appearance, float(self.side)
        self._lip = _scaled(a.lip, 1.0)
        self._lip_upper = _scaled(a.lip, 0.85)
        self._inner = (45.0, 14.0, 18.0, 255.0)
        self._teeth = (236.0, 232.0, 220.0, 255.0)
        self._tongue = _scaled(a.lip, 0.75)
        self._seam = _scaled(a.lip, 0.45)
        self._seam_px = max(1, round(W * 0.011))

    def draw_mouth(self, img: np.ndarray, mouth: np.ndarray) -> None:
        """Lips from (openness, width, roundness): round lips narrow, the jaw drops when open."""
        a, W = self.appearance, float(self.side)
        openness, width, roundness = (float(np.clip(v, 0, 1)) for v in mouth)
        cx, cy = 0.5 * W, (L.MOUTH_Y + 0.012 * openness) * W
        hw = L.MOUTH_HALF_WIDTH * a.mouth_scale * (0.75 + 0.45 * width) * (1 - 0.35 * roundness) * W
        ih = openness * 0.07 * W
        iw = hw * (0.8 - 0.25 * roundness)
        thick = a.lip_thick * W * (1 + 0.25 * roundness)
        _ellipse(img, cx, cy, hw, ih + thick, self._lip)
        _ellipse(img, cx, cy, hw, ih + thick, self._lip_upper, start=180, end=360)
        if ih >= 0.6:
            _ellipse(img, cx, cy, iw, ih, self._inner)
            if openness > 0.2:
                _ellipse(img, cx, cy - 0.5 * ih, 0.6 * iw, 0.3 * ih, self._teeth)
                _ellipse(img, cx, cy + 0.55 * ih, 0.55 * iw, 0.33 * ih, self._tongue)
        else:
            cv2.line(img, (_fp(cx - 0.85 * hw), _fp(cy)), (_fp(cx + 0.85 * hw), _fp(cy)),
                     self._seam, self._seam_px, cv2.LINE_AA, SHIFT)

    def render(self, mouth: np.ndarray, pose: tuple[float, float, float] = (0.0, 0.0, 0.0),
               gain: float = 1.0) -> np.ndarray:
        """uint8 (size, size, 3) RGB; pose = (dx, dy) as fractions of the side, angle in degrees."""
        layer = self.layer.copy()
        self.draw_mouth(layer, mouth)
        S = self.size
        small = cv2.resize(layer, (S, S), interpolation=cv2.INTER_AREA)
        dx, dy, angle = pose
        if dx or dy or angle:
            m = cv2.getRotationMatrix2D((0.5 * S, L.FACE_CENTER_Y * S), angle, 1.0)
            m[:, 2] += (dx * S, dy * S)
            small = cv2.warpAffine(small, m, (S, S), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))
        # Premultiplied "over" in saturating uint8 OpenCV ops (4x faster than float numpy).
        transparency = cv2.merge([255 - small[..., 3]] * 3)
        behind = cv2.multiply(self.background, transparency, scale=1.0 / 255.0)
        out = cv2.add(cv2.cvtColor(small, cv2.COLOR_RGBA2RGB), behind)
        return cv2.convertScaleAbs(out, alpha=gain)

    def render_clip(self, track: np.ndarray, poses: np.ndarray, gains: np.ndarray) -> np.ndarray:
        """uint8 (T, size, size, 3) for a (T, 3) mouth track, (T, 3) poses and (T,) gains."""
        frames = np.empty((track.shape[0], self.size, self.size, 3), np.uint8)
        for i in range(track.shape[0]):
            dx, dy, angle = (float(v) for v in poses[i])
            frames[i] = self.render(track[i], (dx, dy, angle), float(gains[i]))
        return frames


def _smooth_noise(rng: np.random.Generator, n: int, sigma: float, amplitude: float) -> np.ndarray:
    """Slowly varying noise with peak |value| = amplitude * U(0.5, 1)."""
    pad = int(3 * sigma)
    x = gaussian_filter1d(rng.normal(0, 1, n + 2 * pad), sigma)[pad:pad + n]
    peak = float(np.abs(x).max()) or 1.0
    return x / peak * amplitude * rng.uniform(0.5, 1.0)


def head_motion(rng: np.random.Generator, num_frames: int,
                fps: int) -> tuple[np.ndarray, np.ndarray]:
    """Poses (T, 3) = (dx, dy, degrees) within +-2 %/+-3 deg; lighting gains (T,) within +-10 %."""
    sigma = 0.5 * fps
    poses = np.stack([_smooth_noise(rng, num_frames, sigma, 0.02),
                      _smooth_noise(rng, num_frames, sigma, 0.02),
                      _smooth_noise(rng, num_frames, sigma, 3.0)], axis=1)
    gains = 1.0 + _smooth_noise(rng, num_frames, 1.5 * fps, 0.10)
    return poses, gains
