"""TensorBoard event files from TensorBoardLog: the logged scalars read back, resume purging, and the no-op
without the optional package."""

import sys
import time

import pytest
import torch

from autoqvis.train.tensorboard import INSTALL_HINT, TensorBoardLog, tensorboard_available


def _scalars(folder) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


needs_tensorboard = pytest.mark.skipif(
    not tensorboard_available(), reason=f"tensorboard is not installed; {INSTALL_HINT}"
)


@needs_tensorboard
def test_logged_values_read_back_by_tag_and_iteration(tmp_path):
    with TensorBoardLog(tmp_path / "tb") as board:
        assert board.active
        board.log(2, {"total": 1.5, "loss_ce": 0.25, "lr": 2e-5, "note": "skipped"})
        board.log(4, {"total": torch.tensor(0.75), "loss_ce": 0.125, "lr": 1e-5})
    assert not board.active
    board.log(6, {"total": 9.0})  # closed: a no-op
    scalars = _scalars(tmp_path / "tb")
    assert sorted(scalars) == ["loss_ce", "lr", "total"]
    assert scalars["total"] == [(2, 1.5), (4, 0.75)]
    assert scalars["loss_ce"] == [(2, 0.25), (4, 0.125)]
    assert [step for step, _ in scalars["lr"]] == [2, 4]
    assert [v for _, v in scalars["lr"]] == pytest.approx([2e-5, 1e-5], rel=1e-6)  # stored as float32


@needs_tensorboard
def test_resuming_purges_the_steps_logged_after_the_checkpoint(tmp_path):
    with TensorBoardLog(tmp_path) as board:  # an interrupted run: checkpoint at 2, logged up to 3
        for it in (1, 2, 3):
            board.log(it, {"total": float(it)})
    # event files are named by the second they were opened in; a reader orders files of one second by name
    # (".10" before ".9"), which a real resume (minutes later) never meets
    time.sleep(1.05)
    with TensorBoardLog(tmp_path, purge_step=3) as board:  # resumed from the checkpoint at 2
        for it in (3, 4):
            board.log(it, {"total": 10.0 * it})
    assert _scalars(tmp_path)["total"] == [(1, 1.0), (2, 2.0), (3, 30.0), (4, 40.0)]


def test_without_tensorboard_it_is_a_no_op(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # the import now fails
    assert not tensorboard_available()
    with caplog.at_level("INFO", logger="autoqvis.train.tensorboard"):
        board = TensorBoardLog(tmp_path / "tb")
    assert not board.active and INSTALL_HINT in caplog.text
    board.log(1, {"total": 1.0})
    board.flush()
    board.close()
    assert not (tmp_path / "tb").exists()


def test_disabled_writes_nothing(tmp_path):
    board = TensorBoardLog(tmp_path / "tb", enabled=False)
    board.log(1, {"total": 1.0})
    board.close()
    assert not board.active and not (tmp_path / "tb").exists()
