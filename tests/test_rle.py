import numpy as np
import pytest
from pycocotools import mask as mask_utils

from autoqvis import rle
from tests.io.rle_helpers import uncompressed_counts


def test_encode_decode_round_trip_and_area():
    rng = np.random.default_rng(0)
    masks = rng.random((4, 17, 23)) > 0.6
    encoded = rle.encode_stack(masks)
    assert all(isinstance(r["counts"], str) and r["size"] == [17, 23] for r in encoded)
    np.testing.assert_array_equal(rle.decode_stack(encoded), masks)
    assert [rle.area(r) for r in encoded] == [int(m.sum()) for m in masks]
    assert rle.encode(masks[1]) == encoded[1]


def test_iou_matrix_gives_exact_pixel_counts():
    rng = np.random.default_rng(1)
    a, b = rng.random((3, 30, 40)) > 0.5, rng.random((2, 30, 40)) > 0.7
    inter, union = rle.iou_matrix(rle.encode_stack(a), rle.encode_stack(b))
    for i in range(3):
        for j in range(2):
            assert inter[i, j] == (a[i] & b[j]).sum()
            assert union[i, j] == (a[i] | b[j]).sum()


def test_to_compressed_accepts_uncompressed_polygons_and_checks_size():
    mask = np.zeros((10, 12), dtype=bool)
    mask[2:6, 3:9] = True
    compressed = rle.encode(mask)
    assert (
        mask_utils.decode(
            mask_utils.frPyObjects({"size": [10, 12], "counts": uncompressed_counts(mask)}, 10, 12)
        ).sum()
        == mask.sum()
    )
    uncompressed = {"size": [10, 12], "counts": uncompressed_counts(mask)}
    assert rle.to_compressed(uncompressed, 10, 12) == compressed
    assert rle.to_compressed(compressed, 10, 12) == compressed
    polygon = [[3.0, 2.0, 9.0, 2.0, 9.0, 6.0, 3.0, 6.0]]
    assert rle.to_compressed(polygon, 10, 12) == compressed  # pycocotools fills the rectangle's pixels
    with pytest.raises(ValueError, match=r"RLE size \[10, 12\] disagrees with the video size \[10, 13\]"):
        rle.to_compressed(compressed, 10, 13)
    with pytest.raises(ValueError, match="counts sum to"):
        rle.to_compressed({"size": [10, 12], "counts": [5, 5]}, 10, 12)
    with pytest.raises(ValueError, match="must be a polygon list"):
        rle.to_compressed("nonsense", 10, 12)


def test_atomic_files_get_the_usual_permissions(tmp_path):
    import os
    import stat

    from autoqvis.runs.atomic import atomic_write_text

    path = atomic_write_text(tmp_path / "a.txt", "x")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


def test_region_sized_masks_by_area_and_borders():
    from autoqvis.rle import is_region_sized, touched_borders

    m = np.zeros((10, 10), bool)
    assert touched_borders(m) == 0 and not is_region_sized(m, 0.5, 2)
    m[3:6, 3:6] = True  # an object in the middle
    assert touched_borders(m) == 0 and not is_region_sized(m, 0.5, 2)
    m[:, :4] = True  # a band on the left: touches top, bottom and left
    assert touched_borders(m) == 3 and is_region_sized(m, 1.0, 2) and not is_region_sized(m, 1.0, 3)
    big = np.ones((10, 10), bool)
    big[4:6, 4:6] = False
    assert is_region_sized(big, 0.9, 4) and not is_region_sized(big, 1.0, 4)  # 96% of the frame


def _counts_string(runs: list[int]) -> str:
    """pycocotools' rleToString, in Python: 5-bit digits, continuation 0x20, sign 0x10, deltas from the 4th."""
    out = []
    for i, x in enumerate(runs):
        x -= runs[i - 2] if i > 2 else 0
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            out.append(chr(48 + (c | 0x20 if more else c)))
    return "".join(out)


def test_counts_errors_accepts_every_valid_string_and_names_each_fault(monkeypatch):
    rng = np.random.default_rng(0)
    masks = [rng.random((int(h), int(w))) < rng.random() for h, w in rng.integers(1, 40, (300, 2))]
    strings = [rle.encode(m) for m in masks]
    assert rle.counts_errors([s["counts"] for s in strings], [s["size"] for s in strings]) == []
    runs = [0, 7, 300, 2, 1000, 0, 3]  # large numbers, zero runs, deltas of both signs
    assert (
        _counts_string(runs)
        == mask_utils.frPyObjects({"size": [3, 439], "counts": runs}, 3, 439)["counts"].decode()
    )
    bad = {
        "garbage!!": "a character outside '0'..'o'",
        _counts_string([5, 6])[:-1]
        + "o": "it stops in the middle of a number",  # a continuation bit at the end
        "0" * 8: "the runs cover 0 pixels, not H*W = 12",
        _counts_string([4, 4, 4, -2, 2]): "a negative run length",
        _counts_string([4, 4, 5]): "the runs cover 13 pixels, not H*W = 12",
        "n" * 8 + "0": "a number longer than 32 bits",
        "é": "it holds non-ASCII characters",
    }
    good = _counts_string([4, 4, 4])
    strings = [good, *bad, good]
    assert rle.counts_errors(strings, [(3, 4)] * len(strings)) == [
        (i + 1, why) for i, why in enumerate(bad.values())
    ]
    # split into many chunks: the same answer
    monkeypatch.setattr(rle, "_CHUNK_CHARS", 3)
    assert rle.counts_errors(strings, [(3, 4)] * len(strings)) == [
        (i + 1, why) for i, why in enumerate(bad.values())
    ]


def test_polygons_pycocotools_cannot_rasterise_are_refused():
    with pytest.raises(ValueError, match="must be numbers within"):
        rle.to_compressed([[float("nan"), 1, 2, 3, 4, 5]], 10, 12)
    with pytest.raises(ValueError, match="must be numbers within"):
        rle.to_compressed([[1e9, 1, 2, 3, 4, 5]], 10, 12)
    with pytest.raises(ValueError, match="even number of coordinates"):
        rle.to_compressed([[1, 1, 2, 3, 4, 5, 6]], 10, 12)
