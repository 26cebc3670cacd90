"""A small procedural world for the demo: textured objects on textured backgrounds.

Everything is generated from a seed; no data files. Two kinds of output:

- still **images** (the unlabeled image collection that discovery and ImageCut2Video start from);
- **videos** that behave like real footage rather than like ImageCut2Video clips: smooth trajectories,
  articulated limbs, non-rigid deformation, camera pan and zoom, objects entering and leaving, occlusion and
  re-appearance, lighting change, blur and noise; with ``FOOTAGE["real"]`` also captured unlike the stills
  (exposure, tone and white balance per video, motion blur along the camera's motion, strong JPEG
  compression), the gap between a curated photo collection and real footage that self-training closes.
  The footage settings draw their random numbers after the scene's, so a seed gives the same objects, motion
  and masks under either footage, and the stills never change.

Ground-truth tracks (visible masks per frame, ``None`` when not visible) come with every video; they are
used only to score models, never to train them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = [
    "FOOTAGE",
    "RenderedVideo",
    "WorldClipSource",
    "WorldConfig",
    "render_image",
    "render_video",
    "world_source",
]


@dataclass(frozen=True)
class WorldConfig:
    height: int = 128
    width: int = 160
    num_frames: int = 12
    min_objects: int = 1
    max_objects: int = 3
    object_size: tuple[float, float] = (0.16, 0.3)  # radius as a fraction of the short side
    min_visible: int = 16  # fewer visible pixels -> the object is absent in that frame
    noise_std: tuple[float, float] = (2.0, 6.0)
    max_blur: float = 1.2  # Gaussian sigma, varies over the video
    # footage conditions of the videos (the stills stay well exposed and sharp, as curated photos are); the
    # defaults keep the video close to the stills' look
    exposure: tuple[float, float] = (1.0, 1.0)  # per-video gain
    gamma: tuple[float, float] = (1.0, 1.0)  # per-video tone curve
    contrast: tuple[float, float] = (1.0, 1.0)  # per-video blend with the mean grey
    color_cast: float = 0.0  # per-video, per-channel gain in 1 +- color_cast (white balance)
    motion_blur: float = 0.0  # longest motion-blur streak in pixels (along the camera's motion)
    jpeg_quality: tuple[int, int] = (100, 100)  # per-video compression (100: none)


# How the videos are captured, relative to the stills. "real": what separates real footage from a curated photo
# collection such as ImageNet (under- and over-exposure, flat tone, white balance, motion blur from the
# camera's motion, strong compression) -- the synthetic-to-real gap that self-training on the videos is for.
# "clean": the videos look like the stills (only lighting drift, mild blur and noise).
FOOTAGE: dict[str, dict] = {
    "clean": {},
    "real": {
        "exposure": (0.55, 1.25),
        "gamma": (0.8, 1.3),
        "contrast": (0.6, 0.95),
        "color_cast": 0.15,
        "motion_blur": 5.0,
        "jpeg_quality": (25, 60),
    },
}


@dataclass
class RenderedVideo:
    frames: np.ndarray  # (T, H, W, 3) uint8 RGB
    masks: np.ndarray  # (N, T, H, W) bool, visible part of each object
    present: np.ndarray  # (N, T) bool, visible area >= min_visible


# ---------------------------------------------------------------------------------------------------
# textures


def _smooth_noise(rng: np.random.Generator, size: int, scale: int) -> np.ndarray:
    """(size, size) float32 in [0, 1]: value noise upsampled from a coarse grid."""
    coarse = rng.random((scale, scale)).astype(np.float32)
    up = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    return (up - up.min()) / max(float(up.max() - up.min()), 1e-6)


def _palette(rng: np.random.Generator, vivid: bool) -> np.ndarray:
    """Two RGB colours; vivid ones for objects, muted ones for backgrounds."""
    hsv = np.zeros((1, 2, 3), np.uint8)
    hue = rng.integers(0, 180)
    hsv[0, :, 0] = [hue, (hue + rng.integers(20, 90)) % 180]
    hsv[0, :, 1] = rng.integers(150, 256, 2) if vivid else rng.integers(10, 90, 2)
    hsv[0, :, 2] = rng.integers(150, 256, 2) if vivid else rng.integers(60, 170, 2)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0].astype(np.float32)


def make_texture(rng: np.random.Generator, size: int, vivid: bool) -> np.ndarray:
    """(size, size, 3) float32 RGB in 0..255: noise, stripes, checks or spots in two colours."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    kind = rng.integers(4)
    if kind == 0:
        pattern = _smooth_noise(rng, size, int(rng.integers(3, 9)))
    elif kind == 1:
        angle, period = rng.uniform(0, np.pi), rng.uniform(6, 16)
        pattern = 0.5 + 0.5 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
    elif kind == 2:
        period = int(rng.integers(6, 14))
        pattern = ((xx // period + yy // period) % 2).astype(np.float32)
    else:
        spots = np.zeros((size, size), np.float32)
        for _ in range(int(rng.integers(20, 50))):
            cv2.circle(
                spots, (int(rng.integers(size)), int(rng.integers(size))), int(rng.integers(2, 6)), 1.0, -1
            )
        pattern = spots
    detail = _smooth_noise(rng, size, size // 4) * 0.25
    a, b = _palette(rng, vivid)
    mix = np.clip(pattern * 0.8 + detail, 0, 1)[..., None]
    return a * (1 - mix) + b * mix


# ---------------------------------------------------------------------------------------------------
# objects


@dataclass
class _Object:
    texture: np.ndarray
    radius: float  # world units (pixels at zoom 1)
    harmonics: np.ndarray  # (K, 3): order, amplitude, phase of the outline
    wobble: float  # non-rigid deformation speed
    limbs: list[tuple[float, float, float, float]]  # (attach angle, length, width, swing phase)
    path: np.ndarray  # (T, 2) centre in world coordinates
    spin: np.ndarray  # (T,) rotation in radians
    depth: float


def _random_object(
    rng: np.random.Generator, cfg: WorldConfig, T: int, extent: tuple[float, float], moving: bool
) -> _Object:
    short = min(cfg.height, cfg.width)
    radius = rng.uniform(*cfg.object_size) * short
    orders = rng.choice([2, 3, 4, 5], size=3, replace=False)
    harmonics = np.stack([orders, rng.uniform(0.03, 0.15, 3), rng.uniform(0, 2 * np.pi, 3)], axis=1)
    limbs = [
        (
            rng.uniform(0, 2 * np.pi),
            rng.uniform(0.7, 1.2) * radius,
            rng.uniform(0.18, 0.3) * radius,
            rng.uniform(0, 2 * np.pi),
        )
        for _ in range(int(rng.integers(0, 3)))
    ]
    H, W = extent
    start = np.array([rng.uniform(0.15, 0.85) * W, rng.uniform(0.15, 0.85) * H])
    if moving:
        # smooth path: a random drift plus a slow sinusoidal sway; some objects enter or leave the view
        speed = rng.uniform(0.5, 2.5) * radius / T
        direction = rng.uniform(0, 2 * np.pi)
        if rng.random() < 0.35:
            start = start - np.array([np.cos(direction), np.sin(direction)]) * speed * T * 0.8
            speed *= 1.6
        t = np.arange(T)[:, None]
        sway = np.stack(
            [np.sin(t[:, 0] * 0.4 + rng.uniform(0, 6)), np.cos(t[:, 0] * 0.3 + rng.uniform(0, 6))], 1
        )
        path = start + t * speed * np.array([np.cos(direction), np.sin(direction)]) + sway * radius * 0.15
        spin = np.cumsum(np.full(T, rng.uniform(-0.08, 0.08)))
    else:
        path, spin = np.repeat(start[None], T, 0), np.full(T, rng.uniform(0, 2 * np.pi))
    return _Object(
        texture=make_texture(rng, 96, vivid=True),
        radius=radius,
        harmonics=harmonics,
        wobble=rng.uniform(0.1, 0.35) if moving else 0.0,
        limbs=limbs,
        path=path,
        spin=spin,
        depth=rng.random(),
    )


def _object_mask(obj: _Object, t: int, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """(H, W) bool silhouette in frame t: a star-convex body with swinging limbs."""
    cx, cy = obj.path[t]
    dx, dy = xs - cx, ys - cy
    angle = np.arctan2(dy, dx) - obj.spin[t]
    rho = np.hypot(dx, dy)
    outline = np.ones_like(angle)
    for order, amplitude, phase in obj.harmonics:
        outline += (
            amplitude
            * (1 + 0.6 * np.sin(obj.wobble * t + phase))
            * np.cos(order * angle + phase + obj.wobble * t)
        )
    mask = rho < obj.radius * outline
    for attach, length, width, phase in obj.limbs:
        swing = attach + obj.spin[t] + 0.5 * np.sin(0.6 * t + phase) * (obj.wobble > 0)
        ux, uy = np.cos(swing), np.sin(swing)
        along = dx * ux + dy * uy - obj.radius * 0.6
        across = -dx * uy + dy * ux
        mask |= (along > 0) & (along < length) & (np.abs(across) < width)
    return mask


def _paint(obj: _Object, t: int, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """(H, W, 3) texture sampled in object coordinates, so it moves and turns with the object."""
    cx, cy = obj.path[t]
    c, s = np.cos(-obj.spin[t]), np.sin(-obj.spin[t])
    u = ((xs - cx) * c - (ys - cy) * s) * 0.7 + 48
    v = ((xs - cx) * s + (ys - cy) * c) * 0.7 + 48
    return cv2.remap(
        obj.texture,
        u.astype(np.float32),
        v.astype(np.float32),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT,
    )


# ---------------------------------------------------------------------------------------------------
# scenes


def render_video(rng: np.random.Generator, cfg: WorldConfig, moving: bool = True) -> RenderedVideo:
    """A video (or, with ``moving=False`` and one frame, a still photo) of the world."""
    T = cfg.num_frames if moving else 1
    H, W = cfg.height, cfg.width
    world_h, world_w = int(H * 1.5), int(W * 1.5)
    background = make_texture(rng, max(world_h, world_w), vivid=False)[:world_h, :world_w]
    n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    objects = sorted(
        (_random_object(rng, cfg, T, (world_h, world_w), moving) for _ in range(n)), key=lambda o: o.depth
    )
    # camera: a window of the world that pans and zooms smoothly
    zoom = 1.0 + (rng.uniform(-0.15, 0.15) * np.sin(np.linspace(0, np.pi, T)) if moving else np.zeros(T))
    pan = (
        np.linspace(rng.uniform(0, world_w - W, 2), rng.uniform(0, world_w - W, 2), T)
        if moving
        else np.full((T, 2), (world_w - W) / 2)
    )
    pan[:, 1] = np.clip(pan[:, 1] * (world_h - H) / max(world_w - W, 1), 0, world_h - H)
    light = 1.0 + (
        0.18 * np.sin(np.linspace(0, rng.uniform(1, 3) * np.pi, T) + rng.uniform(0, 6)) if moving else 0.0
    )
    look = _Footage.draw(rng, cfg, pan) if moving else None
    frames = np.zeros((T, H, W, 3), np.uint8)
    masks = np.zeros((n, T, H, W), bool)
    ys0, xs0 = np.mgrid[0:H, 0:W].astype(np.float32)
    for t in range(T):
        xs = (pan[t, 0] + (xs0 - W / 2) / zoom[t] + W / 2).astype(
            np.float32
        )  # frame pixel -> world coordinates
        ys = (pan[t, 1] + (ys0 - H / 2) / zoom[t] + H / 2).astype(np.float32)
        image = cv2.remap(background, xs, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        for k, obj in enumerate(objects):  # back to front: later objects occlude earlier ones
            silhouette = _object_mask(obj, t, xs, ys)
            image[silhouette] = _paint(obj, t, xs, ys)[silhouette]
            masks[:k, t] &= ~silhouette
            masks[k, t] = silhouette
        if look is not None:
            image = look.apply(image * light[t], t)
        frames[t] = _camera_effects(rng, image, cfg, t / max(T - 1, 1), moving)
        if look is not None and look.jpeg_quality < 100:
            frames[t] = look.compress(frames[t])
    present = masks.sum((2, 3)) >= cfg.min_visible
    masks &= present[:, :, None, None]
    return RenderedVideo(frames=frames, masks=masks, present=present)


@dataclass
class _Footage:
    """One video's capture conditions: exposure, tone, white balance, motion blur and compression."""

    gain: np.ndarray  # (3,) per-channel exposure x white balance
    gamma: float
    contrast: float
    streaks: np.ndarray  # (T, 2) motion-blur vector in pixels per frame
    jpeg_quality: int

    @classmethod
    def draw(cls, rng: np.random.Generator, cfg: WorldConfig, pan: np.ndarray) -> _Footage:
        T = len(pan)
        gain = rng.uniform(*cfg.exposure) * (1 + rng.uniform(-cfg.color_cast, cfg.color_cast, 3))
        velocity = np.gradient(pan, axis=0) if T > 1 else np.zeros_like(pan)
        shake = rng.normal(0, 1, (T, 2)) * cfg.motion_blur * 0.3
        streaks = velocity / max(float(np.abs(velocity).max()), 1e-6) * cfg.motion_blur * rng.uniform(0.3, 1)
        return cls(
            gain=gain.astype(np.float32),
            gamma=float(rng.uniform(*cfg.gamma)),
            contrast=float(rng.uniform(*cfg.contrast)),
            streaks=streaks + shake,
            jpeg_quality=int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1)),
        )

    def apply(self, image: np.ndarray, t: int) -> np.ndarray:
        """(H, W, 3) float 0..255 -> the same under this video's tone, colour and frame t's motion blur."""
        x = np.clip(image * self.gain / 255.0, 0, 1) ** self.gamma
        x = (x - x.mean()) * self.contrast + x.mean()
        length = float(np.hypot(*self.streaks[t]))
        if length >= 1.5:
            size = int(np.ceil(length)) | 1
            kernel = np.zeros((size, size), np.float32)
            half = np.rint(self.streaks[t] / length * (size // 2)).astype(int)
            c = size // 2
            cv2.line(kernel, (c - half[0], c - half[1]), (c + half[0], c + half[1]), 1.0)
            x = cv2.filter2D(x.astype(np.float32), -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT)
        return x * 255.0

    def compress(self, frame: np.ndarray) -> np.ndarray:
        ok, data = cv2.imencode(".jpg", frame[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        return cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1] if ok else frame


def _camera_effects(
    rng: np.random.Generator, image: np.ndarray, cfg: WorldConfig, phase: float, moving: bool
) -> np.ndarray:
    sigma = (
        cfg.max_blur * (0.5 + 0.5 * np.sin(phase * 2 * np.pi)) if moving else rng.uniform(0, cfg.max_blur / 2)
    )
    if sigma > 0.3:
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    image = image + rng.normal(0, rng.uniform(*cfg.noise_std), image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def render_image(rng: np.random.Generator, cfg: WorldConfig) -> tuple[np.ndarray, np.ndarray]:
    """A still photo of the world: (H, W, 3) uint8 and its (N, H, W) object masks (for inspection only)."""
    video = render_video(rng, cfg, moving=False)
    return video.frames[0], video.masks[:, 0]


class WorldClipSource:
    """A :class:`~autoqvis.train.data.ClipSource` of demo-world clips with their true tracks: clip ``index``
    with ``seed`` is always the same (for tests and the demo, where it stands in for real training data)."""

    def __init__(self, size: int, cfg: WorldConfig | None = None, num_frames: int = 3):
        self.size, self.cfg = size, cfg or WorldConfig(num_frames=num_frames)
        if num_frames != self.cfg.num_frames:
            self.cfg = WorldConfig(**{**self.cfg.__dict__, "num_frames": num_frames})

    def __len__(self) -> int:
        return self.size

    def identity(self) -> dict:
        """What determines its clips (for the fingerprint of a training run)."""
        return {"kind": "world", "size": self.size, "world": dataclasses.asdict(self.cfg)}

    def clip(self, index: int, seed: int):
        import torch

        from autoqvis.structures import Clip

        video = render_video(np.random.default_rng([index, seed]), self.cfg)
        keep = video.present.any(axis=1)
        masks = video.masks[keep]
        ids = np.where(video.present[keep], np.arange(int(keep.sum()))[:, None], -1)
        return Clip(
            frames=torch.from_numpy(video.frames).permute(0, 3, 1, 2).contiguous(),
            masks=torch.from_numpy(masks),
            ids=torch.from_numpy(ids.astype(np.int64)),
            source="synthetic",
            video_id=index,
        )


def world_source(size: int, num_frames: int = 3, height: int = 128, width: int = 160) -> WorldClipSource:
    """``size`` procedural demo-world clips of ``num_frames`` frames (``--world N`` of ``train``/``selftrain``)."""
    return WorldClipSource(size, WorldConfig(height=height, width=width), num_frames=num_frames)
