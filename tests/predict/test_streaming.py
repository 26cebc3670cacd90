"""Window linking on videos whose ground truth is known, with a segmenter that returns the true masks
of each window in a shuffled query order (what a perfect model looks like to the linker)."""

import numpy as np
import pytest

from autoqvis.predict.streaming import StreamingLinker, WindowResult, run_streaming, stream_windows


def moving_squares(T=23, H=24, W=32):
    """3 objects: one present throughout, one leaving at frame 9, one entering at frame 14."""
    masks = np.zeros((3, T, H, W), bool)
    for t in range(T):
        masks[0, t, 2:8, t % 20 : t % 20 + 6] = True
        if t < 9:
            masks[1, t, 12:20, 2 + t : 10 + t] = True
        if t >= 14:
            masks[2, t, 14:22, 30 - (t - 14) * 2 - 6 : 30 - (t - 14) * 2] = True
    return masks


def perfect_segmenter(gt, seed=0):
    rng = np.random.default_rng(seed)

    def segment(frames_window, start, end):
        window = gt[:, start:end]
        present = window.any((1, 2, 3))
        objs = np.flatnonzero(present)
        order = rng.permutation(len(objs))
        masks = window[objs[order]]
        scores = 0.9 - 0.1 * objs[order]
        embeddings = np.eye(8)[objs[order]] + rng.normal(0, 0.01, (len(objs), 8))
        return WindowResult(
            scores=scores, masks=masks, embeddings=embeddings, predicted_iou=np.full(masks.shape[:2], 0.8)
        )

    return segment


def test_windows_cover_the_video_with_the_overlap():
    assert stream_windows(23, 8, 3) == [(0, 8), (5, 13), (10, 18), (15, 23)]
    assert stream_windows(20, 8, 3) == [(0, 8), (5, 13), (10, 18), (12, 20)]
    assert stream_windows(5, 8, 3) == [(0, 5)]
    assert stream_windows(5, 0, 3) == [(0, 5)]
    with pytest.raises(ValueError, match="overlap must be in"):
        stream_windows(30, 8, 8)


@pytest.mark.parametrize(("window", "overlap"), [(6, 2), (8, 3), (5, 4), (100, 2)])
def test_identities_survive_window_boundaries(window, overlap):
    gt = moving_squares()
    T = gt.shape[1]
    segment = perfect_segmenter(gt)
    frames = (np.zeros((24, 32, 3), np.uint8) for _ in range(T))
    windows = iter(stream_windows(T, window, overlap))

    def by_window(frames_window):
        start, end = next(windows)
        assert frames_window.shape[0] == end - start
        return segment(frames_window, start, end)

    tracks = run_streaming(frames, T, by_window, window=window, overlap=overlap, hw=(24, 32))
    assert len(tracks) == 3  # no identity switch creates extra tracks
    for track in tracks:
        dense = np.stack([track.decode(t, (24, 32)) for t in range(T)])
        matches = [k for k in range(3) if np.array_equal(dense, gt[k])]
        assert len(matches) == 1, "every track is exactly one ground-truth object over the whole video"
        assert [p is not None for p in track.masks] == gt[matches[0]].any((1, 2)).tolist()


def test_a_single_window_is_the_window_result():
    gt = moving_squares(T=6)
    result = WindowResult(
        scores=np.array([0.7, 0.9]), masks=gt[:2], predicted_iou=np.array([[0.1] * 6, [0.2] * 6])
    )
    linker = StreamingLinker(6, (24, 32))
    linker.add(0, 6, result)
    tracks = linker.finish()
    assert [t.score for t in tracks] == pytest.approx([0.9, 0.7])
    assert tracks[0].predicted_iou == pytest.approx([0.2] * 6)
    np.testing.assert_array_equal(tracks[1].decode(3), gt[0, 3])
