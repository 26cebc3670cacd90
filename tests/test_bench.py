"""bench/ as a suite: every script is listed in bench/README.md and starts (``--help``); the small ones run on a
tiny input and write a results file that :mod:`autoqvis.benchmark` prints; no script edits ``sys.path`` or
reaches into a private name of the package; a DAVIS seed's scores never outlive the settings they were made
under (:func:`autoqvis.evaluate.davis_bench.scored_record`).

The scripts run in one Python process (``runpy``, as ``__main__``, with the repository on PYTHONPATH only: a
script that needs its own folder on ``sys.path`` fails here), so that torch is imported once.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from autoqvis.benchmark import main as print_main
from autoqvis.evaluate.davis_bench import scored_record
from autoqvis.paths import weights_dir

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
SCRIPTS = sorted(p.relative_to(REPO).as_posix() for p in BENCH.rglob("*.py"))

# the small ones on a tiny input: (script, arguments after --out, the figures the record must hold)
TINY = {
    "bench/speed/eval_speed.py": (
        ["--videos", "3", "--frames", "4", "--height", "360", "--width", "640", "--baseline-videos", "1"],
        ["end_to_end_s", "in_memory_s", "official_iou_rule_s", "official_rule_over_ours"],
    ),
    "bench/speed/model_speed.py": (  # the training part is train_speed's (a Trainer step) below
        [
            "--eval-preset",
            "tiny",
            "--frames",
            "2",
            "--height",
            "64",
            "--width",
            "96",
            "--runs",
            "1",
            "--skip-train",
            "--threads",
            "1",
        ],
        ["eval"],
    ),
    "bench/speed/maskcut_speed.py": (
        ["--arch", "dino_vits8", "--size", "96", "--images", "1"],
        ["vit_forward_s_per_image", "one_cut_arpack_s", "one_cut_dense_s", "maskcut_s_per_image"],
    ),
    "bench/speed/train_speed.py": (["--models", "small", "--iters", "1", "--threads", "1"], ["models"]),
    "bench/speed/long_video.py": (
        ["--height", "48", "--width", "64", "--lengths", "4", "--window", "4", "--threads", "1"],
        ["lengths", "peak_rss_longest_over_shortest"],
    ),
}
DINOV2 = weights_dir() / "dinov2_vits14_imgfocus.safetensors"
DAVIS = REPO.parent / "shared" / "data" / "davis2016-dev"
if DINOV2.is_file() and DAVIS.is_dir():  # the imported weights are in the cache: the real-data check runs too
    TINY["bench/studies/maskcut_davis.py"] = (
        ["--max-sequences", "1", "--every", "40", "--fixed-size", "112"],
        ["images_per_s", "first_mask_iou"],
    )

DRIVER = r"""
import contextlib, io, json, runpy, sys, traceback
jobs, out = json.loads(sys.argv[1]), {}
for key, argv in jobs:
    sys.argv, buffer, code = argv, io.StringIO(), 0
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        try:
            runpy.run_path(argv[0], run_name="__main__")
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if not isinstance(e.code, int | None):
                print(e.code)
        except BaseException:
            traceback.print_exc()
            code = 1
    out[key] = [code, buffer.getvalue()[-6000:]]
print("RESULTS " + json.dumps(out))
"""


def run_scripts(jobs: list[tuple[str, list[str]]], cwd: Path) -> dict[str, tuple[int, str]]:
    """Each job (key, [script, args...]) run as ``__main__`` in one fresh interpreter: key -> (exit, output)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, json.dumps(jobs)], cwd=cwd, env=env, capture_output=True, text=True
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULTS ")), None)
    assert line is not None, (
        f"the driver ended without results (exit {done.returncode}): {done.stderr[-3000:]}"
    )
    return {k: tuple(v) for k, v in json.loads(line.removeprefix("RESULTS ")).items()}


