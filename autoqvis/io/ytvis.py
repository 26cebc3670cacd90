"""YouTube-VIS JSON: datasets (ground truth or pseudo-labels) and prediction results, read and written.

Dataset file (YTVIS-2019 layout)::

    {"videos": [{"id", "width", "height", "length", "file_names": [...]}, ...],
     "annotations": [{"id", "video_id", "category_id", "iscrowd", "segmentations": [RLE | polygons | null per
                      frame], "areas", "bboxes", ...}],
     "categories": [{"id", "name"}]}

Results file: a list of ``{"video_id", "score", "category_id", "segmentations": [RLE per frame]}``; ours adds
``"predicted_ious"`` (per-frame quality-head output). Pseudo-label annotations add ``"score"``,
``"predicted_ious"`` and ``"selected"`` (per-frame selection flags); other readers ignore these fields.

Read against a ground truth, results are matched to its videos by name where both sides carry names (results
of ``autoqvis predict`` carry ``"video_name"``; a ground-truth video's name is its ``"name"``, or the folder of
its frames): a video the ground truth lacks is refused, and ids that number the same videos otherwise are
mapped. Otherwise by ``video_id``, and the ground-truth videos without any prediction are named. Video ids and
annotation ids must be unique in a dataset file; written files always have them so.

Every problem raises :class:`~autoqvis.errors.DataError` naming the file, the video id and the field.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import UnidentifiedImageError

from autoqvis import rle as rle_utils
from autoqvis.errors import DataError
from autoqvis.io.images import open_image
from autoqvis.io.video import FrameList, read_image
from autoqvis.runs.access import require_file
from autoqvis.runs.atomic import atomic_write_json
from autoqvis.runs.fingerprint import hash_json
from autoqvis.structures import Track, VideoInfo

__all__ = [
    "CLASS_AGNOSTIC_CATEGORIES",
    "YTVISDataset",
    "check_annotated",
    "check_frame_sizes",
    "check_relative",
    "load_json",
    "load_predictions",
    "load_ytvis",
    "predictions_to_json",
    "save_predictions",
    "save_ytvis",
]

CLASS_AGNOSTIC_CATEGORIES = [{"id": 1, "name": "object"}]

log = logging.getLogger("autoqvis")


@dataclass
class YTVISDataset:
    """Videos and their tracks. ``frames_root`` is where ``file_names`` are resolved (may be None)."""

    videos: list[VideoInfo]
    tracks: dict[int, list[Track]] = field(default_factory=dict)
    categories: list[dict[str, Any]] = field(default_factory=lambda: list(CLASS_AGNOSTIC_CATEGORIES))
    frames_root: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._by_id = {v.id: v for v in self.videos}
        for v in self.videos:
            self.tracks.setdefault(v.id, [])

    def __len__(self) -> int:
        return len(self.videos)

    def video(self, video_id: int) -> VideoInfo:
        try:
            return self._by_id[video_id]
        except KeyError:
            raise DataError(f"video id {video_id} is not in this dataset") from None

    def frame_paths(self, video_id: int) -> list[Path]:
        if self.frames_root is None:
            raise DataError(
                "this dataset has no frames root; pass --frames DIR (the folder file_names are relative to)"
            )
        return [self.frames_root / name for name in self.video(video_id).file_names]

    def open_video(self, video_id: int, short_side: int | None = None, max_size: int = 1333) -> FrameList:
        """The video's frames, lazily; checks the first frame against the declared width and height."""
        info = self.video(video_id)
        paths = self.frame_paths(video_id)
        first = read_image(paths[0])
        if first.shape[:2] != (info.height, info.width):
            raise DataError(
                f"video {video_id}: frame {paths[0]} is {first.shape[1]}x{first.shape[0]} but the JSON declares "
                f"width {info.width} and height {info.height}"
            )
        name = info.name or str(video_id)
        return FrameList(name=name, short_side=short_side, max_size=max_size, paths=paths)

    def num_tracks(self) -> int:
        return sum(len(t) for t in self.tracks.values())

    def content_hash(self) -> str:
        """sha256 of the videos (ids, sizes, frame names) and every track (masks, scores, quality, flags):
        the identity of a dataset for the fingerprint of what is trained or selected from it."""
        return hash_json(
            {
                "videos": [[v.id, v.width, v.height, v.length, list(v.file_names)] for v in self.videos],
                "tracks": [
                    [vid, [[t.masks, t.score, t.category_id, t.predicted_iou, t.selected] for t in tracks]]
                    for vid, tracks in sorted(self.tracks.items())
                ],
            }
        )

    def to_json(self) -> dict[str, Any]:
        videos = [
            {
                "id": v.id,
                "width": v.width,
                "height": v.height,
                "length": v.length,
                "file_names": list(v.file_names),
            }
            | ({"name": v.name} if v.name else {})
            for v in self.videos
        ]
        annotations = []
        ids = _annotation_ids([t for v in self.videos for t in self.tracks[v.id]])
        for v in self.videos:
            for track in self.tracks[v.id]:
                annotations.append(_track_to_annotation(track, v, next(ids)))
        return {
            "info": self.info,
            "videos": videos,
            "annotations": annotations,
            "categories": self.categories,
        }


