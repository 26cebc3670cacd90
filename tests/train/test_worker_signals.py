"""Training with data-loader worker processes, ended from outside: SIGTERM to the whole process group ends the
command the SIGTERM way (one line, exit code 143, the checkpoint kept), and after ``kill -9`` of the training
process its workers end at once and leave its output lock free."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autoqvis.runs.lock import LOCK_NAME, output_lock
from tests.conftest import TINY_SETTINGS, set_args

REPO = Path(__file__).resolve().parents[2]
ARGS = set_args(
    TINY_SETTINGS,
    "training.max_iters=1000",
    "training.checkpoint_period=1",
    "training.num_workers=2",
)


def _start(run: Path) -> subprocess.Popen:
    argv = [sys.executable, "-m", "autoqvis", "train", "--out", str(run), "--world", "4", *ARGS]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "COLUMNS": "500"}
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )
    deadline = time.monotonic() + 180
    while not (run / "last.pt").is_file():  # training runs, its workers too
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(proc.communicate()[1])
        time.sleep(0.2)
    return proc


def _workers(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in children.read_text().split()] if children.exists() else []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process groups and /proc: Linux")
@pytest.mark.parametrize(
    ("signum", "code", "line"),
    [
        (signal.SIGTERM, 143, "autoqvis train: terminated (SIGTERM); "),
        (signal.SIGINT, 130, "autoqvis train: interrupted; "),  # Ctrl-C in a terminal reaches the group too
    ],
    ids=["SIGTERM", "SIGINT"],
)
def test_a_signal_to_the_process_group_with_workers(tmp_path, signum, code, line):
    run = tmp_path / "run"
    proc = _start(run)
    try:
        assert len(_workers(proc.pid)) >= 2  # the data-loader workers
        os.killpg(proc.pid, signum)  # as a job scheduler, `kill -- -PGID` or Ctrl-C does
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == code, err
    assert "Traceback" not in err and "internal error" not in err, err
    assert err.strip().splitlines()[-1] == (
        line + "finished work is kept: rerun the same command to continue where it stopped"
    )
    assert (run / "last.pt").is_file() and not (run / LOCK_NAME).exists()


BUSY_WORKERS = """
import sys, time
from pathlib import Path
from autoqvis.train.data import MixingBatchSampler, build_loader
from autoqvis.runs.lock import output_lock

class Slow:  # a clip source whose clips take a minute: the workers are busy when the parent dies
    def __len__(self):
        return 4

    def clip(self, index, seed):
        time.sleep(60)

with output_lock(Path(sys.argv[1]), "--out x", "autoqvis train"):
    batches = iter(build_loader([Slow()], MixingBatchSampler([4], [1.0], 1, 8), num_workers=2))
    print("started", flush=True)
    next(batches)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG and /proc: Linux")
def test_kill_9_leaves_no_worker_holding_the_lock(tmp_path):
    """A training process killed with SIGKILL while its workers are busy: they end at once (not when they next
    look up, or never) and the output lock is free for the next run."""
    lock = tmp_path / LOCK_NAME
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", BUSY_WORKERS, str(lock)], stdout=subprocess.PIPE, text=True, env=env
    )
    workers: list[int] = []
    try:
        assert proc.stdout.readline().strip() == "started"
        deadline = time.monotonic() + 30
        while len(workers) < 2 and time.monotonic() < deadline:
            workers = _workers(proc.pid)
            time.sleep(0.1)
        time.sleep(1)  # the workers are in their clip now
        assert len(workers) == 2
        proc.kill()  # SIGKILL to the training process only: no clean-up runs
        proc.wait(timeout=60)
        deadline = time.monotonic() + 2
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(w) for w in workers), "the workers outlived the killed training process"
    finally:
        for w in workers:
            if _alive(w):
                os.kill(w, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
    with output_lock(lock, "--out x", "test"):  # free: taken over, no OutputInUseError
        pass


def test_workers_do_not_hold_the_parents_lock(tmp_path):
    """In a forked child, the inherited lock descriptors are closed: the lock lives as long as the parent."""
    from autoqvis.runs import lock as lock_module

    path = tmp_path / LOCK_NAME
    with output_lock(path, "--out x", "autoqvis train"):
        (fd,) = lock_module._HELD
        pid = os.fork()
        if pid == 0:  # the child: as a data-loader worker does first
            lock_module.drop_inherited_locks()
            try:
                os.fstat(fd)
            except OSError:
                os._exit(0)  # its copy of the lock's descriptor is closed
            os._exit(1)
        assert os.waitpid(pid, 0)[1] == 0
        os.fstat(fd)  # the parent's is open
