import numpy as np
import pytest
from PIL import Image

from autoqvis.errors import DataError
from autoqvis.io.davis import DAVIS_PALETTE, annotation_folder, read_id_masks, read_mask_png, write_mask_png
from tests.conftest import shared_data


def test_palette_round_trip_and_standard_colours(tmp_path):
    ids = np.arange(12 * 10, dtype=np.uint8).reshape(12, 10) % 7
    path = write_mask_png(tmp_path / "a" / "00000.png", ids)
    with Image.open(path) as im:
        assert im.mode == "P"
    np.testing.assert_array_equal(read_mask_png(path), ids)
    assert DAVIS_PALETTE[1].tolist() == [128, 0, 0] and DAVIS_PALETTE[2].tolist() == [0, 128, 0]
    assert not list(tmp_path.glob("a/*.tmp*"))


def test_binary_grey_png_is_object_one(tmp_path):
    Image.fromarray(np.array([[0, 255], [255, 0]], np.uint8), mode="L").save(tmp_path / "m.png")
    np.testing.assert_array_equal(read_mask_png(tmp_path / "m.png"), [[0, 1], [1, 0]])


def test_grey_png_with_an_opaque_alpha_is_grey_and_a_transparent_one_is_refused(tmp_path):
    """davis2016-train holds one grey+alpha annotation (bear/00077.png, alpha 255 everywhere)."""
    grey = np.array([[0, 255], [255, 0]], np.uint8)
    Image.fromarray(np.stack([grey, np.full_like(grey, 255)], -1), mode="LA").save(tmp_path / "opaque.png")
    np.testing.assert_array_equal(read_mask_png(tmp_path / "opaque.png"), [[0, 1], [1, 0]])
    Image.fromarray(np.stack([grey, np.array([[255, 0], [255, 255]], np.uint8)], -1), mode="LA").save(
        tmp_path / "holes.png"
    )
    with pytest.raises(DataError, match="mode LA with transparent pixels"):
        read_mask_png(tmp_path / "holes.png")


def test_bad_masks_are_named(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(DataError, match=r"bad\.png"):
        read_mask_png(tmp_path / "bad.png")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(DataError, match="mode RGB"):
        read_mask_png(tmp_path / "rgb.png")
    seq = tmp_path / "seq"
    write_mask_png(seq / "00000.png", np.zeros((4, 4), np.uint8))
    write_mask_png(seq / "00001.png", np.zeros((5, 4), np.uint8))
    with pytest.raises(DataError, match="differing sizes"):
        read_id_masks(seq)
    with pytest.raises(DataError, match="expected a DAVIS root"):
        annotation_folder(tmp_path / "seq")


def test_real_davis_annotations_read():
    root = shared_data("davis2016-dev")
    masks, frames = read_id_masks(annotation_folder(root) / "blackswan")
    assert masks.shape == (50, 480, 854) and frames[0] == "00000"
    assert set(np.unique(masks)) == {0, 1}