@pytest.fixture(scope="module")
def helps(tmp_path_factory) -> dict[str, tuple[int, str]]:
    jobs = [(s, [str(REPO / s), "--help"]) for s in SCRIPTS]
    return run_scripts(jobs, tmp_path_factory.mktemp("help"))


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory) -> tuple[Path, dict[str, tuple[int, str]]]:
    out = tmp_path_factory.mktemp("bench")
    jobs = [(s, [str(REPO / s), "--out", str(out), *args]) for s, (args, _) in TINY.items()]
    tune, test = ranking_scores(out / "tune.json", 0), ranking_scores(out / "test.json", 1)
    ranking = ["bench/studies/ranking_study.py", "--out", str(out), "--tune", str(tune), "--test", str(test)]
    labels = [
        "bench/studies/pseudo_label_quality.py",
        "--out",
        str(out),
        str(demo_run_with_true_labels(out / "demo")),
    ]
    for key, argv in (("ranking_study", ranking), ("pseudo_label_quality", labels)):
        jobs.append((key, [str(REPO / argv[0]), *argv[1:]]))
    return out, run_scripts(jobs, out)


# ---------------------------------------------------------------------------------------------------
# the index and the suite's layout


def test_every_script_is_a_speed_measurement_or_a_study_and_is_listed():
    assert SCRIPTS, "no script under bench/"
    readme, docs = (BENCH / "README.md").read_text(), (REPO / "docs" / "benchmarks.md").read_text()
    for script in SCRIPTS:
        assert script.split("/")[1] in ("speed", "studies"), (
            f"{script}: expected under bench/speed or bench/studies"
        )
        assert f"`{script}" in readme, f"bench/README.md does not list {script}"
        assert script in docs, f"docs/benchmarks.md does not describe {script}"


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_starts(helps, script):
    code, output = helps[script]
    assert code == 0, f"{script} --help exited {code}: {output}"
    assert output.startswith("usage:") and "--out" in output, output


# ---------------------------------------------------------------------------------------------------
# no private names, no sys.path


def violations(source: str) -> list[str]:
    """``sys.path`` anywhere; a ``_name`` imported from autoqvis; any ``x._name`` attribute (dunders aside)."""
    found = [f"line {i}: sys.path" for i, line in enumerate(source.splitlines(), 1) if "sys.path" in line]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("autoqvis"):
            found += [f"line {node.lineno}: imports {a.name}" for a in node.names if a.name.startswith("_")]
        elif isinstance(node, ast.Import):
            found += [
                f"line {node.lineno}: imports {a.name}" for a in node.names if re.search(r"\._", a.name)
            ]
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            found.append(f"line {node.lineno}: .{node.attr}")
    return found


def test_the_private_name_check_finds_them():
    bad = "import sys\nsys.path.insert(0, 'x')\nfrom autoqvis.selftrain.loop import _read_tracks\ntrainer._autocast()\n"
    assert len(violations(bad)) == 3
    assert violations("from autoqvis.benchmark import write_results\nx.__dict__\ntrainer.autocast()\n") == []


@pytest.mark.parametrize("script", SCRIPTS)
def test_no_private_names_and_no_sys_path(script):
    assert violations((REPO / script).read_text()) == []


# ---------------------------------------------------------------------------------------------------
# the small ones on a tiny input


