"""Large files are sampled at every keyframe and at least 1% of their bytes; AUTOQVIS_FULL_DIGEST reads all."""

from __future__ import annotations

import itertools

import pytest

from autoqvis.runs import fingerprint
from autoqvis.runs.fingerprint import file_digest, sample_offsets


@pytest.mark.parametrize("size", [65 << 20, 1 << 30, 10 << 30])
def test_the_sample_covers_one_percent_and_the_ends(size):
    offsets, length = sample_offsets(size)
    assert len(offsets) * length >= size // 100
    assert offsets[0] == 0 and offsets[-1] + length == size


def test_every_keyframe_is_sampled():
    size = 1 << 30
    keys = list(range(1000, size, 3 << 20))  # a keyframe every 3 MB
    offsets, length = sample_offsets(size, keys)
    assert set(keys) <= set(offsets)
    assert len(offsets) * length >= size // 100


def _big(tmp_path, monkeypatch):
    monkeypatch.setattr(fingerprint, "SAMPLE_ABOVE", 1 << 16)
    monkeypatch.setattr(fingerprint, "SAMPLE_BYTES", 1 << 12)
    monkeypatch.setattr(fingerprint, "SAMPLE_BLOCKS", 4)
    path = tmp_path / "video.mp4"
    path.write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    return path


def _poke(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_change_at_a_keyframe_is_seen(tmp_path, monkeypatch):
    path = _big(tmp_path, monkeypatch)
    monkeypatch.setattr(fingerprint, "_keyframe_offsets", lambda p: [300_001])
    before = file_digest(path)
    assert before.startswith("sampled:")
    _poke(path, 300_001)
    assert file_digest(path) != before


def test_the_full_digest_sees_a_change_anywhere(tmp_path, monkeypatch):
    path = _big(tmp_path, monkeypatch)
    monkeypatch.setattr(fingerprint, "_keyframe_offsets", lambda p: [])
    offsets, length = sample_offsets(path.stat().st_size)
    gap = next(o + length + 7 for o, n in itertools.pairwise(offsets) if n > o + length + 7)
    sampled = file_digest(path)
    monkeypatch.setenv("AUTOQVIS_FULL_DIGEST", "1")
    full = file_digest(path)
    assert not full.startswith("sampled:")
    _poke(path, gap)
    assert file_digest(path) != full  # read whole
    monkeypatch.delenv("AUTOQVIS_FULL_DIGEST")
    assert file_digest(path) == sampled  # what the module docstring says remains possible


def test_the_docstring_says_what_remains_possible():
    assert "AUTOQVIS_FULL_DIGEST=1" in fingerprint.__doc__ and "What remains possible" in fingerprint.__doc__
