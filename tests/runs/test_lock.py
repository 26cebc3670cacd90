"""runs/lock.py and runs/outputs.py: the lock is never written through a link, never blocks on a FIFO, and
holds the output folder even when its file is deleted; an --out holding another kind of output is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from autoqvis.errors import DataError, OutputInUseError
from autoqvis.runs.lock import LOCK_NAME, output_lock
from autoqvis.runs.outputs import claim_output, folder_owner

REPO = Path(__file__).resolve().parents[2]


def test_a_lock_that_is_a_link_is_refused_and_its_target_kept(tmp_path):
    target = tmp_path / "users_file.txt"
    target.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(target, out / LOCK_NAME)
    with pytest.raises(DataError, match=r"the lock file .* is a symbolic link"), claim_output(out, "predict"):
        pass
    assert target.read_text() == "precious"
    assert (out / LOCK_NAME).is_symlink()


def test_a_lock_that_is_a_fifo_is_refused_without_blocking(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / LOCK_NAME)
    with pytest.raises(DataError, match="is a FIFO"), output_lock(out / LOCK_NAME, "--out out", "autoqvis x"):
        pass


HOLD = """
import sys, time
from pathlib import Path
from autoqvis.runs.outputs import claim_output
with claim_output(Path(sys.argv[1]), "evaluate"):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_deleting_a_running_commands_lock_does_not_let_a_second_writer_in(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        (out / LOCK_NAME).unlink()  # a user cleaning up
        busy = pytest.raises(OutputInUseError, match="is being written by another autoqvis process")
        with busy, claim_output(out, "evaluate"):
            pass
    finally:
        holder.kill()
        holder.wait()
    with claim_output(out, "evaluate"):  # the holder is gone: the folder is free again
        assert json.loads((out / LOCK_NAME).read_text())["pid"] == os.getpid()


@pytest.mark.parametrize(
    ("files", "what"),
    [
        (["model.json", "model.safetensors"], "a model folder"),
        (["JPEGImages/x/00000.jpg"], "a DAVIS dataset"),
        (["00000.jpg"], "video frames or images"),
        (["p.fingerprint.json"], "a discovery output"),
    ],
)
def test_an_out_holding_another_kind_of_output_is_refused(tmp_path, files, what):
    out = tmp_path / "out"
    for name in files:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(json.dumps({"unit": "the discovery run", "fingerprint": {}}))
    assert folder_owner(out)[0].startswith(what)
    refused = pytest.raises(OutputInUseError, match=rf"--out {out} holds {what}.*Pass another --out")
    with refused, claim_output(out, "predict"):
        pass
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == sorted(files)


def test_an_output_file_that_is_a_link_is_refused(tmp_path):
    target = tmp_path / "users.json"
    target.write_text("{}")
    os.symlink(target, tmp_path / "p.json")
    with (
        pytest.raises(DataError, match="is a symbolic link"),
        claim_output(tmp_path / "p.json", "discover", file=True),
    ):
        pass
    assert target.read_text() == "{}"


def test_an_output_files_lock_removed_while_held_is_said(tmp_path, caplog):
    lock = tmp_path / ".p.json.lock"
    with (
        caplog.at_level("WARNING", logger="autoqvis"),
        output_lock(lock, "--out p.json", "autoqvis discover"),
    ):
        lock.unlink()
    assert "was removed (or replaced) while this command held it" in caplog.text
