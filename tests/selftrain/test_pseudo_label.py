import numpy as np

from autoqvis import rle
from autoqvis.config import SelectionConfig
from autoqvis.io.ytvis import YTVISDataset
from autoqvis.selftrain.fuse import fuse_labels
from autoqvis.selftrain.pseudo_label import (
    SelectionStats,
    build_training_set,
    eligibility_counts,
    select_video,
)
from autoqvis.structures import Track, VideoInfo

from .test_select_fuse import box


def pred(spans, score, ious):
    """A prediction: a mask in every frame (empty where span is None), as the model returns them."""
    masks = [rle.encode(box(*s) if s is not None else np.zeros((4, 6), bool)) for s in spans]
    return Track(masks=masks, score=score, predicted_iou=ious)


def test_select_video_counts_every_step():
    tracks = [
        pred([(0, 2), (0, 2), (0, 2), None], 0.95, [0.9, 0.9, 0.5, 0.0]),  # kept: 2 selected frames
        pred([(0, 2), (4, 6), (4, 6), (4, 6)], 0.9, [0.9] * 4),  # duplicate of the first in frame 0 -> NMS
        pred([(3, 4), (3, 4), (3, 4), (3, 4)], 0.2, [1.0] * 4),  # low score
        pred([(4, 6), (4, 6), None, None], 0.8, [0.95, 0.5, 0.0, 0.0]),  # 1 selected frame -> dropped
    ]
    stats = SelectionStats()
    selected = select_video(tracks, SelectionConfig(), stats)
    assert len(selected) == 1 and selected[0].score == 0.95
    assert selected[0].masks[3] is None and selected[0].selected == [True, True, False, True]
    counts = {name: (c.objects, c.frames) for name, c in stats.steps.items()}
    assert counts == {
        "predicted": (4, 13),
        "nms": (3, 9),
        "score": (2, 5),
        "quality": (2, 3),  # selected non-empty object-frames: 2 + 1
        "min_frames": (1, 3),
    }
    assert SelectionStats.from_json(stats.to_json()).to_json() == stats.to_json()


def test_training_set_keeps_eligible_frames_only():
    a = Track(
        masks=[rle.encode(box(0, 2))] * 4,
        selected=[True, False, True, True],
        predicted_iou=[0.9, 0.1, 0.8, 0.9],
    )
    b = Track(
        masks=[rle.encode(box(3, 5)), None, None, None],
        selected=[True, True, True, True],
        predicted_iou=[0.9, 0, 0, 0],
    )
    labels = fuse_labels({}, {5: [a, b], 6: [Track(masks=[None] * 3, selected=[False] * 3)]})
    stats = SelectionStats()
    eligible = eligibility_counts(labels, 2, stats)
    assert eligible == {5: [0, 2, 3]}  # video 6 has no eligible frame
    assert stats.eligible_frames == 3 and stats.eligible.objects == 2 and stats.fused.objects == 3
    videos = YTVISDataset(
        videos=[
            VideoInfo(5, 6, 4, 4, [f"v5/{i}.jpg" for i in range(4)]),
            VideoInfo(6, 6, 4, 3, [f"v6/{i}.jpg" for i in range(3)]),
        ]
    )
    train = build_training_set(videos, labels, eligible)
    assert [v.file_names for v in train.videos] == [["v5/0.jpg", "v5/2.jpg", "v5/3.jpg"]]
    assert [t.predicted_iou for t in train.tracks[5]] == [[0.9, 0.8, 0.9], [0.9, 0, 0]]
    assert train.tracks[5][1].masks[1:] == [None, None]
