import json

import numpy as np
import pytest
from PIL import Image

from autoqvis import rle
from autoqvis.errors import DataError
from autoqvis.io.ytvis import YTVISDataset, load_predictions, load_ytvis, save_predictions, save_ytvis
from autoqvis.structures import Track
from tests.conftest import fixture_file, fixture_params

from .rle_helpers import uncompressed_counts


def make_dataset(tmp_path, length=3, h=12, w=16, write_frames=True):
    """One video with two tracks; track 2 absent in frame 1; frames written under tmp_path/frames."""
    masks = np.zeros((2, length, h, w), bool)
    masks[0, :, 2:6, 3:8] = True
    masks[1, 0, 7:11, 9:14] = True
    masks[1, 2, 6:10, 8:13] = True
    names = [f"vid/{t:05d}.jpg" for t in range(length)]
    if write_frames:
        (tmp_path / "frames" / "vid").mkdir(parents=True)
        for name in names:
            Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(tmp_path / "frames" / name)
    segs = [[rle.encode(m) if m.any() else None for m in track] for track in masks]
    data = {
        "videos": [{"id": 7, "width": w, "height": h, "length": length, "file_names": names}],
        "annotations": [
            {"id": 1, "video_id": 7, "category_id": 3, "iscrowd": 0, "segmentations": segs[0]},
            {"id": 2, "video_id": 7, "category_id": 5, "iscrowd": 0, "segmentations": segs[1]},
        ],
        "categories": [{"id": 3, "name": "cat"}, {"id": 5, "name": "dog"}],
    }
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(data))
    return path, data, masks


def test_load_class_agnostic_and_round_trip(tmp_path):
    path, _, masks = make_dataset(tmp_path)
    ds = load_ytvis(path, tmp_path / "frames")
    assert ds.categories == [{"id": 1, "name": "object"}]
    tracks = ds.tracks[7]
    assert [t.category_id for t in tracks] == [1, 1]
    assert tracks[1].masks[1] is None
    np.testing.assert_array_equal(tracks[1].decode(2), masks[1, 2])
    assert tracks[1].mean_area() == pytest.approx(20.0)
    keep = load_ytvis(path, class_agnostic=False)
    assert [t.category_id for t in keep.tracks[7]] == [3, 5]
    tracks[0].selected = [True, False, True]
    tracks[0].predicted_iou = [0.9, 0.2, 0.8]
    save_ytvis(ds, tmp_path / "copy.json")
    again = load_ytvis(tmp_path / "copy.json", tmp_path / "frames")
    assert again.tracks[7][0].selected == [True, False, True]
    assert again.tracks[7][0].predicted_iou == [0.9, 0.2, 0.8]
    assert [t.masks for t in again.tracks[7]] == [t.masks for t in tracks]
    frames = list(again.open_video(7))
    assert len(frames) == 3 and frames[0].shape == (12, 16, 3)


def test_uncompressed_and_polygon_segmentations(tmp_path):
    path, data, masks = make_dataset(tmp_path, write_frames=False)
    dense = masks[0, 0]
    data["annotations"][0]["segmentations"][0] = {"size": [12, 16], "counts": uncompressed_counts(dense)}
    data["annotations"][0]["segmentations"][1] = [[3, 2, 8, 2, 8, 6, 3, 6]]
    path.write_text(json.dumps(data))
    ds = load_ytvis(path)
    np.testing.assert_array_equal(ds.tracks[7][0].decode(0), dense)
    np.testing.assert_array_equal(ds.tracks[7][0].decode(1), masks[0, 1])  # the polygon's rectangle


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("videos"), "missing the 'videos' list"),
        (
            lambda d: d["videos"][0].update(length=4),
            r"video 7: field 'file_names' has 3 entries but 'length' is 4",
        ),
        (
            lambda d: d["videos"][0].update(width="16"),
            r"videos\[0\] \(id 7\): field 'width' must be an integer",
        ),
        (
            lambda d: d["videos"][0]["file_names"].__setitem__(1, "../../etc/passwd"),
            r"video 7: field 'file_names'.*escapes the dataset root",
        ),
        (lambda d: d["videos"][0]["file_names"].__setitem__(1, "/abs/00001.jpg"), "escapes the dataset root"),
        (lambda d: d["annotations"][0].update(video_id=99), r"annotations\[0\]: field 'video_id' is 99"),
        (
            lambda d: d["annotations"][1]["segmentations"].pop(),
            r"video 7, annotation 2: field 'segmentations' must be a list of 3 entries",
        ),
        (
            lambda d: d["annotations"][0]["segmentations"][2].update(size=[12, 17]),
            r"video 7, annotation 1: field 'segmentations' frame 2: RLE size \[12, 17\] disagrees with the video size \[12, 16\]",
        ),
        (lambda d: d["videos"].append(dict(d["videos"][0])), "video id 7 appears twice"),
        (
            lambda d: d["annotations"][1].update(id=1),
            r"annotations\[1\] has the id 1 of annotations\[0\]; annotation ids must be unique",
        ),
    ],
)
def test_bad_dataset_files_name_file_video_and_field(tmp_path, mutate, message):
    path, data, _ = make_dataset(tmp_path, write_frames=False)
    mutate(data)
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=message) as err:
        load_ytvis(path)
    assert "gt.json" in str(err.value)


