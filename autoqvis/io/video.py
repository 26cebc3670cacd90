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

from autoqvis.config.sections import InferenceConfig
from autoqvis.errors import DataError
from autoqvis.io.images import open_image
from autoqvis.runs.access import PERMISSION_HINT, require_file
from autoqvis.runs.fingerprint import files_identity, tree_identity
from autoqvis.runs.paths import check_input, list_files

__all__ = [
    "FRAME_SUFFIXES",
    "VIDEO_SUFFIXES",
    "FrameFolder",
    "FrameList",
    "SkipReport",
    "VideoFile",
    "VideoSource",
    "find_videos",
    "frame_files",
    "image_files",
    "natural_key",
    "open_video",
    "read_image",
    "resize_short_side",
    "resized_hw",
    "skip_bad_input",
    "video_identities",
    "video_identity",
]

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".webm", ".mkv", ".m4v")
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")


def natural_key(name: str) -> list:
    """Sort key with numbers compared as numbers: ``frame2`` < ``frame10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def frame_files(folder: str | Path) -> list[Path]:
    """The frames of a frame folder, in natural order: its .jpg/.jpeg/.png files (hidden ones aside), not its
    subfolders'. The one list :class:`FrameFolder` reads and :func:`video_identity` identifies."""
    folder = Path(folder)
    names = list_files(folder, FRAME_SUFFIXES)
    return [folder / n for n in sorted(names, key=natural_key)]


def image_files(root: str | Path) -> list[str]:
    """The images under ``root``, its subfolders searched recursively (hidden files and folders aside, a
    linked subfolder said and not followed, an unreadable one refused): names relative to ``root`` in natural
    order. The one list discovery reads and identifies."""
    return sorted(list_files(root, FRAME_SUFFIXES, recursive=True), key=natural_key)


def video_identity(path: str | Path) -> dict:
    """What a video is made of: a video file's size and digest; a frame folder's frames (:func:`frame_files`:
    the files its reader reads) by name, size and digest."""
    path = Path(path)
    if path.is_dir():
        return files_identity(path, [p.name for p in frame_files(path)])
    return tree_identity(path)


def video_identities(paths: Sequence[str | Path], names: Sequence[str]) -> list[dict]:
    """Each video's ``{"name", **video_identity}`` in order (``names``: what the command calls each)."""
    return [{"name": n, **video_identity(p)} for p, n in zip(paths, names, strict=True)]


def resized_hw(
    height: int, width: int, short_side: int | None, max_size: int = InferenceConfig.max_size
) -> tuple[int, int]:
    """Output (h, w) of detectron2's ``ResizeShortestEdge`` (identity when ``short_side`` is None)."""
    if not short_side:
        return height, width
    scale = short_side / min(height, width)
    new_h, new_w = (short_side, scale * width) if height < width else (scale * height, short_side)
    if max(new_h, new_w) > max_size:
        rescale = max_size / max(new_h, new_w)
        new_h, new_w = new_h * rescale, new_w * rescale
    return int(new_h + 0.5), int(new_w + 0.5)


def resize_short_side(
    frame: np.ndarray, short_side: int | None, max_size: int = InferenceConfig.max_size
) -> np.ndarray:
    """(H, W, 3) uint8 -> resized with PIL bilinear, as the reference's test-time mapper."""
    h, w = frame.shape[:2]
    new_h, new_w = resized_hw(h, w, short_side, max_size)
    if (new_h, new_w) == (h, w):
        return frame
    return np.asarray(Image.fromarray(frame).resize((new_w, new_h), Image.BILINEAR))


def read_image(path: str | Path) -> np.ndarray:
    """An image file -> (H, W, 3) uint8 RGB; a corrupt or truncated file raises DataError naming it (and one
    that cannot be read says why: not found, a folder, permission denied). 16-bit grey-level PNGs are scaled
    to 8 bits (65535 -> 255)."""
    path = require_file(path, "frame")
    try:
        with open_image(path, "frame") as img:
            img.load()  # forces a full decode: truncated files fail here
            return _rgb8(img)
    except DataError:  # (a ValueError: said as it is)
        raise
    except PermissionError as err:
        raise DataError(f"frame {path} cannot be read: permission denied; {PERMISSION_HINT}") from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(f"cannot decode image {path}: {err}; the file is corrupt or truncated") from err


