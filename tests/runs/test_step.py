"""runs/step.py: a finished unit is done only while its outputs are as recorded; inputs are checked again at
its end."""

from __future__ import annotations

import json
import logging

import pytest

from autoqvis.errors import DataError, StaleOutputError
from autoqvis.runs.fingerprint import Unit, tree_identity
from autoqvis.runs.step import folder_record, is_done, manifest_changes, open_step, record_changes, step


def _unit(tmp_path):
    return Unit(
        "the test unit", tmp_path / "unit.fingerprint.json", (tmp_path / "out.txt", tmp_path / "parts")
    )


def _make(tmp_path, text="result"):
    (tmp_path / "out.txt").write_text(text)
    (tmp_path / "parts").mkdir(exist_ok=True)
    (tmp_path / "parts" / "a.bin").write_bytes(b"a" * 10)


def test_a_finished_unit_is_done_until_an_output_is_deleted_or_changed(tmp_path, caplog):
    unit = _unit(tmp_path)
    with step(unit, {"x": 1}) as s:
        assert not s.resumed and not s.done
        _make(tmp_path)
    recorded = json.loads(unit.fingerprint_file.read_text())["done"]
    assert sorted(recorded) == ["out.txt", "parts/a.bin"]
    with step(unit, {"x": 1}) as s:
        assert s.resumed and s.done
    assert manifest_changes(unit) == []
    # the same size, other bytes: seen by the digest
    (tmp_path / "parts" / "a.bin").write_bytes(b"b" * 10)
    with caplog.at_level(logging.WARNING, logger="autoqvis"), step(unit, {"x": 1}) as s:
        assert s.resumed and not s.done
        assert not (tmp_path / "parts" / "a.bin").exists()  # removed, to be made again
        assert (tmp_path / "out.txt").exists()  # what is intact stays
        _make(tmp_path)
    assert "a.bin deleted or changed since it was made; making it again" in caplog.text
    (tmp_path / "out.txt").unlink()
    assert not is_done(unit)
    assert manifest_changes(unit) == [tmp_path / "out.txt"]


def test_a_unit_without_a_record_asks_finished(tmp_path):
    unit = _unit(tmp_path)
    s = open_step(unit, {"x": 1}, finished=lambda: True)
    assert not s.done  # nothing there: started fresh
    _make(tmp_path)
    assert open_step(unit, {"x": 1}, finished=lambda: True).done  # an older autoqvis's finished unit
    assert not open_step(unit, {"x": 1}, finished=lambda: False).done  # interrupted


def test_other_settings_still_stop(tmp_path):
    unit = _unit(tmp_path)
    with step(unit, {"x": 1}):
        _make(tmp_path)
    with pytest.raises(StaleOutputError, match="x 1 -> 2"), step(unit, {"x": 2}):
        pass
    with step(unit, {"x": 2}, resume=False) as s:  # --no-resume: starts over
        assert not s.resumed and not (tmp_path / "out.txt").exists()


def test_an_input_changed_while_the_unit_ran_is_refused_and_not_marked_done(tmp_path):
    source = tmp_path / "input.txt"
    source.write_text("old")
    unit = _unit(tmp_path)
    fingerprint = lambda: {"input": tree_identity(source)}  # noqa: E731
    changed = pytest.raises(DataError, match="an input of the test unit changed while it was being made")
    with changed, step(unit, fingerprint(), recheck=fingerprint):
        _make(tmp_path)
        source.write_text("new, longer")  # replaced while the unit reads it
    assert not unit.fingerprint_file.exists() and not (tmp_path / "out.txt").exists()
    assert source.read_text() == "new, longer"  # inputs are never touched
    with step(unit, fingerprint(), recheck=fingerprint) as s:  # the rerun makes it from the input as it is
        assert not s.done
        _make(tmp_path)
    assert open_step(unit, fingerprint()).done


def test_a_folder_record_names_what_changed(tmp_path):
    (tmp_path / "00000.jpg").write_bytes(b"frame")
    (tmp_path / ".done").write_text("{}")
    recorded = folder_record(tmp_path)
    assert list(recorded) == ["00000.jpg"]
    assert record_changes(tmp_path, recorded) == []
    (tmp_path / "00000.jpg").write_bytes(b"junk!")
    assert record_changes(tmp_path, recorded) == ["00000.jpg"]
    (tmp_path / "00000.jpg").unlink()
    assert record_changes(tmp_path, recorded) == ["00000.jpg"]


def test_the_record_follows_a_copied_run_folder(tmp_path):
    import shutil

    run = tmp_path / "run"
    run.mkdir()
    unit = Unit("the test unit", run / "fingerprints" / "a.json", (run / "results" / "a.json",))
    with step(unit, {"x": 1}):
        (run / "results").mkdir()
        (run / "results" / "a.json").write_text("[]")
    shutil.copytree(run, tmp_path / "copy")
    copied = Unit(
        "the test unit",
        tmp_path / "copy" / "fingerprints" / "a.json",
        (tmp_path / "copy" / "results" / "a.json",),
    )
    assert is_done(copied)
    (tmp_path / "copy" / "results" / "a.json").unlink()  # the copy's own file, not the original's
    assert not is_done(copied) and is_done(unit)


def test_an_output_that_is_a_link_or_a_fifo_is_refused_before_anything_is_written(tmp_path):
    import os

    users = tmp_path / "users.txt"
    users.write_text("keep")
    os.symlink(users, tmp_path / "out.txt")
    with pytest.raises(DataError, match=r"out.txt \(the test unit\) is a symbolic link"):
        open_step(_unit(tmp_path), {"x": 1})
    assert users.read_text() == "keep" and not (tmp_path / "unit.fingerprint.json").exists()
    (tmp_path / "out.txt").unlink()
    os.mkfifo(tmp_path / "out.txt")
    with pytest.raises(DataError, match="is a FIFO"):
        open_step(_unit(tmp_path), {"x": 1})