def test_malformed_json_and_missing_frames(tmp_path):
    path, data, _ = make_dataset(tmp_path)
    path.write_text(json.dumps(data)[:-20])
    with pytest.raises(DataError, match=r"gt\.json is not valid JSON: .* line 1 column"):
        load_ytvis(path)
    path.write_text(json.dumps(data))
    (tmp_path / "frames" / "vid" / "00001.jpg").unlink()
    with pytest.raises(DataError, match=r"video 7: field 'file_names' frame 1: .*00001\.jpg not found"):
        load_ytvis(path, tmp_path / "frames")
    ds = load_ytvis(path, tmp_path / "frames", check_frames=False)
    with pytest.raises(DataError, match=r"00001\.jpg not found"):
        list(ds.open_video(7))


def test_frame_size_disagreeing_with_json(tmp_path):
    path, _, _ = make_dataset(tmp_path)
    Image.fromarray(np.zeros((10, 16, 3), np.uint8)).save(tmp_path / "frames" / "vid" / "00000.jpg")
    ds = load_ytvis(path, tmp_path / "frames")
    with pytest.raises(
        DataError, match=r"video 7: frame .*00000\.jpg is 16x10 but the JSON declares width 16 and height 12"
    ):
        ds.open_video(7)


def test_predictions_round_trip_and_validation(tmp_path):
    path, _, masks = make_dataset(tmp_path, write_frames=False)
    ds = load_ytvis(path)
    pred = Track(masks=rle.encode_stack(masks[1]), score=0.8, predicted_iou=[0.5, 0.0, 0.7])
    save_predictions({7: [pred]}, tmp_path / "pred.json")
    loaded = load_predictions(tmp_path / "pred.json", ds)
    assert loaded[7][0].score == 0.8 and loaded[7][0].predicted_iou == [0.5, 0.0, 0.7]
    assert loaded[7][0].masks == pred.masks
    entries = json.loads((tmp_path / "pred.json").read_text())
    entries[0]["video_id"] = 8
    (tmp_path / "bad.json").write_text(json.dumps(entries))
    with pytest.raises(
        DataError, match=r"bad\.json: predictions\[0\]: video_id 8 is not in the ground-truth videos"
    ):
        load_predictions(tmp_path / "bad.json", ds)
    entries[0]["video_id"] = 7
    entries[0]["segmentations"] = entries[0]["segmentations"][:2]
    (tmp_path / "bad.json").write_text(json.dumps(entries))
    with pytest.raises(DataError, match=r"\(video 7\): 2 segmentations but the video has 3 frames"):
        load_predictions(tmp_path / "bad.json", ds)
    (tmp_path / "bad.json").write_text(json.dumps({"x": 1}))
    with pytest.raises(DataError, match="expected a list of predictions"):
        load_predictions(tmp_path / "bad.json")


def _fixture_cases() -> dict:
    """The evaluator fixture's cases by name (``ytvis_eval/expected_results.json``)."""
    cases = json.loads(fixture_file("ytvis_eval", "expected_results.json").read_text())
    assert cases, "expected_results.json lists no cases"
    return cases


@pytest.mark.parametrize("case", fixture_params(lambda: sorted(_fixture_cases())))
def test_fixture_gt_files_load(case):
    """Every case's ground truth (compressed or uncompressed RLE, as its ``gt_rle`` says) and predictions load
    with the sizes and counts the metadata gives."""
    meta = _fixture_cases()[case]
    gt_path = fixture_file("ytvis_eval", meta["gt_file"])
    counts = [
        seg["counts"]
        for ann in json.loads(gt_path.read_text())["annotations"]
        for seg in ann["segmentations"]
        if isinstance(seg, dict)
    ]
    kind = {"compressed": str, "uncompressed": list}[meta["gt_rle"].split()[0]]
    assert counts and all(isinstance(c, kind) for c in counts), f"{case}: not all {meta['gt_rle']}"
    ds = load_ytvis(gt_path)
    assert len(ds) == meta["num_videos"] and ds.num_tracks() == meta["num_gt_tracks"]
    assert {(v.height, v.width) for v in ds.videos} == {tuple(meta["frame_hw"])}
    predictions = load_predictions(fixture_file("ytvis_eval", meta["pred_file"]), ds)
    assert sum(len(tracks) for tracks in predictions.values()) == meta["num_predictions"]


