"""runs/paths.py and runs/access.py: what a path is, judged before it is opened; one file list per input."""

from __future__ import annotations

import logging
import os
import socket

import pytest

from autoqvis.errors import DataError
from autoqvis.io.video import FrameFolder, frame_files, image_files, video_identity
from autoqvis.runs.access import file_problem, require_file
from autoqvis.runs.fingerprint import tree_identity
from autoqvis.runs.paths import check_input, check_output, list_files


@pytest.fixture
def odd(tmp_path):
    """A folder holding one of every kind of entry."""
    (tmp_path / "file.jpg").write_bytes(b"x")
    (tmp_path / "dir").mkdir()
    os.mkfifo(tmp_path / "fifo.jpg")
    os.symlink(tmp_path / "missing.jpg", tmp_path / "dangling.jpg")
    os.symlink(tmp_path / "file.jpg", tmp_path / "link.jpg")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock.jpg"))
    sock.close()  # the socket file stays
    return tmp_path


@pytest.mark.parametrize(
    ("name", "kind", "fragment"),
    [
        ("fifo.jpg", "file", "is a FIFO (named pipe), not a file"),
        ("sock.jpg", "file", "is a socket, not a file"),
        ("dangling.jpg", "file", "is a symbolic link to"),
        ("dir", "file", "is a folder; pass a file"),
        ("file.jpg", "dir", "is a file, not a folder"),
        ("fifo.jpg", "dir", "is a FIFO (named pipe), not a folder"),
        ("nope", "file", "not found"),
    ],
)
def test_check_input_refuses_what_it_cannot_read_without_opening_it(odd, name, kind, fragment):
    with pytest.raises(DataError, match="^--x .*" + fragment.replace("(", r"\(").replace(")", r"\)")):
        check_input(odd / name, kind, "--x")


def test_check_input_accepts_files_links_and_folders(odd):
    assert check_input(odd / "file.jpg") == odd / "file.jpg"
    assert check_input(odd / "link.jpg") == odd / "link.jpg"
    assert check_input(odd / "dir", "dir") == odd / "dir"
    assert check_input(odd / "dir", "any") == odd / "dir"


def test_require_file_never_blocks_on_a_fifo(odd):
    assert "FIFO" in file_problem(odd / "fifo.jpg")  # (opening it would wait for a writer forever)
    with pytest.raises(DataError, match=r"frame .*fifo.jpg is a FIFO"):
        require_file(odd / "fifo.jpg", "frame")


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("link.jpg", "is a symbolic link (to"),
        ("dangling.jpg", "is a symbolic link (to"),
        ("fifo.jpg", "is a FIFO (named pipe) where autoqvis writes a file"),
        ("sock.jpg", "is a socket where autoqvis writes a file"),
        ("dir", "is a folder where autoqvis writes a file"),
    ],
)
def test_check_output_never_writes_through_a_link_or_into_a_fifo(odd, name, fragment):
    with pytest.raises(DataError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        check_output(odd / name, "--out")


def test_check_output_accepts_a_new_or_regular_file(odd):
    assert check_output(odd / "file.jpg") == odd / "file.jpg"
    assert check_output(odd / "new.json") == odd / "new.json"


def test_list_files_leaves_out_hidden_entries_and_lists_odd_ones_for_their_reader(odd):
    (odd / ".hidden.jpg").write_bytes(b"x")
    (odd / ".cache").mkdir()
    (odd / ".cache" / "a.jpg").write_bytes(b"x")
    (odd / "dir" / "b.jpg").write_bytes(b"x")
    names = list_files(odd, (".jpg",))
    assert names == sorted(["dangling.jpg", "fifo.jpg", "file.jpg", "link.jpg", "sock.jpg"])
    assert "dir/b.jpg" in list_files(odd, (".jpg",), recursive=True)
    assert not any(".cache" in n or ".hidden" in n for n in list_files(odd, recursive=True))


def test_a_linked_subfolder_is_said_and_an_unreadable_one_refused(tmp_path, caplog, monkeypatch):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "a.png").write_bytes(b"x")
    (tmp_path / "top").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "top" / "linked")
    with caplog.at_level(logging.WARNING, logger="autoqvis"):
        assert list_files(tmp_path / "top", recursive=True) == []
    assert "linked is a symbolic link to a folder: not followed" in caplog.text
    real_scandir = os.scandir

    def refuse(path):
        if str(path).endswith("real"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", refuse)
    with pytest.raises(DataError, match=r"folder .*real cannot be read: permission denied"):
        list_files(tmp_path, recursive=True)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads folders without read permission")
def test_an_unreadable_subfolder_is_refused(tmp_path):
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked").chmod(0)
    try:
        with pytest.raises(DataError, match="cannot be read: permission denied"):
            image_files(tmp_path)
    finally:
        (tmp_path / "locked").chmod(0o755)


def test_a_frame_folder_reader_and_its_identity_see_the_same_files(tmp_path):
    from PIL import Image

    folder = tmp_path / "video"
    folder.mkdir()
    for t in range(3):
        Image.new("RGB", (8, 8), (t, 0, 0)).save(folder / f"{t:05d}.png")
    before = video_identity(folder)
    assert before["files"] == len(FrameFolder(folder).paths) == 3
    # outputs predicted into the video's folder, and hidden files: neither the reader nor the identity
    (folder / "pred").mkdir()
    Image.new("RGB", (8, 8)).save(folder / "pred" / "00000.png")
    (folder / ".thumb.png").write_bytes(b"x")
    assert video_identity(folder) == before
    assert [p.name for p in frame_files(folder)] == [p.name for p in FrameFolder(folder).paths]


def test_discovery_reads_and_identifies_the_same_images(tmp_path):
    from autoqvis.discover.run import image_items, image_source

    (tmp_path / "sub").mkdir()
    (tmp_path / ".hidden").mkdir()
    for path in ("a.png", "sub/b.png", ".hidden/c.png", ".d.png"):
        (tmp_path / path).write_bytes(path.encode())
    names = [item.name for item in image_items(tmp_path)]
    assert names == ["a.png", "sub/b.png"]
    assert image_source(tmp_path)["images"]["files"] == len(names)
    assert tree_identity(tmp_path, (".png",)) == image_source(tmp_path)["images"]
