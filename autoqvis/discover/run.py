"""Object discovery over a folder of images or videos: MaskCut pseudo-masks written as COCO-style JSON.

Output (``pseudo.json``)::

    {"info": {"discovery": {...config...}, "frames_root": "..."},
     "images": [{"id", "file_name", "height", "width"}],
     "annotations": [{"id", "image_id", "category_id": 1, "segmentation": RLE, "area", "bbox", "score",
                      "iscrowd": 0}],
     "categories": [{"id": 1, "name": "object"}]}

``file_name`` is relative to the frames root: the images folder itself, or, for videos, ``<out>.frames/``
where the sampled frames are written as JPEG. Resumable: each finished image is appended (and fsynced) to
``<out>.partial.jsonl``; a rerun with the same settings skips those images (or returns the finished JSON), and
the final JSON is written atomically before the partial file is removed. What determines the output (the
discovery section, the ViT weights' content, the inputs' identity) is stored in ``<out stem>.fingerprint.json``:
a rerun with other settings or inputs stops and names what changed (:mod:`autoqvis.runs.fingerprint`). An image
without any mask is still listed (no annotation).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from autoqvis import rle
from autoqvis.config import DiscoveryConfig, config_to_dict
from autoqvis.errors import CheckpointError, DataError
from autoqvis.io.video import (
    FRAME_SUFFIXES,
    FrameList,
    SkipReport,
    find_videos,
    image_files,
    open_video,
    read_image,
    skip_bad_input,
    video_identities,
)
from autoqvis.io.ytvis import load_json
from autoqvis.model.vit import resolve_weights
from autoqvis.progress import progress_bar
from autoqvis.runs.access import kind_problem
from autoqvis.runs.atomic import atomic_path, atomic_write_json
from autoqvis.runs.fingerprint import Unit, content_identity, files_identity
from autoqvis.runs.paths import check_input
from autoqvis.runs.step import step

__all__ = [
    "DiscoveryItem",
    "discover",
    "discover_images",
    "discovery_fingerprint",
    "discovery_unit",
    "image_items",
    "image_source",
    "video_items",
    "video_source",
]

log = logging.getLogger("autoqvis")


@dataclass
class DiscoveryItem:
    """One image to cut: its name (relative file name in the output) and how to load it."""

    name: str
    load: object  # () -> (H, W, 3) uint8 RGB


def image_items(
    root: str | Path, skip_bad: bool = False, report: SkipReport | None = None
) -> list[DiscoveryItem]:
    """Every image under ``root`` (recursively, natural order): the files :func:`image_source` identifies
    (:func:`~autoqvis.io.video.image_files`, hidden ones aside). With ``skip_bad`` an entry that is not a
    regular file (a FIFO, a dangling link) is left out of both, said in a warning and in ``report``."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; --images expects a folder of .jpg/.png images")
    names = _image_names(root, skip_bad, report)
    if not names:
        raise DataError(f"{root} holds no images ({', '.join(FRAME_SUFFIXES)})")
    return [DiscoveryItem(name, lambda p=root / name: read_image(p)) for name in names]


def _image_names(root: Path, skip_bad: bool, report: SkipReport | None = None) -> list[str]:
    names = image_files(check_input(root, "dir", "--images"))
    if not skip_bad:
        return names
    kept = []
    for name in names:
        problem = kind_problem(root / name, "file")
        if problem is None:
            kept.append(name)
        elif report is not None:
            log.warning("skipping %s: %s %s", root / name, root / name, problem)
            report.skipped.append((str(root / name), f"{root / name} {problem}"))
    return kept


def video_items(
    root: str | Path,
    every: int,
    frames_root: Path,
    skip_bad: bool = False,
    report: SkipReport | None = None,
) -> Iterator[DiscoveryItem]:
    """Every ``every``-th frame of every video under ``root``; each is saved as JPEG under ``frames_root``
    (so that the JSON's file names resolve) when it is loaded. A video file is decoded once through first, so
    that a damaged or truncated one is refused (or with ``skip_bad`` skipped whole, listed in ``report``)
    before any of its frames is used; a frame of a frame folder is read when it is used, and an unreadable one
    is refused (with ``skip_bad`` skipped like an unreadable image)."""
    if every < 1:
        raise DataError(f"--every must be >= 1, got {every}")
    for path in find_videos(root):
        try:
            video = open_video(path)
            if isinstance(video, FrameList):
                for (
                    frame
                ) in video.paths:  # one that is not a file (a FIFO) skips the video, as its identity does
                    problem = kind_problem(frame, "file")
                    if problem is not None:
                        raise DataError(f"{frame} {problem}")
                yield from _frame_items(video, every, frames_root)
                continue
            video.verify()
            name = video.name
            for index, frame in enumerate(video):
                if index % every == 0:
                    yield DiscoveryItem(
                        f"{name}/{index:05d}.jpg",
                        lambda f=frame, n=f"{name}/{index:05d}.jpg": _save_frame(f, frames_root / n),
                    )
        except DataError as err:
            if not skip_bad:
                raise DataError(f"{err} (pass --skip-bad to skip unreadable videos)") from err
            log.warning("skipping %s: %s", path, err)
            if report is not None:
                report.skipped.append((str(path), str(err)))