def ranking_scores(path: Path, seed: int) -> Path:
    """A scores file as bench/studies/davis.py keeps it: per sequence, every track's features and J&F."""
    import numpy as np

    rng = np.random.default_rng(seed)
    data = {}
    for q in range(4):
        tracks = []
        for _ in range(5):
            f = dict(
                zip(
                    ("score", "quality", "persistence", "area", "centre"), rng.random(5).tolist(), strict=True
                )
            )
            tracks.append(f | {"borders": float(rng.integers(0, 5)), "J&F": float(rng.random())})
        data[f"seq{q}"] = {"tracks": tracks}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def demo_run_with_true_labels(run: Path) -> Path:
    """A quick demo run whose round 1 pseudo-labels are the unlabeled videos' true tracks (precision 1)."""
    import dataclasses

    from autoqvis.demo.pipeline import DemoPlan, truth_dataset
    from autoqvis.demo.truth import unlabeled_truth
    from autoqvis.io.ytvis import save_ytvis
    from autoqvis.runs.layout import SelfTrainLayout

    plan = dataclasses.replace(DemoPlan.quick(), unlabeled_videos=2)
    run.mkdir(parents=True, exist_ok=True)
    (run / "results.json").write_text(json.dumps({"plan": dataclasses.asdict(plan), "seed": 3}))
    save_ytvis(
        truth_dataset(unlabeled_truth(plan, 3), "video"), SelfTrainLayout(run / "selftrain").pseudo_labels(1)
    )
    return run


