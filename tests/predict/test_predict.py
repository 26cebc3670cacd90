"""`autoqvis predict` and the Python API on a tiny model: whole-video vs streaming, files written, resume."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import autoqvis
from autoqvis.cli import main
from autoqvis.config import InferenceConfig
from autoqvis.io.davis import read_mask_png
from autoqvis.io.world import WorldConfig, render_video
from autoqvis.model import build_model, save_model
from autoqvis.predict.predict import segment_video
from autoqvis.rle import decode


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("model")
    save_model(build_model("tiny"), folder)
    return folder


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    rng = np.random.default_rng(0)
    for name, frames in (("clip_a", 6), ("clip_b", 4)):
        video = render_video(rng, WorldConfig(height=48, width=64, num_frames=frames))
        (root / name).mkdir()
        for t, frame in enumerate(video.frames):
            Image.fromarray(frame).save(root / name / f"{t:05d}.jpg", quality=95)
    return root


def test_streaming_with_one_window_equals_whole_video(model_dir, videos):
    model = autoqvis.load_model(model_dir)
    whole = segment_video(model, videos / "clip_a", InferenceConfig(short_side=48))
    one_window = segment_video(model, videos / "clip_a", InferenceConfig(short_side=48, window=6, overlap=2))
    assert [t.score for t in whole.tracks] == [t.score for t in one_window.tracks]
    assert [t.masks for t in whole.tracks] == [t.masks for t in one_window.tracks]
    streamed = autoqvis.segment(model, videos / "clip_a", window=3, overlap=1, short_side=48)
    assert streamed.video.length == 6 and (streamed.video.height, streamed.video.width) == (48, 64)
    assert all(len(t.masks) == 6 and len(t.predicted_iou) == 6 for t in streamed.tracks)
    assert all(0 <= v <= 1 for t in streamed.tracks for v in t.predicted_iou)


def test_predict_command_writes_results_masks_overlays_and_resumes(model_dir, videos, tmp_path, capsys):
    out = tmp_path / "out"
    args = [
        "predict",
        str(videos),
        "--weights",
        str(model_dir),
        "--out",
        str(out),
        "--short-side",
        "48",
        "--window",
        "4",
        "--overlap",
        "1",
    ]
    assert main(args) == 0
    results = json.loads((out / "predictions.json").read_text())
    assert {r["video_name"] for r in results} == {"clip_a", "clip_b"}
    first = next(r for r in results if r["video_name"] == "clip_a")
    assert len(first["segmentations"]) == 6 and len(first["predicted_ious"]) == 6
    assert decode(first["segmentations"][0]).shape == (48, 64)
    assert sorted(p.name for p in (out / "masks" / "clip_b").iterdir()) == [f"{t:05d}.png" for t in range(4)]
    # the id map: track k (in result order) painted with k + 1, the best-scored track on top
    ids = read_mask_png(out / "masks" / "clip_a" / "00000.png")
    tracks_a = [r for r in results if r["video_name"] == "clip_a"]
    expected = np.zeros((48, 64), np.uint8)
    for k in reversed(range(min(len(tracks_a), 20))):
        expected[decode(tracks_a[k]["segmentations"][0])] = k + 1
    np.testing.assert_array_equal(ids, expected)
    assert (out / "overlays" / "clip_a.mp4").stat().st_size > 0 and (
        out / "overlays" / "clip_a.gif"
    ).is_file()
    assert (out / "config.yaml").is_file()
    stamp = (out / "results" / "clip_a.json").stat().st_mtime_ns
    assert main(args) == 0  # finished videos are skipped
    assert (out / "results" / "clip_a.json").stat().st_mtime_ns == stamp
    assert "2 video(s)" in capsys.readouterr().out


def test_predict_errors_are_clear(tmp_path, model_dir, capsys):
    assert (
        main(
            ["predict", str(tmp_path / "missing"), "--weights", str(model_dir), "--out", str(tmp_path / "o")]
        )
        == 2
    )
    assert "not found" in capsys.readouterr().err
    assert (
        main(["predict", str(tmp_path), "--weights", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
        == 2
    )


def test_predict_on_an_mp4_file(model_dir, tmp_path):
    import av

    path = tmp_path / "clip.mp4"
    video = render_video(np.random.default_rng(1), WorldConfig(height=48, width=64, num_frames=5))
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for frame in video.frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    out = tmp_path / "out"
    assert (
        main(["predict", str(path), "--weights", str(model_dir), "--out", str(out), "--short-side", "48"])
        == 0
    )
    results = json.loads((out / "predictions.json").read_text())
    assert len(results) == InferenceConfig().top_k and all(len(r["segmentations"]) == 5 for r in results)
    assert (out / "overlays" / "clip.mp4").is_file()


def test_rank_tracks_by_class_score_or_by_quality():
    from autoqvis import rle
    from autoqvis.predict.ranking import rank_tracks
    from autoqvis.structures import Track

    m = np.zeros((4, 4), bool)
    m[1:3, 1:3] = True
    full, empty = rle.encode(m), rle.encode(np.zeros((4, 4), bool))
    tracks = [
        Track(masks=[full, full], score=0.9, predicted_iou=[0.2, 0.4]),  # quality 0.9 x 0.3
        Track(
            masks=[full, empty], score=0.6, predicted_iou=[0.9, 0.1]
        ),  # the empty frame is ignored: 0.6 x 0.9
        Track(masks=[None, empty], score=0.95, predicted_iou=[0.9, 0.9]),  # no mask anywhere: 0
    ]
    by_class = rank_tracks(tracks, "class")
    assert [t.score for t in by_class] == [0.95, 0.9, 0.6] and [t.id for t in by_class] == [1, 2, 3]
    by_quality = rank_tracks(tracks, "quality")
    assert [t.score for t in by_quality] == pytest.approx([0.54, 0.27, 0.0])
    assert [t.id for t in by_quality] == [1, 2, 3] and by_quality[0].masks == [full, empty]
    assert [t.score for t in tracks] == [0.9, 0.6, 0.95] and tracks[0].id is None  # inputs untouched
    with pytest.raises(ValueError, match="no quality head"):
        rank_tracks([Track(masks=[full], score=0.5)], "quality")
    with pytest.raises(ValueError, match="one of class, quality, main, got 'area'"):
        rank_tracks(tracks, "area")


def test_predict_command_ranks_by_quality_when_asked(model_dir, videos, tmp_path):
    common = ["--weights", str(model_dir), "--short-side", "48", "--no-overlay"]
    by_class, by_quality = tmp_path / "class", tmp_path / "quality"
    assert main(["predict", str(videos / "clip_a"), "--out", str(by_class), *common]) == 0
    assert (
        main(
            [
                "predict",
                str(videos / "clip_a"),
                "--out",
                str(by_quality),
                *common,
                "--set",
                "inference.track_score=quality",
            ]
        )
        == 0
    )
    a = json.loads((by_class / "predictions.json").read_text())
    b = json.loads((by_quality / "predictions.json").read_text())
    assert [r["score"] for r in a] == sorted((r["score"] for r in a), reverse=True)
    assert [r["score"] for r in b] == sorted((r["score"] for r in b), reverse=True)
    # the same tracks, each rescored by its mean predicted IoU over the frames where it has a mask
    class_score = {json.dumps(r["segmentations"]): r["score"] for r in a}
    for r in b:
        ious = [p for m, p in zip(r["segmentations"], r["predicted_ious"]) if decode(m).any()]
        expected = class_score[json.dumps(r["segmentations"])] * (np.mean(ious) if ious else 0.0)
        assert r["score"] == pytest.approx(expected, abs=1e-6)


def test_predict_refines_masks_with_the_crf_when_configured(model_dir, videos, tmp_path, monkeypatch):
    """`inference.crf_short_side` reaches `autoqvis predict`: the best tracks' masks go through the CRF."""
    import autoqvis.predict.predict as predict_module

    calls = []

    def spy(tracks, source, short_side):
        calls.append((len(tracks), short_side))
        return tracks

    monkeypatch.setattr(predict_module, "crf_refine_tracks", spy)
    args = ["predict", str(videos / "clip_b"), "--weights", str(model_dir), "--out", str(tmp_path / "o")]
    flags = [
        "--short-side",
        "48",
        "--set",
        "inference.crf_short_side=64",
        "--set",
        "inference.crf_max_tracks=2",
    ]
    assert main([*args, *flags]) == 0
    assert calls == [(2, 64)]
