"""DAVIS layout and palette PNG masks.

A DAVIS root holds ``JPEGImages/<res>/<seq>/NNNNN.jpg`` and ``Annotations/<res>/<seq>/NNNNN.png`` (``<res>`` is
``480p`` or ``Full-Resolution``; a root without that level is accepted too). An annotation PNG stores one
object id per pixel: 0 background, 1..N objects, 255 void (DAVIS-2017 palette PNGs) or 0/255 for the single
foreground object of DAVIS-2016 (grey-level PNGs). Predictions are written as palette PNGs with the DAVIS
palette, the format both DAVIS toolkits read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from autoqvis.errors import DataError
from autoqvis.io.images import open_image
from autoqvis.io.video import natural_key
from autoqvis.runs.access import kind_problem, require_file
from autoqvis.runs.atomic import atomic_path

__all__ = [
    "DAVIS_PALETTE",
    "VOID_ID",
    "annotation_folder",
    "check_annotated_frames",
    "image_folder",
    "read_id_masks",
    "read_mask_png",
    "sequence_names",
    "write_mask_png",
    "write_sequence_masks",
]

VOID_ID = 255


def _palette() -> np.ndarray:
    """The DAVIS / PASCAL VOC colour map: 256 RGB entries built from the bits of the index."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette[i] = (r, g, b)
    return palette


DAVIS_PALETTE = _palette()