@pytest.mark.parametrize("script", sorted(TINY))
def test_small_scripts_write_a_results_file(tiny_runs, script, capsys):
    out, results = tiny_runs
    code, output = results[script]
    assert code == 0, f"{script} exited {code}: {output}"
    name = Path(script).stem
    record = json.loads((out / f"{name}.json").read_text())
    assert record["benchmark"] == name and script in record["command"]
    assert record["hardware"].startswith(("cpu", "cuda")) and "torch" in record["hardware"]
    for key in TINY[script][1]:
        assert key in record["figures"], f"{script}: {key} missing from {sorted(record['figures'])}"
    assert print_main([str(out / f"{name}.json")]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith(f"# {name}: python ") and printed[1].startswith("# commit ")
    assert any(line.startswith(TINY[script][1][0]) for line in printed[2:]), printed


def test_ranking_study_puts_the_oracle_on_the_best_track(tiny_runs):
    out, results = tiny_runs
    assert results["ranking_study"][0] == 0, results["ranking_study"][1]
    figures = json.loads((out / "ranking_study.json").read_text())["figures"]
    test = json.loads((out / "test.json").read_text())
    best = sum(max(t["J&F"] for t in v["tracks"]) for v in test.values()) / len(test)
    assert figures["test"]["oracle (best track)"] == pytest.approx(best)
    assert figures["test"]["class"] <= best and figures["tune_sequences"] == 4


def test_pseudo_label_quality_of_the_true_tracks_is_one(tiny_runs):
    out, results = tiny_runs
    assert results["pseudo_label_quality"][0] == 0, results["pseudo_label_quality"][1]
    row = json.loads((out / "pseudo_label_quality.json").read_text())["figures"]["quality-guided, round 1"]
    assert row["selected_frames"] > 0
    assert row["mean_iou"] == pytest.approx(1.0) and row["share_iou_over_half"] == 1.0


# ---------------------------------------------------------------------------------------------------
# scores and the settings they were made under (bench/studies/davis.py --rescore)


def test_a_plain_run_after_a_rescore_never_reports_the_rescored_numbers(tmp_path):
    path = tmp_path / "seed_0" / "bench.json"
    old, new = (
        {"inference": {"track_score": "class"}, "best_of": 5},
        {"inference": {"track_score": "main"}, "best_of": 5},
    )

    def scorer(settings):
        def score_again(record):
            return record | {"J&F": settings["inference"]["track_score"]}

        return score_again

    def never(*_):
        raise AssertionError("not expected here")

    record, how = scored_record(path, old, run=lambda: {"J&F": "class"}, score_again=never)
    assert how == "run" and record["scored_with"] == old
    assert scored_record(path, old, run=never, score_again=never) == (record, "reused")
    # --rescore under other inference settings: scores and their settings are written together
    record, how = scored_record(path, new, run=never, score_again=scorer(new), rescore=True)
    assert (how, record["J&F"]) == ("rescored", "main")
    assert json.loads(path.read_text())["scored_with"] == new
    # the next plain run under the old settings scores again instead of reporting the rescored numbers
    record, how = scored_record(path, old, run=never, score_again=scorer(old))
    assert (how, record["J&F"], record["scored_with"]) == ("rescored", "class", old)
    # a record without its settings (written before they were kept) is never trusted
    path.write_text(json.dumps({"J&F": "main"}))
    assert scored_record(path, old, run=never, score_again=scorer(old))[0]["J&F"] == "class"


def test_davis_settings_allow_a_rescore_to_change_the_inference_settings_only(tmp_path):
    import argparse
    import dataclasses
    import importlib.util

    from autoqvis.config import load_config

    spec = importlib.util.spec_from_file_location("bench_davis", REPO / "bench" / "studies" / "davis.py")
    davis = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(davis)
    cfg = load_config(["small_data"])
    ranked = dataclasses.replace(cfg, inference=dataclasses.replace(cfg.inference, track_score="quality"))
    longer = dataclasses.replace(cfg, rounds=dataclasses.replace(cfg.rounds, iters=cfg.rounds.iters + 1))

    def args(rescore: bool) -> argparse.Namespace:
        return argparse.Namespace(
            out=tmp_path,
            root=tmp_path,
            train_root=tmp_path,
            pool="scored",
            every=3,
            best_of=5,
            rescore=rescore,
        )

    davis.check_same_settings(args(False), cfg)
    written = (tmp_path / "settings.json").read_text()
    davis.check_same_settings(args(False), cfg)  # the same settings: the run goes on
    with pytest.raises(SystemExit, match=r"config\.inference.*--rescore"):
        davis.check_same_settings(args(False), ranked)
    davis.check_same_settings(args(True), ranked)  # a rescore may change how the kept tracks are scored ...
    assert (tmp_path / "settings.json").read_text() == written  # ... and keeps what the models were made with
    with pytest.raises(SystemExit, match=r"config\.rounds"):
        davis.check_same_settings(args(True), longer)  # ... but not how they were trained


@pytest.mark.parametrize("doc", ["bench/README.md", "docs/benchmarks.md"])
def test_documented_commands_use_real_flags(helps, doc):
    text = re.sub(r"\\\n\s*", " ", (REPO / doc).read_text())  # "\" continuations joined
    commands = re.findall(r"python (bench/\S+\.py)([^`\n|#]*)", text)
    assert {script for script, _ in commands} == set(SCRIPTS), f"{doc}: a script without its command"
    for script, rest in commands:
        known = set(re.findall(r"--[a-z][a-z0-9-]*", helps[script][1]))
        unknown = [f for f in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", rest) if f not in known]
        assert not unknown, f"{doc}: {script} has no {unknown} (in {rest.strip()!r})"


# ---------------------------------------------------------------------------------------------------
# label precision on real footage (bench/studies/label_precision.py --davis-root)


def test_label_precision_on_a_davis_pool_scores_labels_against_the_annotated_object(tmp_path):
    """A davis.py seed whose M0 put forward the true object and a patch of background in every frame: the
    official selection keeps both (half the labels on the object, half on background); agreeing with the
    teacher, whose cuts are the true masks, keeps the object only."""
    import numpy as np

    from autoqvis import rle
    from autoqvis.evaluate.davis_bench import truth
    from autoqvis.io.tracks import write_tracks
    from autoqvis.runs.layout import SelfTrainLayout
    from autoqvis.selftrain.videos import cache_videos
    from autoqvis.structures import Track

    if not DAVIS.is_dir():
        pytest.skip("shared DAVIS data not found")
    root = tmp_path / "pool"
    for part, ext in (("JPEGImages", "jpg"), ("Annotations", "png")):
        (root / part / "480p" / "dog").mkdir(parents=True)
        for t in range(6):
            shutil.copy(DAVIS / part / "480p" / "dog" / f"{t:05d}.{ext}", root / part / "480p" / "dog")
    run = tmp_path / "davis_run"
    videos, _ = cache_videos([root / "JPEGImages" / "480p" / "dog"], run / "videos", None)
    gt = truth(root)["dog"]
    corner = np.zeros_like(gt[0])
    corner[:30, :30] = True
    tracks = [
        Track(masks=[rle.encode(m) for m in gt], score=0.9, predicted_iou=[0.9] * 6),
        Track(masks=[rle.encode(corner)] * 6, score=0.8, predicted_iou=[0.9] * 6),
    ]
    write_tracks(SelfTrainLayout(run / "seed_0").predictions(1) / f"{videos.videos[0].id}.json", tracks)
    images = [{"id": t, "file_name": f"dog/{t:05d}.jpg"} for t in (0, 3)]
    cuts = [{"image_id": t, "segmentation": rle.encode(gt[t])} for t in (0, 3)]
    cache = tmp_path / "discovery" / "pool"
    cache.mkdir(parents=True)
    (cache / "maskcut_every3.json").write_text(json.dumps({"images": images, "annotations": cuts}))
    (cache / "maskcut_every3.fingerprint.json").write_text("{}")  # beside the cuts, as davis.py writes it
    argv = [str(run / "seed_0"), "--davis-root", str(root), "--discovery-cache", str(tmp_path / "discovery")]
    job = [str(REPO / "bench/studies/label_precision.py"), "--out", str(tmp_path), *argv]
    code, output = run_scripts([("labels", job)], tmp_path)["labels"]
    assert code == 0, output
    figures = json.loads((tmp_path / "label_precision.json").read_text())["figures"]["pooled over seeds"]
    assert figures["official"]["precision"] == 0.5 and figures["official"]["background"] == 0.5
    assert figures["teacher_iou 0.5"]["precision"] == 1.0 and figures["teacher_iou 0.5"]["background"] == 0.0
    assert figures["teacher_iou 0.5"]["kept_of_official"] == 0.5


def test_headroom_is_the_ceiling_minus_synthetic_only_paired_by_seed(tmp_path):
    """Two fabricated davis.py runs: the headroom, with and without the CRF, per seed and paired."""

    def seed(m0: float, synthetic: float, ceiling: float, plain: bool = True) -> dict:
        def scores(v: float) -> dict:
            row = {"J&F": v} | ({"no_crf": {"J&F": v - 0.1}} if plain else {})
            return {"a": row, "b": row}

        models = {"M0 (synthetic only)": scores(m0), "synthetic only": scores(synthetic)}
        return {"models": models | {"supervised ceiling (true masks)": scores(ceiling)}, "seconds": {"x": 60}}

    runs = []
    for name, side, seeds in (
        ("small", 160, [seed(0.6, 0.61, 0.62), seed(0.5, 0.5, 0.54)]),
        ("big", 224, [seed(0.6, 0.6, 0.7, plain=False)]),
    ):
        run = tmp_path / name
        for i, record in enumerate(seeds):
            (run / f"seed_{i}").mkdir(parents=True)
            (run / f"seed_{i}" / "bench.json").write_text(json.dumps(record))
        config = {
            "inference": {"short_side": side},
            "training": {"max_iters": 1000},
            "rounds": {"iters": 500},
        }
        (run / "settings.json").write_text(json.dumps({"config": config}))
        runs.append(str(run))
    job = [str(REPO / "bench/studies/headroom.py"), "--out", str(tmp_path), *runs]
    code, output = run_scripts([("headroom", job)], tmp_path)["headroom"]
    assert code == 0, output
    figures = json.loads((tmp_path / "headroom.json").read_text())["figures"]
    small = figures["small"]["crf"]["supervised ceiling (true masks) - synthetic only"]
    assert small["mean"] == pytest.approx(2.5) and small["per_seed"] == pytest.approx([1.0, 4.0])
    assert figures["small"]["no_crf"]["M0 (synthetic only)"]["mean"] == pytest.approx(45.0)
    assert figures["big"]["differs_from_first"] == {"inference.short_side": 224}
    assert "no_crf" not in figures["big"]  # scored before the unrefined top track was kept
