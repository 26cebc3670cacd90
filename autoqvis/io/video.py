"""Video sources: video files, frame folders, DAVIS-layout roots and YouTube-VIS JSON + frames roots.

Frames are decoded lazily, in order, one at a time (a 10,000-frame video is never held in memory), as
(H, W, 3) uint8 RGB numpy arrays, optionally resized so that the short side is ``short_side``
(detectron2's ``ResizeShortestEdge`` rule: ``int(x + 0.5)`` rounding, a cap on the long side, PIL bilinear).

    for path in find_videos("my_videos/"):
        video = open_video(path, short_side=360)
        for frame in video:          # (H, W, 3) uint8
            ...

Video files are decoded with PyAV; YUV 4:2:0 frames are converted with OpenCV, the faster path here.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from autoqvis.errors import DataError

__all__ = [
    "FRAME_SUFFIXES",
    "VIDEO_SUFFIXES",
    "FrameFolder",
    "FrameList",
    "SkipReport",
    "VideoFile",
    "VideoSource",
    "find_videos",
    "natural_key",
    "open_video",
    "read_image",
    "resize_short_side",
    "resized_hw",
    "skip_bad_input",
]

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".webm", ".mkv", ".m4v")
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")


def natural_key(name: str) -> list:
    """Sort key with numbers compared as numbers: ``frame2`` < ``frame10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def resized_hw(height: int, width: int, short_side: int | None, max_size: int = 1333) -> tuple[int, int]:
    """Output (h, w) of detectron2's ``ResizeShortestEdge`` (identity when ``short_side`` is None)."""
    if not short_side:
        return height, width
    scale = short_side / min(height, width)
    new_h, new_w = (short_side, scale * width) if height < width else (scale * height, short_side)
    if max(new_h, new_w) > max_size:
        rescale = max_size / max(new_h, new_w)
        new_h, new_w = new_h * rescale, new_w * rescale
    return int(new_h + 0.5), int(new_w + 0.5)


def resize_short_side(frame: np.ndarray, short_side: int | None, max_size: int = 1333) -> np.ndarray:
    """(H, W, 3) uint8 -> resized with PIL bilinear, as the reference's test-time mapper."""
    h, w = frame.shape[:2]
    new_h, new_w = resized_hw(h, w, short_side, max_size)
    if (new_h, new_w) == (h, w):
        return frame
    return np.asarray(Image.fromarray(frame).resize((new_w, new_h), Image.BILINEAR))


def read_image(path: str | Path) -> np.ndarray:
    """An image file -> (H, W, 3) uint8 RGB; a corrupt or truncated file raises DataError naming it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"frame {path} not found")
    try:
        with Image.open(path) as img:
            img.load()  # forces a full decode: truncated files fail here
            return np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(f"cannot decode image {path}: {err}; the file is corrupt or truncated") from err


@dataclass
class VideoSource:
    """Base class: a named sequence of frames decoded lazily in order."""

    name: str
    short_side: int | None = None
    max_size: int = 1333

    def __len__(self) -> int:
        raise NotImplementedError

    def _raw_frames(self) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[np.ndarray]:
        """Frames as (H, W, 3) uint8 RGB, resized when ``short_side`` is set; checks one size per video."""
        size = None
        for index, frame in enumerate(self._raw_frames()):
            if size is None:
                size = frame.shape[:2]
            elif frame.shape[:2] != size:
                raise DataError(
                    f"video {self.name}: frame {index} is {frame.shape[1]}x{frame.shape[0]} but earlier frames are "
                    f"{size[1]}x{size[0]}; all frames of one video must have the same size"
                )
            yield resize_short_side(frame, self.short_side, self.max_size)

    def frame_names(self) -> list[str]:
        """One name per frame, for the files written per frame (DAVIS masks): ``00000``, ``00001``, ... by
        position; a frame folder's own file names (stems), so that results match its frames by name."""
        return [f"{t:05d}" for t in range(len(self))]

    def frame_size(self) -> tuple[int, int]:
        """(H, W) of the original frames (before resizing)."""
        first = next(iter(self._raw_frames()), None)
        if first is None:
            raise DataError(f"video {self.name} has no frames")
        return first.shape[0], first.shape[1]

    def read_all(self) -> np.ndarray:
        """(T, H, W, 3) uint8: every frame at once (only for short videos)."""
        frames = list(self)
        if not frames:
            raise DataError(f"video {self.name} has no frames")
        return np.stack(frames)


@dataclass
class FrameList(VideoSource):
    """Frames given as a list of image paths (a frame folder, a DAVIS sequence, a YTVIS video)."""

    paths: Sequence[Path] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    def _raw_frames(self) -> Iterator[np.ndarray]:
        for path in self.paths:
            yield read_image(path)

    def frame_names(self) -> list[str]:
        return [Path(p).stem for p in self.paths]

    def frame_size(self) -> tuple[int, int]:
        if not self.paths:
            raise DataError(f"video {self.name} has no frames")
        try:
            with Image.open(self.paths[0]) as img:
                return img.height, img.width
        except (UnidentifiedImageError, OSError) as err:
            raise DataError(f"cannot read image {self.paths[0]}: {err}") from err


