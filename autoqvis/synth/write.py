"""Writing synthetic clips as a YouTube-VIS dataset (JPEG frames + JSON) and animated previews.

``OUT/frames/clip_NNNNNN/NNNNN.jpg`` and ``OUT/synthetic.json``. Resumable: a clip folder with a ``.done``
marker is finished and is not rewritten while its files match the marker's record (each file's size and
content digest); a frame overwritten, truncated or deleted since is said and the clip is written again. The
JSON is assembled atomically at the end.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
from PIL import Image

from autoqvis import rle
from autoqvis.io.davis import DAVIS_PALETTE
from autoqvis.io.images import open_image
from autoqvis.io.ytvis import YTVISDataset, save_ytvis
from autoqvis.progress import progress_bar
from autoqvis.runs.atomic import atomic_path, atomic_write_json, atomic_write_text
from autoqvis.runs.step import folder_record, record_changes
from autoqvis.structures import Clip, Track, VideoInfo

__all__ = ["clip_gif", "write_clips", "write_previews"]


def _write_clip(clip: Clip, folder: Path) -> tuple[list[str], list[list]]:
    names = []
    for t, frame in enumerate(clip.frames.permute(0, 2, 3, 1).numpy()):
        with atomic_path(folder / f"{t:05d}.jpg", suffix=".jpg") as tmp:
            Image.fromarray(frame).save(tmp, format="JPEG", quality=95)
        names.append(f"{folder.name}/{t:05d}.jpg")
    tracks = [[rle.encode(m) if m.any() else None for m in obj] for obj in clip.masks.numpy()]
    atomic_write_text(folder / "tracks.json", json.dumps(tracks))
    atomic_write_json(folder / ".done", folder_record(folder))
    return names, tracks


def write_clips(source, indices: list[int], seed: int, out: Path) -> YTVISDataset:
    """Write clips ``source.clip(i, seed)`` for ``i`` in ``indices``; returns (and saves) the dataset."""
    out = Path(out)
    videos, tracks = [], {}
    with progress_bar("synthesize", total=len(indices)) as bar:
        for n, index in enumerate(indices, start=1):
            folder = out / "frames" / f"clip_{n:06d}"
            done = _finished_clip(folder)
            if done is not None:
                names, masks, size = done
            else:
                clip = source.clip(index, seed + n)
                names, masks = _write_clip(clip, folder)
                size = (clip.frames.shape[-1], clip.frames.shape[-2])
            videos.append(
                VideoInfo(
                    id=n, width=size[0], height=size[1], length=len(names), file_names=names, name=folder.name
                )
            )
            tracks[n] = [Track(masks=m, id=i + 1) for i, m in enumerate(masks)]
            bar.advance()
    dataset = YTVISDataset(
        videos=videos, tracks=tracks, frames_root=out / "frames", info={"kind": "ImageCut2Video clips"}
    )
    save_ytvis(dataset, out / "synthetic.json")
    return dataset


def _finished_clip(folder: Path) -> tuple[list[str], list, tuple[int, int]] | None:
    """A clip folder finished earlier (``.done``): its frame names, tracks and size; None when it is not
    finished, or damaged (then it is written again)."""
    if not (folder / ".done").is_file():
        return None
    try:
        recorded = json.loads((folder / ".done").read_text() or "null")  # empty: an older autoqvis's marker
        if recorded is not None and not isinstance(recorded, dict):
            raise ValueError(f"{folder / '.done'} is not a record of the clip's files")
        changed = [] if recorded is None else record_changes(folder, recorded)
        if changed:
            logging.getLogger("autoqvis").warning(
                "%s: %s changed since the clip was written; writing the clip again",
                folder,
                ", ".join(changed),
            )
            return None
        names = [f"{folder.name}/{p.name}" for p in sorted(folder.glob("*.jpg"))]
        masks = json.loads((folder / "tracks.json").read_text())
        with open_image(folder / "00000.jpg", "frame") as img:
            size = img.size
        return names, masks, size
    except (OSError, ValueError) as err:  # a missing or torn file (JSONDecodeError is a ValueError)
        logging.getLogger("autoqvis").warning("%s is damaged (%s); writing the clip again", folder, err)
        return None


def clip_gif(clip: Clip, path: Path, fps: float = 2.0) -> Path:
    """An animated GIF of a clip with each track in its own colour."""
    images = []
    for t, frame in enumerate(clip.frames.permute(0, 2, 3, 1).numpy()):
        img = frame.astype(np.float32)
        for k, m in enumerate(clip.masks[:, t].numpy()):
            img[m] = 0.5 * img[m] + 0.5 * DAVIS_PALETTE[k + 1]
        images.append(Image.fromarray(img.astype(np.uint8)))
    with atomic_path(path, suffix=".gif") as tmp:
        images[0].save(
            tmp, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0
        )
    return path


def write_previews(source, indices: list[int], seed: int, out: Path) -> list[Path]:
    return [
        clip_gif(source.clip(i, seed + n), out / f"preview_{n:02d}.gif")
        for n, i in enumerate(indices, start=1)
    ]