# ---------------------------------------------------------------------------------------------------
# reading


def load_json(path: str | Path) -> Any:
    """Parse a JSON file; a missing file or malformed JSON raises DataError with the position."""
    path = require_file(path)  # not found, a folder, permission denied: said as such
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise DataError(
            f"{path} is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}"
        ) from err
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not a UTF-8 text file: {err}") from err


def load_ytvis(
    path: str | Path,
    frames_root: str | Path | None = None,
    class_agnostic: bool = True,
    check_frames: bool = True,
) -> YTVISDataset:
    """Read and validate a YouTube-VIS dataset file.

    With ``class_agnostic`` every category becomes 1 ("object"). With ``frames_root`` and ``check_frames``,
    every frame file must exist.
    """
    path = Path(path)
    data = load_json(path)
    if not isinstance(data, dict):
        raise DataError(
            f"{path}: expected a JSON object with 'videos' and 'annotations', got {type(data).__name__}"
        )
    if "videos" not in data or not isinstance(data["videos"], list):
        raise DataError(f"{path}: missing the 'videos' list; is this a YouTube-VIS dataset file?")
    videos = [_parse_video(path, i, v) for i, v in enumerate(data["videos"])]
    seen: set[int] = set()
    for v in videos:
        if v.id in seen:
            raise DataError(f"{path}: video id {v.id} appears twice in 'videos'")
        seen.add(v.id)
    root = Path(frames_root) if frames_root is not None else None
    dataset = YTVISDataset(videos=videos, frames_root=root, info=data.get("info") or {})
    categories = data.get("categories") or list(CLASS_AGNOSTIC_CATEGORIES)
    dataset.categories = list(CLASS_AGNOSTIC_CATEGORIES) if class_agnostic else categories
    annotations = data.get("annotations", [])
    if not isinstance(annotations, list):
        raise DataError(f"{path}: 'annotations' must be a list, got {type(annotations).__name__}")
    strings = _CompressedMasks()
    first: dict[Any, int] = {}  # annotation id -> index of the annotation that has it
    for i, ann in enumerate(annotations):
        track = _parse_annotation(path, i, ann, dataset, class_agnostic, strings)
        if track.id is not None:
            if track.id in first:
                raise DataError(
                    f"{path}: annotations[{i}] has the id {track.id!r} of annotations[{first[track.id]}]; annotation "
                    "ids must be unique (a tool that merged or resumed label files numbered them twice): give each "
                    "annotation its own id, or remake the file"
                )
            first[track.id] = i
        dataset.tracks[ann["video_id"]].append(track)
    strings.check()
    if root is not None and check_frames:
        _check_frames_exist(path, dataset)
    return dataset