def _frame_items(video: FrameList, every: int, frames_root: Path) -> Iterator[DiscoveryItem]:
    for index in range(0, len(video), every):
        name = f"{video.name}/{index:05d}.jpg"
        yield DiscoveryItem(
            name, lambda p=video.paths[index], n=name: _save_frame(read_image(p), frames_root / n)
        )


def _save_frame(frame: np.ndarray, path: Path) -> np.ndarray:
    if not path.is_file():
        from PIL import Image

        with atomic_path(path, suffix=".jpg") as tmp:
            Image.fromarray(frame).save(tmp, format="JPEG", quality=95)
    return frame


def discovery_unit(out: Path, frames_root: Path | None = None) -> Unit:
    """A discovery run writing ``out`` as a resumable unit: the JSON, its partial log, and the sampled frames
    folder when discovery wrote it (``<out>.frames/`` for videos; never an input images folder)."""
    out = Path(out)
    outputs = [out, out.with_name(out.name + ".partial.jsonl")]
    if (
        frames_root is not None
        and Path(frames_root).resolve() == out.with_name(out.stem + ".frames").resolve()
    ):
        outputs.append(Path(frames_root))
    return Unit("the discovery run", out.with_name(out.stem + ".fingerprint.json"), tuple(outputs))


def discovery_fingerprint(cfg: DiscoveryConfig, source: str | dict) -> dict:
    """What determines the pseudo-masks: the discovery section (the batch size aside), the ViT weights'
    content, and the inputs' identity (``source``: see :func:`image_source` and :func:`video_source`)."""
    settings = {k: v for k, v in config_to_dict(cfg).items() if k not in ("batch_size", "weights")}
    try:
        weights = content_identity(resolve_weights(cfg.arch, cfg.weights))
        weights.pop("name")
    except (CheckpointError, OSError):
        weights = {"path": cfg.weights}
    return {"discovery": settings, "weights": weights, "inputs": source}


def image_source(root: str | Path, skip_bad: bool = False) -> dict:
    """The identity of an images folder: the images :func:`image_items` reads (with the same ``skip_bad``),
    by name (relative to it) and content."""
    root = Path(root)
    return {"images": files_identity(root, _image_names(root, skip_bad))}


def video_source(root: str | Path, every: int, skip_bad: bool = False) -> dict:
    """The identity of the videos under ``root`` (names relative to it, contents) sampled every ``every``
    frames. With ``skip_bad`` a video that cannot be identified (a FIFO among its frames) is left out: its
    reader skips it and says so (:func:`video_items`)."""
    root = Path(root)
    paths = find_videos(root)
    names = [p.name if p == root else p.relative_to(root).as_posix() for p in paths]
    identities = []
    for path, name in zip(paths, names, strict=True):
        try:
            identities += video_identities([path], [name])
        except DataError:
            if not skip_bad:
                raise
    return {"videos": identities, "every": every}


def _read_partial(path: Path) -> dict[str, dict]:
    """Finished images of an interrupted run (a torn last line is ignored)."""
    if not path.is_file():
        return {}
    done: dict[str, dict] = {}
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    for line in lines[1:]:  # the first line is a header
        try:
            entry = json.loads(line)
            done[entry["file_name"]] = entry
        except (json.JSONDecodeError, KeyError, TypeError):
            break  # the run stopped while writing this line
    return done


def discover(
    items: Iterator[DiscoveryItem] | list[DiscoveryItem],
    out: str | Path,
    cfg: DiscoveryConfig,
    vit,
    *,
    source: str | dict,
    frames_root: str | Path,
    skip_bad: bool = False,
    total: int | None = None,
    resume: bool = True,
    recheck=None,
) -> dict:
    """Run MaskCut on every item, resumably; write ``out`` and return the dataset dict.

    ``vit``: the ViT, or a function returning it (not called when the run is already finished). ``source``: the
    inputs' identity, part of the fingerprint (``<out stem>.fingerprint.json``): a rerun with the same one
    returns the finished JSON or continues the partial log; with another it stops naming what changed
    (``resume=False`` starts over). ``recheck``: a function giving ``source`` again, taken when the run ends:
    an input changed meanwhile is a DataError and the run is not marked done
    (:func:`autoqvis.runs.step.step`)."""
    out = Path(out)
    partial = out.with_name(out.name + ".partial.jsonl")
    unit = discovery_unit(out, Path(frames_root))
    fingerprint = discovery_fingerprint(cfg, source)
    with step(
        unit,
        fingerprint,
        resume,
        recheck=None if recheck is None else lambda: discovery_fingerprint(cfg, recheck()),
        finished=lambda: out.is_file() and not partial.exists(),
    ) as s:
        if s.done:
            log.info("%s is already finished with these settings and inputs", out)
            return load_json(out)
        return _discover(items, out, cfg, vit, s.resumed, frames_root, skip_bad, total)


