"""The user's unlabeled videos as a frame dataset the self-training loop can sample from at random.

Video files cannot be read at random frames cheaply, so every video (file or frame folder) is decoded once,
resized to a working short side, and written as JPEG frames under ``<run>/frames/<name>/``. A video is
finished when its ``.done`` marker exists and its frames match the marker's record (sizes and digests: a
frame deleted or damaged since is said and the video decoded again), so an interrupted run continues with
the next video. The result
is a YouTube-VIS dataset without annotations (``videos.json``): video ids 1..N in natural order.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from autoqvis.errors import DataError
from autoqvis.io.video import SkipReport, open_video, skip_bad_input, video_identities
from autoqvis.io.ytvis import YTVISDataset, load_ytvis, save_ytvis
from autoqvis.progress import progress_bar
from autoqvis.runs.atomic import atomic_path, atomic_write_json
from autoqvis.runs.fingerprint import Unit
from autoqvis.runs.layout import SelfTrainLayout
from autoqvis.runs.step import folder_record, record_changes, step
from autoqvis.structures import VideoInfo
from autoqvis.train import dist

__all__ = ["cache_videos"]

log = logging.getLogger(__name__)


def cache_videos(
    paths: Sequence[Path],
    run_dir: Path,
    short_side: int | None,
    max_size: int = 1333,
    skip_bad: bool = False,
    resume: bool = True,
    hint: str = "",
) -> tuple[YTVISDataset, SkipReport]:
    """Decode every video once into ``run_dir/frames`` (resumable) and return the frame dataset.

    The cache's fingerprint (``videos.fingerprint.json``: the sizes and each input's name and content) must
    match for it to be reused; ``resume=False`` decodes every video again. In a distributed run rank 0 decodes.
    A video that cannot be decoded to its end is an error (``hint`` appended: how to skip it), or with
    ``skip_bad`` skipped and listed in the report."""
    frames_root = run_dir / "frames"
    index_path = run_dir / "videos.json"
    if dist.is_main():
        result = _cache(paths, run_dir, short_side, max_size, skip_bad, resume, hint)
    dist.barrier()
    if not dist.is_main():
        result = load_ytvis(index_path, frames_root, check_frames=False), SkipReport()
    return result


def _cache(
    paths: Sequence[Path],
    run_dir: Path,
    short_side: int | None,
    max_size: int,
    skip_bad: bool,
    resume: bool,
    hint: str,
) -> tuple[YTVISDataset, SkipReport]:
    layout = SelfTrainLayout(run_dir)
    frames_root, index_path = layout.frames, layout.videos
    unit = Unit(
        "the frame cache of the unlabeled videos", layout.videos_fingerprint, (index_path, frames_root)
    )
    names = _unique_names(paths)

    def fingerprint() -> dict:
        inputs = []
        for path, name in zip(paths, names, strict=True):
            try:
                inputs += video_identities([path], [name])
            except DataError:  # (a FIFO among its frames) with --skip-bad: its reader skips it and says so
                if not skip_bad:
                    raise
        return {"short_side": short_side, "max_size": max_size, "inputs": inputs}

    # the videos are identified again once decoded: one replaced meanwhile leaves the cache unmarked
    with step(unit, fingerprint(), resume, recheck=fingerprint, finished=index_path.exists) as s:
        if s.done:
            try:
                return load_ytvis(index_path, frames_root, check_frames=False), SkipReport()
            except DataError as err:
                raise DataError(
                    f"{err}; the frame cache is damaged: delete {index_path} or rerun with --no-resume"
                ) from err
        report = SkipReport()
        videos: list[VideoInfo] = []
        with progress_bar("decode videos", total=len(paths)) as bar:
            for video_id, (path, name) in enumerate(zip(paths, names, strict=True), start=1):
                try:
                    with skip_bad_input(str(path), report, enabled=skip_bad):
                        videos.append(_cache_one(path, name, video_id, frames_root, short_side, max_size))
                except DataError as err:
                    raise DataError(f"{err}{hint}") from err
                bar.advance()
        if not videos:
            raise DataError(
                f"no usable video among {len(paths)} input(s); {report.summary() if report else ''}"
            )
        dataset = YTVISDataset(
            videos=videos,
            frames_root=frames_root,
            info={"kind": "unlabeled videos", "short_side": short_side},
        )
        save_ytvis(dataset, index_path)
    return dataset, report


def _cache_one(
    path: Path, name: str, video_id: int, frames_root: Path, short_side: int | None, max_size: int
) -> VideoInfo:
    folder = frames_root / name
    marker = folder / ".done"
    if marker.exists():
        try:
            meta = json.loads(marker.read_text())
            changed = record_changes(folder, meta.pop("files")) if "files" in meta else []
            if not changed:
                return VideoInfo(id=video_id, name=name, **meta)
            log.warning(
                "%s: %s changed since it was decoded; decoding %s again", folder, ", ".join(changed), path
            )
        except (json.JSONDecodeError, TypeError, UnicodeDecodeError, AttributeError, OSError) as err:
            log.warning("%s is damaged (%s); decoding %s again", marker, err, path)
    if folder.exists():
        shutil.rmtree(folder)  # a half-written video from an interrupted run
    folder.mkdir(parents=True)
    video = open_video(path, short_side=short_side, max_size=max_size)
    file_names = []
    height = width = 0
    try:
        for t, frame in enumerate(video):
            height, width = frame.shape[:2]
            file_name = f"{name}/{t:05d}.jpg"
            with atomic_path(frames_root / file_name, suffix=".jpg") as tmp:
                Image.fromarray(frame).save(tmp, format="JPEG", quality=95)
            file_names.append(file_name)
    except DataError:
        shutil.rmtree(folder, ignore_errors=True)  # a damaged video leaves no half-decoded frames
        raise
    if len(file_names) < 2:
        raise DataError(f"video {path} has {len(file_names)} frame(s); self-training needs at least 2")
    meta = {"width": width, "height": height, "length": len(file_names), "file_names": file_names}
    atomic_write_json(marker, {**meta, "files": folder_record(folder)})
    log.debug("cached %s: %d frames of %dx%d", path, len(file_names), width, height)
    return VideoInfo(id=video_id, name=name, **meta)


def _unique_names(paths: Sequence[Path]) -> list[str]:
    """Video names from file/folder names (without suffix); duplicates get ``_2``, ``_3``, ..."""
    names, seen = [], {}
    for path in paths:
        base = path.stem if path.is_file() else path.name
        count = seen.get(base, 0) + 1
        seen[base] = count
        names.append(base if count == 1 else f"{base}_{count}")
    return names