class FrameFolder(FrameList):
    """A folder of jpg/png frames in natural sort order."""

    def __init__(self, folder: str | Path, short_side: int | None = None, max_size: int = 1333):
        folder = Path(folder)
        if not folder.is_dir():
            raise DataError(f"frame folder {folder} not found")
        paths = sorted(
            (
                p
                for p in folder.iterdir()
                if p.suffix.lower() in FRAME_SUFFIXES and not p.name.startswith(".")
            ),
            key=lambda p: natural_key(p.name),
        )
        if not paths:
            raise DataError(f"frame folder {folder} holds no {'/'.join(FRAME_SUFFIXES)} files")
        stems = [p.stem for p in paths]
        if len(set(stems)) < len(stems):
            twice = next(s for s in stems if stems.count(s) > 1)
            raise DataError(
                f"frame folder {folder} holds two frames named {twice} "
                f"({', '.join(p.name for p in paths if p.stem == twice)}); keep one of them"
            )
        super().__init__(name=folder.name, short_side=short_side, max_size=max_size, paths=paths)
        self.folder = folder


class VideoFile(VideoSource):
    """A video file decoded with PyAV (frames in presentation order)."""

    def __init__(self, path: str | Path, short_side: int | None = None, max_size: int = 1333):
        path = Path(path)
        if not path.is_file():
            raise DataError(f"video file {path} not found")
        super().__init__(name=path.stem, short_side=short_side, max_size=max_size)
        self.path = path
        self._length: int | None = None
        with self._open() as container:
            if not container.streams.video:
                raise DataError(
                    f"{path} has no video stream; expected a video file ({', '.join(VIDEO_SUFFIXES)})"
                )

    def _open(self):
        import av

        try:
            return av.open(str(self.path))
        except (av.error.FFmpegError, OSError) as err:  # type: ignore[attr-defined]
            raise DataError(
                f"cannot open video {self.path}: {err}; the file is corrupt or not a video"
            ) from err

    def __len__(self) -> int:
        """Number of frames: the container's count, else counted by demuxing (no decoding)."""
        if self._length is None:
            import av

            with self._open() as container:
                stream = container.streams.video[0]
                count = stream.frames
                if count <= 0:
                    try:
                        count = sum(1 for packet in container.demux(stream) if packet.size)
                    except av.error.FFmpegError as err:  # type: ignore[attr-defined]
                        raise DataError(f"cannot read video {self.path}: {err}") from err
            self._length = int(count)
        return self._length

    def _raw_frames(self) -> Iterator[np.ndarray]:
        import av
        import cv2

        with self._open() as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            index = -1
            try:
                for index, frame in enumerate(container.decode(stream)):  # noqa: B007
                    if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0:
                        yield cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2RGB_I420)
                    else:
                        yield frame.to_ndarray(format="rgb24")
            except av.error.FFmpegError as err:  # type: ignore[attr-defined]
                raise DataError(
                    f"video {self.path} is corrupt or truncated: decoding failed after frame {index}: {err}"
                ) from err
        if index < 0:
            raise DataError(f"video {self.path} has no decodable frames; the file is corrupt or empty")


def open_video(path: str | Path, short_side: int | None = None, max_size: int = 1333) -> VideoSource:
    """A video file or a frame folder."""
    path = Path(path)
    if path.is_dir():
        return FrameFolder(path, short_side, max_size)
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return VideoFile(path, short_side, max_size)
    if not path.exists():
        raise DataError(f"{path} not found; expected a video file or a folder of frames")
    raise DataError(
        f"{path} is neither a folder of frames nor a video file ({', '.join(VIDEO_SUFFIXES)}); "
        "pass a video file, a frame folder or a folder of them"
    )


def find_videos(root: str | Path) -> list[Path]:
    """The videos under ``root``: ``root`` itself if it is one video, else its video files and frame
    folders (one level deep), in natural order. A DAVIS root (``JPEGImages/480p/<seq>``) gives its sequences."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root} not found; expected a video file, a frame folder or a folder of them")
    if root.is_file():
        return [root]
    davis = root / "JPEGImages" / "480p"
    if davis.is_dir():
        root = davis
    entries = sorted(root.iterdir(), key=lambda p: natural_key(p.name))
    if any(p.is_file() and p.suffix.lower() in FRAME_SUFFIXES for p in entries):
        return [root]  # the folder itself is a frame folder
    videos = [
        p
        for p in entries
        if not p.name.startswith(".")
        and (
            (p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
            or (p.is_dir() and any(c.suffix.lower() in FRAME_SUFFIXES for c in p.iterdir()))
        )
    ]
    if not videos:
        raise DataError(
            f"{root} holds no video files ({', '.join(VIDEO_SUFFIXES)}) and no frame folders; "
            "pass a folder of videos or of frame folders"
        )
    return videos


@dataclass
class SkipReport:
    """Inputs skipped because they were bad (with ``--skip-bad``): (name, reason) pairs."""

    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.skipped)

    def summary(self) -> str:
        lines = [f"skipped {len(self.skipped)} bad input(s):"]
        lines += [f"  {name}: {reason}" for name, reason in self.skipped]
        return "\n".join(lines)


class skip_bad_input:
    """``with skip_bad_input(name, report, enabled):`` swallows a DataError when enabled, logging it and
    adding it to ``report``; otherwise the error propagates."""

    def __init__(self, name: str, report: SkipReport, enabled: bool):
        self.name, self.report, self.enabled = name, report, enabled

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is not None and self.enabled and isinstance(exc, DataError):
            log.warning("skipping %s: %s", self.name, exc)
            self.report.skipped.append((self.name, str(exc)))
            return True
        return False
