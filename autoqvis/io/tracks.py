"""Track files: one video's tracks as a JSON list (the raw network output the self-training loop, the
benchmarks and the finishing step read back).

Each entry is ``{"score": float, "masks": [RLE | null, ...], "predicted_iou": [float, ...] | null}``: the
video-level score, one RLE per frame (``null`` where the object is absent) and the quality head's per-frame IoU.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from autoqvis.errors import DataError
from autoqvis.io.ytvis import load_json
from autoqvis.runs.atomic import atomic_write_json
from autoqvis.structures import Track

__all__ = ["read_tracks", "track_from_json", "track_to_json", "write_tracks"]


def track_to_json(t: Track) -> dict:
    return {"score": t.score, "masks": t.masks, "predicted_iou": t.predicted_iou}


def track_from_json(d: dict) -> Track:
    return Track(masks=d["masks"], score=float(d["score"]), predicted_iou=d.get("predicted_iou"))


def write_tracks(path: str | Path, tracks: Sequence[Track]) -> None:
    """Write ``tracks`` to ``path`` atomically."""
    atomic_write_json(path, [track_to_json(t) for t in tracks])


def read_tracks(path: str | Path) -> list[Track]:
    """The tracks :func:`write_tracks` wrote; a file of another shape raises DataError naming it."""
    data = load_json(path)
    if not isinstance(data, list):
        raise DataError(
            f"{path} is not a track file: expected a JSON list of tracks, found {type(data).__name__}"
        )
    try:
        return [track_from_json(d) for d in data]
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(f"{path} is not a track file: {err!r} in an entry") from err