def _rgb8(img: Image.Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a loaded image. PIL's own conversion clips 16-bit grey levels (``I;16``, or
    ``I`` from older PIL) at 255, which turns a 16-bit PNG white: those are scaled instead. (16-bit colour
    PNGs PIL already reads as 8-bit RGB.)"""
    if img.mode.startswith("I;16") or img.mode == "I":
        values = np.asarray(img).astype(np.int64).clip(0, 65535)
        grey = ((values + 128) // 257).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    return np.asarray(img.convert("RGB"))


@dataclass
class VideoSource:
    """Base class: a named sequence of frames decoded lazily in order."""

    name: str
    short_side: int | None = None
    max_size: int = InferenceConfig.max_size

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
            with open_image(require_file(self.paths[0], "frame"), "frame") as img:
                return img.height, img.width
        except (UnidentifiedImageError, OSError) as err:
            raise DataError(f"cannot read image {self.paths[0]}: {err}") from err


class FrameFolder(FrameList):
    """A folder of jpg/png frames in natural sort order."""

    def __init__(
        self, folder: str | Path, short_side: int | None = None, max_size: int = InferenceConfig.max_size
    ):
        folder = check_input(folder, "dir", "frame folder")
        paths = frame_files(folder)
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

    def __init__(
        self, path: str | Path, short_side: int | None = None, max_size: int = InferenceConfig.max_size
    ):
        path = check_input(path, "file", "video file")  # a FIFO would block the decoder: refused by name
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
        import cv2

        for frame in self._decoded():
            if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0:
                yield cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2RGB_I420)
            else:
                yield frame.to_ndarray(format="rgb24")

    def verify(self) -> None:
        """Decode every frame once (no conversion): a damaged or truncated file raises the DataError that
        reading it would, before any of its frames is used."""
        for _ in self._decoded():
            pass

    def _decoded(self) -> Iterator:
        """PyAV frames in order. A decoding error, or a file that ends before the frames its header declares
        (an interrupted copy: the index at the front, the data cut short), raises DataError naming the video
        and the frame where decoding stopped."""
        import av

        with self._open() as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            declared, packets, decoded, cut = stream.frames, 0, 0, False
            try:
                for packet in container.demux(stream):
                    packets += 1 if packet.size else 0
                    cut |= packet.is_corrupt  # the file ended inside this packet
                    for frame in packet.decode():
                        yield frame
                        decoded += 1
            except av.error.FFmpegError as err:  # type: ignore[attr-defined]
                raise DataError(
                    f"video {self.path} is corrupt or truncated: decoding failed at frame {decoded} "
                    f"({decoded} frames decoded){self._of(declared)}: {err}; copy the file again or re-encode it"
                ) from err
        if decoded == 0:
            raise DataError(f"video {self.path} has no decodable frames; the file is corrupt or empty")
        if decoded < declared and (packets < declared or cut):
            raise DataError(
                f"video {self.path} is truncated: decoding stopped at frame {decoded}{self._of(declared)}; the "
                "file ends early (an interrupted copy or download?): copy it again or re-encode it"
            )

    @staticmethod
    def _of(declared: int) -> str:
        return f" of the {declared} its header declares" if declared > 0 else ""


def open_video(
    path: str | Path, short_side: int | None = None, max_size: int = InferenceConfig.max_size
) -> VideoSource:
    """A video file or a frame folder."""
    path = Path(path)
    if path.is_dir():
        return FrameFolder(path, short_side, max_size)
    if path.suffix.lower() in VIDEO_SUFFIXES or path.is_symlink():
        return VideoFile(path, short_side, max_size)
    if not path.exists():
        raise DataError(f"{path} not found; expected a video file or a folder of frames")
    raise DataError(
        f"{path} is neither a folder of frames nor a video file ({', '.join(VIDEO_SUFFIXES)}); "
        "pass a video file, a frame folder or a folder of them"
    )


def find_videos(root: str | Path) -> list[Path]:
    """The videos under ``root``: ``root`` itself if it is one video, else its video files and frame
    folders (one level deep), in natural order. A DAVIS root (``JPEGImages/480p/<seq>``) gives its sequences.
    A folder with images at its top is one video (a frame folder); images next to video files or frame
    folders are an error naming them (which video would they be?). Hidden entries are ignored."""
    root = Path(root)
    if not root.exists() and not root.is_symlink():
        raise DataError(f"{root} not found; expected a video file, a frame folder or a folder of them")
    if not root.is_dir():
        return [check_input(root, "file")]
    davis = root / "JPEGImages" / "480p"
    if davis.is_dir():
        root = davis
    check_input(root, "dir")
    entries = [
        p for p in sorted(root.iterdir(), key=lambda p: natural_key(p.name)) if not p.name.startswith(".")
    ]
    # a FIFO, socket or dangling link named like a video or an image is listed, so that its reader refuses it
    # by name (or --skip-bad skips it, saying so) instead of passing over it
    images = [p.name for p in entries if not p.is_dir() and p.suffix.lower() in FRAME_SUFFIXES]
    videos = [
        p
        for p in entries
        if (not p.is_dir() and p.suffix.lower() in VIDEO_SUFFIXES)
        or (p.is_dir() and list_files(p, FRAME_SUFFIXES))
    ]
    if images and videos:
        raise DataError(
            f"{root} holds both images ({_some(images)}) and videos ({_some([p.name for p in videos])}): a folder "
            "is either the frames of one video or a folder of videos (video files and frame folders); move the "
            f"images into a folder of their own or out of {root}"
        )
    if images:
        return [root]  # the folder itself is a frame folder
    if not videos:
        raise DataError(
            f"{root} holds no video files ({', '.join(VIDEO_SUFFIXES)}) and no frame folders; "
            "pass a folder of videos or of frame folders"
        )
    return videos


def _some(names: list[str], count: int = 3) -> str:
    """``a, b, c and 4 more``."""
    more = f" and {len(names) - count} more" if len(names) > count else ""
    return ", ".join(names[:count]) + more


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
