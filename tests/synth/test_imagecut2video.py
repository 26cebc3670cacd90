"""ImageCut2Video: clips from images + pseudo-masks, copy-paste rules, determinism, loader, CLI."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from autoqvis import rle
from autoqvis.cli import main
from autoqvis.config import SynthesisConfig
from autoqvis.errors import DataError
from autoqvis.io.world import WorldConfig, render_image
from autoqvis.synth.imagecut2video import ImageCut2Video, PseudoMaskImages, copy_paste
from tests.conftest import TINY_SETTINGS, set_args

SMALL = SynthesisConfig(short_sides=(96,), crop_min=100, crop_max=120)


@pytest.fixture(scope="module")
def pseudo(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    images, annotations = [], []
    for i in range(5):
        image, masks = render_image(rng, WorldConfig(height=120, width=150, min_objects=2, max_objects=3))
        Image.fromarray(image).save(root / f"img{i}.png")
        images.append({"id": i + 1, "file_name": f"img{i}.png", "height": 120, "width": 150})
        for m in masks:
            if m.any():
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": i + 1,
                        "segmentation": rle.encode(m),
                        "score": 1.0,
                    }
                )
    path = root / "pseudo.json"
    path.write_text(
        json.dumps({"images": images, "annotations": annotations, "info": {"frames_root": str(root)}})
    )
    return path


def test_clips_are_valid_deterministic_and_tracks_persist(pseudo):
    source = ImageCut2Video(PseudoMaskImages(pseudo), SMALL)
    for index in range(len(source)):
        clip = source.clip(index, seed=3)
        T, _, H, W = clip.frames.shape
        assert (
            SMALL.num_frames == T and 96 <= min(H, W) <= 120
        )  # short side 96 per frame, padded to the largest
        masks = clip.masks
        assert masks.shape[1:] == (T, H, W)
        assert not (masks.sum(0) > 1).any(), "objects overlap after occlusion"
        present = masks.any(dim=(2, 3))
        assert present.any(1).all(), "an object hidden in every frame must be removed"
        assert torch.equal(clip.ids, torch.where(present, torch.arange(len(masks))[:, None], -1))
        again = source.clip(index, seed=3)
        assert torch.equal(clip.frames, again.frames) and torch.equal(clip.masks, again.masks)
    assert not torch.equal(source.clip(0, 3).frames, source.clip(0, 4).frames)


def test_copy_paste_moves_pasted_objects_and_applies_the_overlap_rule():
    cfg = SynthesisConfig(paste_scale=(0.5, 0.5))
    frames = torch.zeros(3, 3, 40, 40, dtype=torch.uint8)
    own = torch.zeros(1, 3, 40, 40, dtype=torch.bool)
    own[0, :, 0:4, 0:4] = True  # a small object in a corner
    layer = np.full((40, 40, 3), 200, np.uint8)
    layer_masks = np.zeros((1, 40, 40), bool)
    layer_masks[0, 10:30, 10:30] = True
    out_frames, out_masks = copy_paste(frames, own, layer, layer_masks, cfg, np.random.default_rng(0))
    assert out_masks.shape[0] == 2  # the pasted object is a new track
    pasted = out_masks[1]
    assert pasted.any(dim=(1, 2)).all() and (out_frames[:, 0][pasted] == 200).all()
    # a pasted mask covering >= 50% of an existing object at frame 0: nothing is pasted
    big = torch.zeros(1, 3, 40, 40, dtype=torch.bool)
    big[0, :, 8:32, 8:32] = True
    full = np.ones((1, 40, 40), bool)
    same_frames, same_masks = copy_paste(
        frames, big, layer, full, SynthesisConfig(paste_scale=(1.0, 1.0)), np.random.default_rng(0)
    )
    assert same_frames is frames and same_masks is big


def test_loader_with_workers(pseudo):
    source = ImageCut2Video(PseudoMaskImages(pseudo), SMALL)
    loader = torch.utils.data.DataLoader(source, batch_size=None, num_workers=2)
    clips = list(loader)
    assert len(clips) == len(source)
    assert torch.equal(clips[2].frames, source[2].frames)


def test_synthesize_command_writes_dataset_previews_and_resumes(pseudo, tmp_path, capsys):
    out = tmp_path / "syn"
    args = [
        "synthesize",
        "--masks",
        str(pseudo),
        "--out",
        str(out),
        "--num",
        "6",
        "--preview",
        "2",
        "--set",
        "synthesis.short_sides=[96]",
    ]
    assert main(args) == 0
    data = json.loads((out / "synthetic.json").read_text())
    assert len(data["videos"]) == 6 and data["annotations"]
    assert (out / "preview_01.gif").is_file() and (out / "config.yaml").is_file()
    first = out / "frames" / "clip_000001" / "00000.jpg"
    stamp = first.stat().st_mtime_ns
    assert main(args) == 0
    assert first.stat().st_mtime_ns == stamp  # finished clips are not rewritten
    from autoqvis.io.ytvis import load_ytvis

    assert len(load_ytvis(out / "synthetic.json", frames_root=out / "frames")) == 6


def test_bad_pseudo_mask_files(tmp_path):
    (tmp_path / "a.json").write_text('{"images": []}')
    with pytest.raises(DataError, match="'images' and 'annotations'"):
        PseudoMaskImages(tmp_path / "a.json", tmp_path)
    (tmp_path / "b.json").write_text(
        '{"images": [{"id": 1, "file_name": "x.png", "height": 4, "width": 4}], "annotations": []}'
    )
    with pytest.raises(DataError, match="no image has"):
        PseudoMaskImages(tmp_path / "b.json", tmp_path)


def test_train_on_imagecut2video_clips(pseudo, tmp_path):
    args = [
        "train",
        "--out",
        str(tmp_path / "run"),
        "--masks",
        str(pseudo),
        *set_args(TINY_SETTINGS, "training.max_iters=2"),
    ]
    assert main(args) == 0
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()


def test_train_on_a_youtube_vis_video_dataset(pseudo, tmp_path):
    out = tmp_path / "syn"
    assert (
        main(
            [
                "synthesize",
                "--masks",
                str(pseudo),
                "--out",
                str(out),
                "--num",
                "3",
                "--preview",
                "0",
                "--set",
                "synthesis.short_sides=[96]",
            ]
        )
        == 0
    )
    args = [
        "train",
        "--out",
        str(tmp_path / "run"),
        "--videos",
        str(out / "synthetic.json"),
        "--frames-root",
        str(out / "frames"),
        *set_args(TINY_SETTINGS, "training.max_iters=2", "synthesis.crop_min=80", "synthesis.crop_max=96"),
    ]
    assert main(args) == 0
    assert (tmp_path / "run" / "model" / "model.json").is_file()
