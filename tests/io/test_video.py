import tracemalloc

import av
import numpy as np
import pytest
from PIL import Image

from autoqvis.errors import DataError
from autoqvis.io.video import (
    SkipReport,
    find_videos,
    open_video,
    read_image,
    resized_hw,
    skip_bad_input,
)


def write_mp4(path, frames, fps=10):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def gradient_frames(n, h=48, w=64):
    y, x = np.mgrid[0:h, 0:w]
    return [
        np.stack([(x * 4 + 3 * i) % 256, (y * 5) % 256, np.full_like(x, 128)], -1).astype(np.uint8)
        for i in range(n)
    ]


def test_resized_hw_matches_detectron2_rule():
    assert resized_hw(480, 854, 360) == (360, 641)  # 854 * 0.75 = 640.5 -> int(641.0)
    assert resized_hw(720, 1280, 360) == (360, 640)
    assert resized_hw(1000, 100, 360, max_size=1333) == (1333, 133)  # capped by the long side
    assert resized_hw(50, 60, None) == (50, 60)


def test_mp4_decodes_lazily_in_order(tmp_path):
    frames = gradient_frames(12)
    write_mp4(tmp_path / "clip.mp4", frames)
    video = open_video(tmp_path / "clip.mp4")
    assert len(video) == 12 and video.name == "clip"
    decoded = list(video)
    assert len(decoded) == 12 and decoded[0].shape == (48, 64, 3) and decoded[0].dtype == np.uint8
    # lossy codec: close to the source, and frame order preserved (the red ramp shifts by 3 per frame)
    assert np.abs(decoded[5].astype(int) - frames[5].astype(int)).mean() < 6
    assert (
        np.abs(decoded[5].astype(int) - frames[5].astype(int)).mean()
        < np.abs(decoded[5].astype(int) - frames[9].astype(int)).mean()
    )
    small = open_video(tmp_path / "clip.mp4", short_side=24)
    assert next(iter(small)).shape == (24, 32, 3)


def test_long_video_is_not_held_in_memory(tmp_path):
    n = 2000
    frames = gradient_frames(1, 120, 160) * n
    write_mp4(tmp_path / "long.mp4", frames, fps=50)
    video = open_video(tmp_path / "long.mp4")
    assert len(video) == n
    tracemalloc.start()
    count = 0
    for frame in video:
        count += 1
        assert frame.shape == (120, 160, 3)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == n
    all_frames_bytes = n * 120 * 160 * 3
    assert peak < all_frames_bytes / 50  # a handful of frames at most, not the video


def test_frame_folder_natural_sort_and_errors(tmp_path):
    folder = tmp_path / "seq"
    folder.mkdir()
    for i in (10, 2, 1):
        Image.fromarray(np.full((8, 10, 3), i, np.uint8)).save(folder / f"frame{i}.png")
    video = open_video(folder)
    assert [int(f[0, 0, 0]) for f in video] == [1, 2, 10]
    Image.fromarray(np.zeros((9, 10, 3), np.uint8)).save(folder / "frame11.png")
    with pytest.raises(DataError, match=r"video seq: frame 3 is 10x9 but earlier frames are 10x8"):
        list(open_video(folder))


def test_corrupt_and_truncated_inputs_are_named(tmp_path):
    good = tmp_path / "good.jpg"
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(good, quality=95)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(DataError, match=r"cannot decode image .*truncated\.jpg.*corrupt or truncated"):
        read_image(truncated)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video at all" * 100)
    with pytest.raises(DataError, match=r"cannot open video .*garbage\.mp4"):
        open_video(garbage)
    write_mp4(tmp_path / "cut.mp4", gradient_frames(30))
    data = (tmp_path / "cut.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 3])
    with pytest.raises(DataError, match=r"cut\.mp4"):
        list(open_video(tmp_path / "cut.mp4"))
    with pytest.raises(DataError, match="neither a folder of frames nor a video file"):
        (tmp_path / "notes.txt").write_text("x")
        open_video(tmp_path / "notes.txt")


def test_find_videos_and_skip_and_report(tmp_path):
    write_mp4(tmp_path / "b.mp4", gradient_frames(3))
    (tmp_path / "a").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a" / "0.jpg")
    (tmp_path / "bad.mp4").write_bytes(b"junk")
    (tmp_path / "readme.txt").write_text("ignored")
    found = find_videos(tmp_path)
    assert [p.name for p in found] == ["a", "b.mp4", "bad.mp4"]
    report, decoded = SkipReport(), []
    for path in found:
        with skip_bad_input(path.name, report, enabled=True):
            decoded.append(len(list(open_video(path))))
    assert decoded == [1, 3]
    assert [name for name, _ in report.skipped] == ["bad.mp4"]
    assert "bad.mp4" in report.summary()
    with pytest.raises(DataError), skip_bad_input("bad.mp4", SkipReport(), enabled=False):
        open_video(tmp_path / "bad.mp4")
    with pytest.raises(DataError, match="holds no video files"):
        (tmp_path / "empty").mkdir()
        find_videos(tmp_path / "empty")


def test_davis_root_lists_sequences():
    from tests.conftest import shared_data

    root = shared_data("davis2016-dev")
    names = [p.name for p in find_videos(root)]
    assert names == sorted(names) and "blackswan" in names and len(names) == 5
    video = open_video(root / "JPEGImages" / "480p" / "blackswan", short_side=360)
    assert len(video) == 50
    assert next(iter(video)).shape == (360, 641, 3)