def _discover(
    items, out: Path, cfg: DiscoveryConfig, vit, resumed: bool, frames_root, skip_bad, total
) -> dict:
    from autoqvis.discover.maskcut import maskcut_batch

    partial = out.with_name(out.name + ".partial.jsonl")
    done = _read_partial(partial) if resumed else {}
    if done:
        log.info("resuming: %d images already done in %s", len(done), partial)
    model = vit() if callable(vit) and not isinstance(vit, torch.nn.Module) else vit
    out.parent.mkdir(parents=True, exist_ok=True)
    report = SkipReport()
    entries: list[dict] = []
    fresh = not partial.is_file() or not done
    with (
        open(partial, "w" if fresh else "a", encoding="utf-8") as log_file,
        progress_bar("discover", total=total) as bar,
    ):
        if fresh:
            log_file.write(json.dumps({"autoqvis": "discovery log"}) + "\n")
        batch: list[tuple[str, np.ndarray]] = []

        def flush() -> None:
            results = maskcut_batch([img for _, img in batch], model, cfg)
            for (name, img), result in zip(batch, results, strict=True):
                entry = {
                    "file_name": name,
                    "height": int(img.shape[0]),
                    "width": int(img.shape[1]),
                    "masks": [rle.encode(m) for m in result.masks],
                    "scores": [float(s) for s in result.scores],
                }
                log_file.write(json.dumps(entry) + "\n")
                entries.append(entry)
            log_file.flush()
            os.fsync(log_file.fileno())
            bar.advance(len(batch))
            batch.clear()

        for item in items:
            if item.name in done:
                entries.append(done[item.name])
                bar.advance()
                continue
            try:
                with skip_bad_input(item.name, report, skip_bad):
                    batch.append((item.name, item.load()))
            except DataError as err:
                raise DataError(f"{err} (pass --skip-bad to skip unreadable images)") from err
            if len(batch) >= cfg.batch_size:
                flush()
        if batch:
            flush()
    if not entries:
        raise DataError("no image could be processed" + (f"\n{report.summary()}" if report else ""))
    dataset = _to_coco(entries, cfg, frames_root)
    atomic_write_json(out, dataset)
    partial.unlink()
    if report:
        log.warning(report.summary())
    return dataset


def discover_images(
    images: str | Path, out: str | Path, cfg: DiscoveryConfig, device: str = "cpu", resume: bool = True
) -> dict:
    """MaskCut on every image under ``images`` with the ViT ``cfg`` names (weights from ``cfg.weights`` or the
    cache), resumably; write ``out`` and return the dataset dict."""
    from autoqvis.model.vit import load_vit

    root = Path(images).resolve()
    items = image_items(root)
    return discover(
        items,
        out,
        cfg,
        lambda: load_vit(cfg.arch, cfg.weights, device=device),
        source=image_source(root),
        frames_root=root,
        total=len(items),
        resume=resume,
        recheck=lambda: image_source(root),
    )


def _to_coco(entries: list[dict], cfg: DiscoveryConfig, frames_root: str | Path) -> dict:
    images, annotations = [], []
    for image_id, entry in enumerate(entries, start=1):
        images.append(
            {
                "id": image_id,
                "file_name": entry["file_name"],
                "height": entry["height"],
                "width": entry["width"],
            }
        )
        for mask, score in zip(entry["masks"], entry["scores"], strict=True):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": 1,
                    "segmentation": mask,
                    "area": int(rle.area(mask)),
                    "bbox": _bbox(mask),
                    "score": score,
                    "iscrowd": 0,
                }
            )
    return {
        "info": {
            "description": "autoqvis MaskCut pseudo-masks",
            "discovery": config_to_dict(cfg),
            "frames_root": str(frames_root),
        },
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "object"}],
    }


def _bbox(mask: dict) -> list[float]:
    m = rle.decode(mask)
    ys, xs = np.nonzero(m)
    if not len(xs):
        return [0.0, 0.0, 0.0, 0.0]
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


def write_preview(dataset: dict, frames_root: str | Path, path: str | Path, count: int = 8) -> Path:
    """A PNG grid of the first ``count`` images with their pseudo-masks overlaid (one colour per mask)."""
    from PIL import Image

    from autoqvis.io.davis import DAVIS_PALETTE

    frames_root = Path(frames_root)
    by_image: dict[int, list[dict]] = {}
    for ann in dataset["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    tiles = []
    for image in dataset["images"][:count]:
        img = read_image(frames_root / image["file_name"]).astype(np.float32)
        for k, ann in enumerate(by_image.get(image["id"], [])):
            m = rle.decode(ann["segmentation"])
            img[m] = 0.45 * img[m] + 0.55 * DAVIS_PALETTE[k + 1]
        tile = Image.fromarray(img.astype(np.uint8))
        tile.thumbnail((320, 320))
        tiles.append(tile)
    if not tiles:
        raise DataError("no images to preview")
    cols = min(4, len(tiles))
    rows = (len(tiles) + cols - 1) // cols
    tw, th = max(t.width for t in tiles), max(t.height for t in tiles)
    sheet = Image.new("RGB", (cols * tw, rows * th), (255, 255, 255))
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % cols) * tw, (i // cols) * th))
    with atomic_path(path, suffix=".png") as tmp:
        sheet.save(tmp, format="PNG")
    return Path(path)