def read_mask_png(path: str | Path) -> np.ndarray:
    """(H, W) uint8 object ids from a palette (``P``) or grey-level (``L``/``1``, or ``LA`` with a fully opaque
    alpha) PNG.

    A grey-level PNG holding only 0 and 255 is a DAVIS-2016 binary mask: 255 becomes object 1.
    """
    path = require_file(path, "mask")  # a FIFO would block the read: refused by name
    try:
        with open_image(path, "mask") as im:
            im.load()
            mode = im.mode
            ids = np.array(im)
    except FileNotFoundError:
        raise DataError(f"{path} not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DataError(f"{path} is not a readable PNG mask ({err}); is the file truncated?") from err
    if mode == "1":
        return ids.astype(np.uint8)
    if mode == "LA" and (ids[..., 1] == 255).all():  # grey with an opaque alpha (an image editor's save)
        mode, ids = "L", ids[..., 0]
    if mode == "L":
        if np.isin(ids, (0, 255)).all():
            return (ids == 255).astype(np.uint8)
        return ids.astype(np.uint8)
    if mode == "P":
        return ids.astype(np.uint8)
    raise DataError(
        f"{path}: expected a palette (P) or grey-level (L) PNG of object ids, got mode {mode}"
        f"{' with transparent pixels' if mode == 'LA' else ''}; "
        "save masks with autoqvis.io.davis.write_mask_png"
    )


def write_mask_png(path: str | Path, ids: np.ndarray) -> Path:
    """Write (H, W) object ids (0 background, 1..254 objects) as a DAVIS palette PNG, atomically."""
    ids = np.asarray(ids)
    if ids.ndim != 2:
        raise ValueError(f"expected an (H, W) array of object ids, got shape {ids.shape}")
    if ids.size and (ids.min() < 0 or ids.max() > 255):
        raise ValueError(f"object ids must lie in 0..255, got {ids.min()}..{ids.max()}")
    im = Image.fromarray(ids.astype(np.uint8), mode="P")
    im.putpalette(DAVIS_PALETTE.reshape(-1).tolist())
    with atomic_path(path, suffix=".png") as tmp:
        im.save(tmp, format="PNG")
    return Path(path)


def annotation_folder(root: str | Path, resolution: str = "480p") -> Path:
    """The folder of per-sequence annotation folders under a DAVIS root (or a plain folder of them)."""
    root = Path(root)
    if not root.is_dir():
        problem = (kind_problem(root, "dir") or "not found").split(";")[0]
        raise DataError(
            f"DAVIS root {root} {problem}; expected a folder with Annotations/{resolution}/<sequence>"
        )
    for candidate in (root / "Annotations" / resolution, root / "Annotations", root):
        if candidate.is_dir() and sequence_names(candidate):
            return candidate
    raise DataError(
        f"{root} holds no annotated sequence: expected a DAVIS root with Annotations/{resolution}/<sequence>/NNNNN.png "
        "(or a folder of <sequence>/NNNNN.png folders)"
    )


def image_folder(root: str | Path, annotations: Path) -> Path | None:
    """The frames folder paired with ``annotations`` (from :func:`annotation_folder`): ``JPEGImages/<res>``
    beside ``Annotations/<res>``; None for a plain folder of annotated sequences."""
    root = Path(root)
    if annotations.parent == root / "Annotations":
        folder = root / "JPEGImages" / annotations.name
    elif annotations == root / "Annotations":
        folder = root / "JPEGImages"
    else:
        return None
    return folder if folder.is_dir() else None


def check_annotated_frames(images: Path, annotations: Path, sequence: str) -> None:
    """Every frame of a DAVIS sequence (``images/<sequence>/NNNNN.jpg``) has its annotation
    (``annotations/<sequence>/NNNNN.png``): a frame without one would silently drop out of the score."""
    frames = images / sequence
    if not frames.is_dir():
        return
    stems = sorted(
        (p.stem for p in frames.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")), key=natural_key
    )
    annotated = {p.stem for p in (annotations / sequence).glob("*.png")}
    missing = [s for s in stems if s not in annotated]
    if missing:
        raise DataError(
            f"DAVIS sequence {sequence}: {len(missing)} of its {len(stems)} frames have no annotation (first: "
            f"{frames / missing[0]}.* has no {annotations / sequence / missing[0]}.png); restore the missing "
            "annotation PNGs (an incomplete copy?) or remove the frames without one"
        )


def sequence_names(folder: str | Path) -> list[str]:
    """Sequence folders (those holding PNGs), in natural order."""
    folder = Path(folder)
    return [
        p.name
        for p in sorted(folder.iterdir(), key=lambda p: natural_key(p.name))
        if p.is_dir() and not p.name.startswith(".") and any(p.glob("*.png"))
    ]


def read_id_masks(folder: str | Path, frame_names: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """(T, H, W) uint8 ids of a sequence folder and the frame names (stems), in natural order.

    With ``frame_names``, exactly those frames are read and a missing one is an error naming it.
    """
    folder = Path(folder)
    if frame_names is None:
        files = sorted(folder.glob("*.png"), key=lambda p: natural_key(p.name))
        if not files:
            raise DataError(f"{folder} holds no PNG masks")
        frame_names = [p.stem for p in files]
    else:
        files = [folder / f"{name}.png" for name in frame_names]
        missing = [p.name for p in files if not p.is_file()]
        if missing:
            raise DataError(
                f"{folder}: {len(missing)} of {len(files)} mask frames missing (first: {missing[0]}); "
                "write one PNG per ground-truth frame, with the same file names"
            )
    masks = [read_mask_png(p) for p in files]
    shapes = {m.shape for m in masks}
    if len(shapes) > 1:
        raise DataError(f"{folder}: masks of differing sizes {sorted(shapes)} in one sequence")
    return np.stack(masks), frame_names


def write_sequence_masks(root: str | Path, sequence: str, frame_names: list[str], ids: np.ndarray) -> Path:
    """Write (T, H, W) ids as ``root/<sequence>/<frame>.png``; returns the sequence folder."""
    if len(frame_names) != len(ids):
        raise ValueError(f"{len(frame_names)} frame names for {len(ids)} masks")
    folder = Path(root) / sequence
    for name, frame in zip(frame_names, ids, strict=True):
        write_mask_png(folder / f"{name}.png", frame)
    return folder
