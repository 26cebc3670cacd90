"""ImageCut2Video: training clips with known tracks from unlabeled images and their pseudo-masks.

Each clip repeats one image ``T`` times; the official per-frame augmentation (independent crops, rotations,
brightness and contrast; clip-wide resize and flip: :mod:`autoqvis.synth.augment`) makes the frames differ
like a moving camera. Then (``copy_and_paste`` of the official training loop) every instance of a random frame
of a partner clip is pasted onto **every** frame, with a new scale r ~ U(0.8, 1.0) of the frame size and a
new random position per frame, so the pasted objects move and change size; pasted masks occlude the clip's
own objects. Rules as the official code:

- if at frame 0 a pasted mask covers >= ``paste_max_overlap`` of one of the clip's objects (intersection over
  that object's area), nothing is pasted;
- if pasting would make an object vanish in some frames but not in others (the instance count would change
  across frames), the clip is kept without pasting; an object hidden in every frame is removed.

Track ids: the clip's objects keep 0..N-1, pasted ones follow; ``-1`` where an object has no pixels.
A clip is a pure function of ``(index, seed)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from autoqvis import rle
from autoqvis.config import SynthesisConfig, config_to_dict
from autoqvis.errors import DataError
from autoqvis.io.video import read_image
from autoqvis.io.ytvis import check_relative, load_json
from autoqvis.runs.fingerprint import content_identity, files_identity
from autoqvis.structures import Clip
from autoqvis.synth.augment import clip_augment

__all__ = ["ImageCut2Video", "PseudoMaskImages", "copy_paste"]


@dataclass
class _Entry:
    file_name: str
    height: int
    width: int
    segmentations: list


def _annotations_by_image(path: Path, images: list, annotations: list) -> dict[Any, list[tuple[int, Any]]]:
    """(annotation index, segmentation) per image id. Refused, naming the first offender: an image id given
    twice (whose masks would they be?), an annotation id given twice, and an annotation whose image is not in
    'images' (an orphan)."""
    ids: dict[Any, int] = {}
    for i, img in enumerate(images):
        if isinstance(img, dict):  # (other problems of an image are named where it is read)
            if "id" not in img:
                raise DataError(f"{path}: images[{i}] is missing 'id'")
            if isinstance(img["id"], bool) or not isinstance(img["id"], int):
                raise DataError(f"{path}: images[{i}]: 'id' must be an integer, got {img['id']!r}")
            if img["id"] in ids:
                raise DataError(
                    f"{path}: images[{i}] has the id {img['id']} of images[{ids[img['id']]}]; image ids must be "
                    "unique (the annotations name their image by id): the file is damaged or two files were merged"
                )
            ids[img["id"]] = i
    by_image: dict[Any, list[tuple[int, Any]]] = {}
    seen: dict[Any, int] = {}  # annotation id -> index
    for i, ann in enumerate(annotations):
        if not isinstance(ann, dict) or "image_id" not in ann or "segmentation" not in ann:
            raise DataError(f"{path}: annotations[{i}] needs 'image_id' and 'segmentation'")
        if isinstance(ann["image_id"], bool) or not isinstance(ann["image_id"], int):
            raise DataError(
                f"{path}: annotations[{i}]: 'image_id' must be an integer, got {ann['image_id']!r}"
            )
        if ann["image_id"] not in ids:
            raise DataError(
                f"{path}: annotations[{i}] names image {ann['image_id']}, which is not in 'images' (an orphan "
                "annotation): the file is damaged or was edited by hand; remove the annotation or add its image"
            )
        if isinstance(ann.get("id"), int) and ann["id"] in seen:  # (annotation ids are optional)
            raise DataError(
                f"{path}: annotations[{i}] has the id {ann['id']} of annotations[{seen[ann['id']]}]; annotation ids "
                "must be unique: the file is damaged or two files were merged"
            )
        seen.setdefault(ann.get("id"), i)
        by_image.setdefault(ann["image_id"], []).append((i, ann["segmentation"]))
    return by_image


class PseudoMaskImages:
    """Images and their pseudo-masks from a COCO-style JSON (``autoqvis discover`` output) + images root."""

    def __init__(self, masks_json: str | Path, images_root: str | Path | None = None, min_masks: int = 1):
        path = Path(masks_json)
        self.path = path
        data = load_json(path)
        if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
            raise DataError(
                f"{path}: expected a COCO-style JSON with 'images' and 'annotations' (autoqvis discover writes one)"
            )
        root = images_root or data.get("info", {}).get("frames_root")
        if root is None:
            raise DataError(f"{path} names no frames root; pass the images folder")
        self.root = Path(root)
        if not isinstance(data["annotations"], list) or not isinstance(data["images"], list):
            raise DataError(f"{path}: 'images' and 'annotations' must be lists")
        by_image = _annotations_by_image(path, data["images"], data["annotations"])
        self.entries = []
        counts, sizes, places = [], [], []
        masks: list[tuple[int, Any, dict]] = []  # (annotation index, image id, mask) of every annotation
        for i, img in enumerate(data["images"]):
            where = f"{path}: images[{i}]"
            if not isinstance(img, dict):
                raise DataError(f"{where} must be an object, got {type(img).__name__}")
            for key in ("id", "file_name", "height", "width"):
                if key not in img:
                    raise DataError(f"{where} is missing '{key}'")
            h, w = img["height"], img["width"]
            if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (h, w)):
                raise DataError(f"{where}: 'height' and 'width' must be positive integers, got {h!r}, {w!r}")
            if not isinstance(img["file_name"], str):
                raise DataError(f"{where}: 'file_name' must be a relative path, got {img['file_name']!r}")
            check_relative(img["file_name"], f"{where}: 'file_name'")
            segs = []
            for a, seg in by_image.get(img["id"], []):
                try:
                    mask = rle.to_compressed(seg, h, w)
                except (ValueError, TypeError, KeyError, OverflowError) as err:
                    raise DataError(
                        f"{path}: annotations[{a}] (image {img['id']}): 'segmentation': {err}"
                    ) from err
                if isinstance(seg, dict) and isinstance(seg.get("counts"), str | bytes):
                    counts.append(mask["counts"])
                    sizes.append((h, w))
                    places.append((a, img["id"]))
                segs.append(mask)
                masks.append((a, img["id"], mask))
            if len(segs) >= min_masks:
                self.entries.append(_Entry(img["file_name"], h, w, segs))
        errors = rle.counts_errors(counts, sizes)
        if errors:
            k, reason = errors[0]
            (a, image_id), (h, w) = places[k], sizes[k]
            raise DataError(
                f"{path}: annotations[{a}] (image {image_id}): 'segmentation': the RLE counts are not a valid "
                f"{h}x{w} mask: {reason}; the file is damaged or was written for another image size"
            )
        empty = next(((a, image_id) for a, image_id, m in masks if rle.area(m) == 0), None)
        if empty is not None:
            raise DataError(
                f"{path}: annotations[{empty[0]}] (image {empty[1]}): 'segmentation' is an empty mask (no pixel); "
                "a pseudo-mask must cover its object: remove the annotation (autoqvis discover writes none)"
            )
        if not self.entries:
            raise DataError(f"{path}: no image has at least {min_masks} pseudo-mask(s)")

    def __len__(self) -> int:
        return len(self.entries)

    def identity(self) -> dict:
        """What the clips are made of: the pseudo-mask file's content (not its name or place) and the images
        it uses (names relative to the images root, contents). A missing image is an error here, before
        anything is written."""
        names = [e.file_name for e in self.entries]
        try:
            images = files_identity(self.root, names)
        except FileNotFoundError as err:
            raise DataError(
                f"image {err.filename} not found: {self.path} names {len(names)} images under {self.root}; pass "
                "the images folder the pseudo-masks were made from (--images)"
            ) from err
        masks = content_identity(self.path)
        return {"masks": {"size": masks["size"], "sha256": masks["sha256"]}, "images": images}

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(H, W, 3) uint8 image and (N, H, W) bool masks."""
        e = self.entries[index]
        image = read_image(self.root / e.file_name)
        if image.shape[:2] != (e.height, e.width):
            raise DataError(
                f"{self.root / e.file_name} is {image.shape[1]}x{image.shape[0]}, but {self.path} declares "
                f"{e.width}x{e.height}; pass the images the pseudo-masks were made on (--images)"
            )
        masks = np.stack([rle.decode(s) for s in e.segmentations])
        return image, masks