def _parse_video(path: Path, index: int, v: Any) -> VideoInfo:
    where = f"{path}: videos[{index}]"
    if not isinstance(v, dict):
        raise DataError(f"{where} must be an object, got {type(v).__name__}")
    for key in ("id", "width", "height", "length"):
        if not isinstance(v.get(key), int) or isinstance(v.get(key), bool):
            raise DataError(
                f"{where} (id {v.get('id')}): field '{key}' must be an integer, got {v.get(key)!r}"
            )
    where = f"{path}: video {v['id']}"
    if v["width"] <= 0 or v["height"] <= 0 or v["length"] <= 0:
        raise DataError(
            f"{where}: width, height and length must be positive, got {v['width']}, {v['height']}, {v['length']}"
        )
    names = v.get("file_names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise DataError(f"{where}: field 'file_names' must be a list of relative frame paths")
    if len(names) != v["length"]:
        raise DataError(f"{where}: field 'file_names' has {len(names)} entries but 'length' is {v['length']}")
    for name in names:
        check_relative(name, f"{where}: field 'file_names'")
    return VideoInfo(
        id=v["id"],
        width=v["width"],
        height=v["height"],
        length=v["length"],
        file_names=names,
        name=v.get("name", ""),
    )


def check_relative(name: str, where: str) -> None:
    """A frame path must stay inside the dataset root: relative, no ``..`` escaping it."""
    norm = os.path.normpath(name)
    if os.path.isabs(name) or norm == ".." or norm.startswith(".." + os.sep) or name.startswith(("/", "\\")):
        raise DataError(
            f"{where}: entry {name!r} escapes the dataset root; frame paths must be relative to it"
        )


def _parse_annotation(
    path: Path, index: int, ann: Any, dataset: YTVISDataset, class_agnostic: bool, strings: _CompressedMasks
) -> Track:
    where = f"{path}: annotations[{index}]"
    if not isinstance(ann, dict):
        raise DataError(f"{where} must be an object, got {type(ann).__name__}")
    video_id = ann.get("video_id")
    if isinstance(video_id, bool) or not isinstance(video_id, int) or video_id not in dataset._by_id:
        raise DataError(f"{where}: field 'video_id' is {video_id!r}, which is not a video in 'videos'")
    info = dataset._by_id[video_id]
    where = f"{path}: video {video_id}, annotation {ann.get('id', index)}"
    segs = ann.get("segmentations")
    if not isinstance(segs, list) or len(segs) != info.length:
        got = f"{len(segs)} entries" if isinstance(segs, list) else repr(type(segs).__name__)
        raise DataError(
            f"{where}: field 'segmentations' must be a list of {info.length} entries (one per frame), got {got}"
        )
    masks = _segmentations(segs, info.height, info.width, where, strings)
    return Track(
        masks=masks,
        score=_score(ann.get("score", 1.0), f"{where}: field 'score'"),
        category_id=1
        if class_agnostic
        else _integer(ann.get("category_id", 1), f"{where}: field 'category_id'"),
        predicted_iou=_optional_floats(
            ann.get("predicted_ious"), info.length, f"{where}: field 'predicted_ious'"
        ),
        selected=_optional_bools(ann.get("selected"), info.length, f"{where}: field 'selected'"),
        id=ann.get("id"),
        iscrowd=_integer(ann.get("iscrowd", 0) or 0, f"{where}: field 'iscrowd'"),
        annotated_areas=_optional_areas(ann.get("areas"), info, f"{where}: field 'areas'"),
    )


def _optional_areas(values: Any, info: VideoInfo, where: str) -> list[float | None] | None:
    """The per-frame areas a ground truth declares (the evaluator's area ranges use them): null, or a pixel
    count between 0 and the frame's width x height."""
    if values is None:
        return None
    if not isinstance(values, list) or len(values) != info.length:
        got = f"{len(values)} entries" if isinstance(values, list) else type(values).__name__
        raise DataError(
            f"{where} must be a list of {info.length} numbers or nulls (one per frame), got {got}"
        )
    pixels = info.width * info.height
    areas: list[float | None] = []
    for t, value in enumerate(values):
        area = None if value is None else _number(value, f"{where} frame {t}")
        if area is not None and not 0 <= area <= pixels:
            raise DataError(
                f"{where} frame {t}: an area is a pixel count in [0, {pixels}] (the frame is {info.width}x"
                f"{info.height}), got {value!r}; fix the file, or drop 'areas' to have them computed from the masks"
            )
        areas.append(area)
    return areas


class _CompressedMasks:
    """The compressed RLE strings of a file as they are read, checked together at the end (one vectorised
    pass, :func:`autoqvis.rle.counts_errors`); the error names the first bad one's place."""

    def __init__(self) -> None:
        self.counts: list[str] = []
        self.groups: list[tuple[int, int, str, list[int]]] = []  # (height, width, where, frames) per track

    def add(self, counts: list[str], frames: list[int], height: int, width: int, where: str) -> None:
        if counts:
            self.counts += counts
            self.groups.append((height, width, where, frames))

    def check(self) -> None:
        lengths = [len(frames) for *_, frames in self.groups]
        sizes = np.repeat(np.array([g[:2] for g in self.groups], np.int64).reshape(-1, 2), lengths, axis=0)
        errors = rle_utils.counts_errors(self.counts, sizes)
        if errors:
            i, reason = errors[0]
            ends = np.cumsum(lengths)
            group = int(np.searchsorted(ends, i, side="right"))
            h, w, where, frames = self.groups[group]
            i -= int(ends[group]) - len(frames)
            more = f" ({len(errors) - 1} more masks are invalid too)" if len(errors) > 1 else ""
            raise DataError(
                f"{where}: field 'segmentations' frame {frames[i]}: the RLE counts are not a valid {h}x{w} mask: "
                f"{reason}{more}; the file is damaged or was written for another frame size"
            )


def _segmentations(
    segs: list, height: int, width: int, where: str, strings: _CompressedMasks | None = None
) -> list:
    """Per-frame compressed RLE (None where absent); a bad entry raises DataError naming the frame. Strings
    given compressed are added to ``strings`` for validation (others are converted by pycocotools)."""
    masks = []
    counts, frames = [], []
    size = [height, width]
    for t, seg in enumerate(segs):
        if seg is None:
            masks.append(None)
            continue
        if type(seg) is dict and type(seg.get("counts")) is str and seg.get("size") == size:  # the usual case
            masks.append({"size": [height, width], "counts": seg["counts"]})
            counts.append(seg["counts"])
            frames.append(t)
            continue
        try:
            mask = rle_utils.to_compressed(seg, height, width)
        except (ValueError, TypeError, KeyError, OverflowError) as err:
            raise DataError(f"{where}: field 'segmentations' frame {t}: {err}") from err
        if isinstance(seg, dict) and isinstance(seg.get("counts"), str | bytes):
            counts.append(mask["counts"])
            frames.append(t)
        masks.append(mask)
    if strings is not None:
        strings.add(counts, frames, height, width, where)
    return masks


def _number(value: Any, where: str) -> float:
    """A finite number (not a bool, string or null)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DataError(f"{where} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise DataError(f"{where} must be a finite number, got {value!r}")
    return float(value)


def _score(value: Any, where: str) -> float:
    return _number(value, where)


def _integer(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise DataError(f"{where} must be an integer, got {value!r}")
    return value


def _optional_floats(values: Any, length: int, where: str) -> list[float] | None:
    if values is None:
        return None
    if not isinstance(values, list) or len(values) != length:
        raise DataError(f"{where} must be a list of {length} numbers (one per frame)")
    return [
        _number(v[0] if isinstance(v, list) and len(v) == 1 else v, f"{where}[{t}]")
        for t, v in enumerate(values)
    ]


def _optional_bools(values: Any, length: int, where: str) -> list[bool] | None:
    if values is None:
        return None
    if not isinstance(values, list) or len(values) != length:
        raise DataError(f"{where} must be a list of {length} true/false values (one per frame)")
    return [bool(v) for v in values]


def check_annotated(dataset: YTVISDataset, path: str | Path) -> None:
    """A ground truth to score against must hold objects: with none, AP and AR are undefined."""
    if not dataset.videos:
        raise DataError(f"{path} holds no video: there is nothing to evaluate against")
    if dataset.num_tracks() == 0:
        raise DataError(
            f"{path} holds no annotation in its {len(dataset.videos)} video(s): AP and AR are undefined without "
            "ground-truth objects; pass the ground truth with its annotations"
        )


def check_frame_sizes(dataset: YTVISDataset, path: str | Path) -> None:
    """Every video's first frame has the size the dataset declares (a header read per video; the frames of one
    video are checked against each other as they are read), before any long work starts."""
    for info in dataset.videos:
        frame = dataset.frame_paths(info.id)[0]
        try:
            with open_image(frame, "frame") as img:
                width, height = img.size
        except (OSError, UnidentifiedImageError) as err:
            raise DataError(f"{path}: video {info.id}: cannot read frame {frame}: {err}") from err
        if (height, width) != (info.height, info.width):
            raise DataError(
                f"{path}: video {info.id} ({info.name or 'unnamed'}): frame {frame} is {width}x{height} but the "
                f"dataset declares width {info.width} and height {info.height}; pass the frames the JSON was made "
                "for (the frames root)"
            )


def _check_frames_exist(path: Path, dataset: YTVISDataset) -> None:
    for v in dataset.videos:
        for t, file_path in enumerate(dataset.frame_paths(v.id)):
            if not file_path.is_file():
                raise DataError(
                    f"{path}: video {v.id}: field 'file_names' frame {t}: {file_path} not found under the frames "
                    f"root {dataset.frames_root}; pass the folder the file names are relative to"
                )


def load_predictions(path: str | Path, dataset: YTVISDataset | None = None) -> dict[int, list[Track]]:
    """Read a results file into tracks per video id; with ``dataset``, check ids, lengths and sizes."""
    path = Path(path)
    data = load_json(path)
    if isinstance(data, dict) and "annotations" in data:
        data = data["annotations"]  # a dataset-style file of predictions (with scores) is accepted too
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a list of predictions, got {type(data).__name__}")
    result: dict[int, list[Track]] = {v.id: [] for v in dataset.videos} if dataset else {}
    by_name = _ids_by_name(dataset) if dataset else None
    renumbered: dict[int, int] = {}  # the results' video id -> the ground truth's, where they differ
    strings = _CompressedMasks()
    for i, pred in enumerate(data):
        where = f"{path}: predictions[{i}]"
        if not isinstance(pred, dict):
            raise DataError(f"{where} must be an object, got {type(pred).__name__}")
        for key in ("video_id", "score", "segmentations"):
            if key not in pred:
                raise DataError(f"{where}: missing field '{key}'")
        video_id = pred["video_id"]
        if isinstance(video_id, bool) or not isinstance(video_id, int):
            raise DataError(f"{where}: field 'video_id' must be an integer, got {video_id!r}")
        name = pred.get("video_name")
        if by_name is not None and isinstance(name, str) and name:
            if name not in by_name:
                raise DataError(
                    f"{where} is for video {name!r} (video_id {video_id}), which the ground truth does not have "
                    f"(its videos: {_some(sorted(by_name))}); pass the predictions of the ground truth's videos"
                )
            if by_name[name] != video_id:
                renumbered[video_id] = by_name[name]
            video_id = by_name[name]
        segs = pred["segmentations"]
        if not isinstance(segs, list):
            raise DataError(
                f"{where} (video {video_id}): field 'segmentations' must be a list, one entry per frame"
            )
        if dataset is not None:
            if video_id not in dataset._by_id:
                raise DataError(f"{where}: video_id {video_id!r} is not in the ground-truth videos")
            info = dataset.video(video_id)
            if len(segs) != info.length:
                raise DataError(
                    f"{where} (video {video_id}): {len(segs)} segmentations but the video has {info.length} frames"
                )
        if dataset is not None:
            h, w = dataset.video(video_id).height, dataset.video(video_id).width
        else:
            sizes = [seg["size"] for seg in segs if isinstance(seg, dict) and "size" in seg]
            if not sizes:
                raise DataError(
                    f"{where} (video {video_id}): no segmentation carries a 'size'; pass the ground truth"
                )
            h, w = _size(sizes[0], f"{where} (video {video_id}): field 'size'")
        masks = _segmentations(segs, int(h), int(w), f"{where} (video {video_id})", strings)
        track = Track(
            masks=masks,
            score=_score(pred["score"], f"{where} (video {video_id}): field 'score'"),
            category_id=_integer(
                pred.get("category_id", 1), f"{where} (video {video_id}): field 'category_id'"
            ),
            predicted_iou=_optional_floats(
                pred.get("predicted_ious"), len(segs), f"{where}: field 'predicted_ious'"
            ),
        )
        result.setdefault(video_id, []).append(track)
    strings.check()
    if renumbered:
        log.info(
            "%s: matched the predictions to the ground truth by video name; %d video(s) are numbered otherwise "
            "there (%s)",
            path,
            len(renumbered),
            _some([f"{a} -> {b}" for a, b in sorted(renumbered.items())]),
        )
    if dataset is not None:
        unmatched = [v for v in dataset.videos if not result[v.id]]
        if unmatched and len(unmatched) == len(dataset.videos) and data:
            raise DataError(f"{path}: no prediction is for a video of the ground truth")
        if unmatched:
            log.warning(
                "%s: %d of the ground truth's %d videos have no prediction (%s); their objects count as missed",
                path,
                len(unmatched),
                len(dataset.videos),
                _some([f"id {v.id}" + (f" {v.name}" if v.name else "") for v in unmatched]),
            )
    return result


def _video_names(info: VideoInfo) -> set[str]:
    """The names a ground-truth video goes by: its ``name`` field and the folder of its frames (YouTube-VIS
    lists ``<video>/<frame>.jpg``)."""
    names = {info.name} if info.name else set()
    folders = {Path(name).parent.name for name in info.file_names}
    if len(folders) == 1 and "" not in folders:
        names |= folders
    return names


def _ids_by_name(dataset: YTVISDataset) -> dict[str, int] | None:
    """Video name -> id when every video of ``dataset`` has a name and no name is two videos', None otherwise
    (then results are matched by id alone)."""
    ids: dict[str, set[int]] = {}
    for info in dataset.videos:
        names = _video_names(info)
        if not names:
            return None
        for name in names:
            ids.setdefault(name, set()).add(info.id)
    if any(len(v) > 1 for v in ids.values()):
        return None
    return {name: v.pop() for name, v in ids.items()}


def _some(items: list[str], limit: int = 5) -> str:
    return ", ".join(items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _size(value: Any, where: str) -> tuple[int, int]:
    if (
        not isinstance(value, list | tuple)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise DataError(f"{where} must be [height, width] (positive integers), got {value!r}")
    return value[0], value[1]


# ---------------------------------------------------------------------------------------------------
# writing


def save_ytvis(dataset: YTVISDataset, path: str | Path) -> Path:
    """Write a dataset file atomically."""
    return atomic_write_json(path, dataset.to_json())


def predictions_to_json(predictions: dict[int, list[Track]]) -> list[dict[str, Any]]:
    """Tracks per video -> the results list (empty frames as all-zero RLE, as the official writer does)."""
    out = []
    for video_id, tracks in predictions.items():
        for track in tracks:
            segs = []
            for m in track.masks:
                if m is None:
                    raise ValueError(
                        f"video {video_id}: a prediction needs a mask in every frame (None found)"
                    )
                segs.append(m)
            entry = {
                "video_id": video_id,
                "score": track.score,
                "category_id": track.category_id,
                "segmentations": segs,
            }
            if track.predicted_iou is not None:
                entry["predicted_ious"] = list(track.predicted_iou)
            out.append(entry)
    return out


def save_predictions(predictions: dict[int, list[Track]], path: str | Path) -> Path:
    return atomic_write_json(path, predictions_to_json(predictions))


def _annotation_ids(tracks: list[Track]) -> Iterator[int]:
    """Each track's annotation id, unique in the file: its own id where it has one no earlier track took,
    otherwise the next number no track has (tracks without ids: 1, 2, 3, ...)."""
    own = {t.id for t in tracks if t.id is not None}
    used: set[Any] = set()
    free = 1
    for track in tracks:
        if track.id is not None and track.id not in used:
            used.add(track.id)
            yield track.id
            continue
        while free in own or free in used:
            free += 1
        used.add(free)
        yield free


def _track_to_annotation(track: Track, video: VideoInfo, ann_id: int) -> dict[str, Any]:
    areas = [None if m is None else rle_utils.area(m) for m in track.masks]
    bboxes = [None if m is None else _bbox(m) for m in track.masks]
    ann: dict[str, Any] = {
        "id": ann_id,
        "video_id": video.id,
        "category_id": track.category_id,
        "iscrowd": track.iscrowd,
        "segmentations": list(track.masks),
        "areas": areas,
        "bboxes": bboxes,
        "width": video.width,
        "height": video.height,
        "length": video.length,
    }
    if track.score != 1.0:
        ann["score"] = track.score
    if track.predicted_iou is not None:
        ann["predicted_ious"] = list(track.predicted_iou)
    if track.selected is not None:
        ann["selected"] = list(track.selected)
    return ann


def _bbox(rle: dict) -> list[float]:
    from pycocotools import mask as mask_utils

    return [float(x) for x in mask_utils.toBbox(rle_utils.to_pycocotools(rle))]