def test_written_annotation_ids_are_unique(tmp_path):
    """The writer keeps each track's own id where no earlier track took it and numbers the rest with ids no
    track has: labels mixing ids read from a file with new tracks (a resumed self-training round) and tracks
    numbered per video (a training set) are written with unique ids."""
    from autoqvis.structures import VideoInfo

    mask = rle.encode(np.ones((4, 4), bool))
    infos = [VideoInfo(id=v, width=4, height=4, length=1, file_names=[f"v{v}/0.jpg"]) for v in (1, 2)]
    tracks = {1: [Track([mask], id=1), Track([mask], id=2), Track([mask])], 2: [Track([mask], id=3)]}
    save_ytvis(YTVISDataset(videos=infos, tracks=tracks), tmp_path / "mixed.json")
    ids = [a["id"] for a in json.loads((tmp_path / "mixed.json").read_text())["annotations"]]
    assert ids == [1, 2, 4, 3]
    per_video = {1: [Track([mask], id=1), Track([mask], id=2)], 2: [Track([mask], id=1)]}
    save_ytvis(YTVISDataset(videos=infos, tracks=per_video), tmp_path / "per_video.json")
    assert [t.id for v in (1, 2) for t in load_ytvis(tmp_path / "per_video.json").tracks[v]] == [1, 2, 3]
    plain = {1: [Track([mask]), Track([mask])], 2: [Track([mask])]}  # no ids: 1, 2, 3 as before
    save_ytvis(YTVISDataset(videos=infos, tracks=plain), tmp_path / "plain.json")
    assert [a["id"] for a in json.loads((tmp_path / "plain.json").read_text())["annotations"]] == [1, 2, 3]


def test_resumed_fusion_gives_the_labels_of_an_uninterrupted_run(tmp_path):
    """Round 2 of a resumed run fuses round 1's labels read back from their file (ids 1..N) with new tracks:
    the labels it writes are the uninterrupted run's, byte for byte, with unique ids."""
    from autoqvis.selftrain.fuse import fuse_labels
    from autoqvis.structures import VideoInfo

    def box(y):
        m = np.zeros((8, 8), bool)
        m[y : y + 2, :] = True
        return rle.encode(m)

    infos = [VideoInfo(id=v, width=8, height=8, length=1, file_names=[f"v{v}/0.jpg"]) for v in (1, 2)]
    first = {1: [Track([box(0)], selected=[True])], 2: [Track([box(4)], selected=[True])]}
    save_ytvis(YTVISDataset(videos=infos, tracks=first), tmp_path / "round_1.json")
    read_back = load_ytvis(tmp_path / "round_1.json").tracks
    assert [t.id for t in read_back[2]] == [2]
    new = {1: [Track([box(6)], selected=[True])]}  # a new object of video 1: appended
    for name, previous in (("straight", first), ("resumed", read_back)):
        labels = fuse_labels(previous, new)
        save_ytvis(YTVISDataset(videos=infos, tracks=labels), tmp_path / f"{name}.json")
    assert (tmp_path / "straight.json").read_bytes() == (tmp_path / "resumed.json").read_bytes()
    load_ytvis(tmp_path / "resumed.json")  # unique ids


def _named_results(tmp_path, names_and_ids):
    path, _, masks = make_dataset(tmp_path, write_frames=False)
    mask = rle.encode(masks[0, 0])
    results = [
        {"video_id": vid, "video_name": name, "score": 0.5, "segmentations": [mask] * 3}
        for name, vid in names_and_ids
    ]
    (tmp_path / "pred.json").write_text(json.dumps(results))
    return path, tmp_path / "pred.json"


def test_predictions_are_matched_by_video_name(tmp_path, caplog):
    """Results that carry video names (autoqvis predict's) are matched to the ground truth by name: other ids
    for the same video are mapped; a video the ground truth does not have is refused."""
    gt, pred = _named_results(tmp_path, [("vid", 1)])  # the ground truth calls video "vid" 7
    dataset = load_ytvis(gt)
    with caplog.at_level("INFO", logger="autoqvis"):
        loaded = load_predictions(pred, dataset)
    assert list(loaded) == [7] and len(loaded[7]) == 1
    assert (
        "matched the predictions to the ground truth by video name" in caplog.text and "1 -> 7" in caplog.text
    )
    (tmp_path / "other").mkdir()
    gt, pred = _named_results(tmp_path / "other", [("elsewhere", 7)])
    with pytest.raises(
        DataError, match=r"is for video 'elsewhere' \(video_id 7\), which the ground truth does not"
    ):
        load_predictions(pred, load_ytvis(gt))


def test_ground_truth_videos_without_predictions_are_named(tmp_path, caplog):
    from autoqvis.structures import VideoInfo

    mask = rle.encode(np.ones((4, 4), bool))
    infos = [VideoInfo(id=v, width=4, height=4, length=1, file_names=[f"{v}.jpg"]) for v in (1, 2, 3)]
    save_ytvis(
        YTVISDataset(videos=infos, tracks={v: [Track([mask])] for v in (1, 2, 3)}), tmp_path / "gt.json"
    )
    (tmp_path / "pred.json").write_text(json.dumps([{"video_id": 2, "score": 1, "segmentations": [mask]}]))
    with caplog.at_level("WARNING", logger="autoqvis"):
        load_predictions(tmp_path / "pred.json", load_ytvis(tmp_path / "gt.json"))
    assert "2 of the ground truth's 3 videos have no prediction (id 1, id 3)" in caplog.text