def copy_paste(
    frames: torch.Tensor,
    masks: torch.Tensor,
    layer: np.ndarray,
    layer_masks: np.ndarray,
    cfg: SynthesisConfig,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste ``layer`` (H, W, 3) with its instances (M, H, W) onto every frame of a clip (official rules)."""
    T, _, H, W = frames.shape
    if not len(layer_masks):
        return frames, masks
    video = frames.permute(0, 2, 3, 1).numpy().copy()
    own = masks.numpy().copy()
    pasted = np.zeros((len(layer_masks), T, H, W), bool)
    for t in range(T):
        r = rng.uniform(*cfg.paste_scale)
        h, w = max(1, round(r * H)), max(1, round(r * W))
        y0, x0 = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
        img = cv2.resize(layer, (w, h), interpolation=cv2.INTER_LINEAR)
        for i, m in enumerate(layer_masks):
            pasted[i, t, y0 : y0 + h, x0 : x0 + w] = (
                cv2.resize(m.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
            )
        alpha = pasted[:, t].any(0)
        if t == 0 and len(own):
            area = own[:, 0].sum((1, 2))
            for i in range(len(layer_masks)):
                covered = (own[:, 0] & pasted[i, 0]).sum((1, 2))
                if np.any((area > 0) & (covered >= cfg.paste_max_overlap * np.maximum(area, 1))):
                    return frames, masks  # the overlap rule: no paste in this clip
        region = video[t, y0 : y0 + h, x0 : x0 + w]
        region[alpha[y0 : y0 + h, x0 : x0 + w]] = img[alpha[y0 : y0 + h, x0 : x0 + w]]
        own[:, t] &= ~alpha
    before = masks.numpy().any((2, 3))
    after = own.any((2, 3))
    if np.any((after != before) & before.any(1, keepdims=True) & after.any(1, keepdims=True)):
        return frames, masks  # an object would vanish in some frames only: keep the clip as it was
    keep = after.any(1) | ~before.any(1)
    merged = np.concatenate([own[keep], pasted[pasted.any((1, 2, 3))]])
    return torch.from_numpy(video).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(merged)


class ImageCut2Video:
    """A :class:`~autoqvis.train.data.ClipSource` (and map-style dataset) of synthetic clips."""

    def __init__(self, images: PseudoMaskImages, cfg: SynthesisConfig | None = None, seed: int = 0):
        if len(images) < 1:
            raise DataError("ImageCut2Video needs at least one image with pseudo-masks")
        self.images, self.cfg, self.seed = images, cfg or SynthesisConfig(), seed
        self.augment = clip_augment(self.cfg)

    def __len__(self) -> int:
        return len(self.images)

    def identity(self) -> dict:
        """What determines its clips (for the fingerprint of a training run)."""
        return {
            "kind": "imagecut2video",
            **self.images.identity(),
            "synthesis": config_to_dict(self.cfg),
            "seed": self.seed,
        }

    def __getitem__(self, index: int) -> Clip:
        return self.clip(index, self.seed)

    def _base(self, index: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        image, masks = self.images.load(index)
        T = self.cfg.num_frames
        return self.augment([image] * T, np.repeat(masks[:, None], T, axis=1), rng)

    def clip(self, index: int, seed: int) -> Clip:
        rng = np.random.default_rng([index, seed, 1])
        frames, masks = self._base(index, rng)
        if self.cfg.copy_paste and len(self) > 1:
            partner = int((index + 1 + rng.integers(len(self) - 1)) % len(self))
            p_frames, p_masks = self._base(partner, np.random.default_rng([partner, seed, 2]))
            f = int(rng.integers(p_frames.shape[0]))
            layer_masks = p_masks[:, f].numpy()
            layer_masks = layer_masks[layer_masks.any((1, 2))]
            frames, masks = copy_paste(
                frames, masks, p_frames[f].permute(1, 2, 0).numpy(), layer_masks, self.cfg, rng
            )
        present = masks.any(dim=(2, 3))
        ids = torch.where(
            present, torch.arange(masks.shape[0])[:, None], torch.full_like(present, -1, dtype=torch.long)
        )
        return Clip(frames=frames, masks=masks, ids=ids.long(), source="synthetic", video_id=index)
