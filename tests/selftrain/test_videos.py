import shutil

import numpy as np
import pytest
from PIL import Image

from autoqvis.errors import DataError
from autoqvis.io.video import find_videos
from autoqvis.selftrain.videos import cache_videos
from tests.io.test_video import gradient_frames, write_mp4


def make_inputs(root):
    root.mkdir()
    write_mp4(root / "clip.mp4", gradient_frames(5, 48, 64))
    (root / "clip").mkdir()  # same name as the mp4: disambiguated
    for t in range(3):
        Image.fromarray(np.full((40, 50, 3), 10 * t, np.uint8)).save(root / "clip" / f"{t}.png")
    (root / "broken.mp4").write_bytes(b"junk")


def test_cache_videos_resumable_and_skips_bad_ones(tmp_path):
    make_inputs(tmp_path / "in")
    paths = find_videos(tmp_path / "in")
    with pytest.raises(DataError, match=r"broken\.mp4"):
        cache_videos(paths, tmp_path / "run0", short_side=24)
    dataset, report = cache_videos(paths, tmp_path / "run", short_side=24, skip_bad=True)
    assert [name for name, _ in report.skipped] == [str(tmp_path / "in" / "broken.mp4")]
    assert [(v.name, v.length, v.height, v.width) for v in dataset.videos] == [
        ("clip", 3, 24, 30),
        ("clip_2", 5, 24, 32),
    ]
    assert (tmp_path / "run" / "frames" / "clip_2" / "00004.jpg").is_file()
    # a second call reads the index instead of decoding again
    again, _ = cache_videos(paths, tmp_path / "run", short_side=24, skip_bad=True)
    assert [v.file_names for v in again.videos] == [v.file_names for v in dataset.videos]


def test_interrupted_video_is_redone(tmp_path):
    make_inputs(tmp_path / "in")
    paths = [p for p in find_videos(tmp_path / "in") if p.suffix != ".mp4" or p.stem != "broken"]
    cache_videos(paths, tmp_path / "run", short_side=None)
    (tmp_path / "run" / "videos.json").unlink()  # as if the run was killed while decoding clip_2:
    partial = tmp_path / "run" / "frames" / "clip_2"
    shutil.rmtree(partial)
    partial.mkdir(parents=True)
    (partial / "00000.jpg").write_bytes(b"half")  # no .done marker: an interrupted decode
    dataset, _ = cache_videos(paths, tmp_path / "run", short_side=None)
    assert dataset.video(2).length == 5
    assert Image.open(partial / "00000.jpg").size == (64, 48)
