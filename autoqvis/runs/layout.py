"""The run-folder layout: every file and folder name a command writes into its ``--out``, in one place.

A self-training run (``autoqvis selftrain --out RUN``)::

    RUN/videos.json, RUN/frames/            the unlabeled videos' frame cache (videos.fingerprint.json)
    RUN/discovery/                          MaskCut on --synthetic-images (when given)
    RUN/m0/model/                           M0 (round 0)
    RUN/round_k/predictions/<video>.json    the previous model's raw tracks on the unlabeled videos
                                            (round_k/predictions.fingerprint.json)
    RUN/round_k/pseudo_labels.json          the fused labels of round k
    RUN/round_k/selection.json              what the selection kept (selection.fingerprint.json)
    RUN/round_k/training_set.json           the labelled frames round k trains on
    RUN/round_k/model/                      the model of round k
    RUN/round_k/model_predictions/          the last model's tracks (label-free pick)
    RUN/<stage>/metrics.json                a model's scores on the validation set (metrics.fingerprint.json)
    RUN/label_free.json                     every label-free criterion per model and unlabeled video
    RUN/holdout_teacher.json                MaskCut's masks of the held-out videos (the teacher criterion)
    RUN/pool_teacher.json                   MaskCut's masks of the other videos (selection.min_teacher_iou)
    RUN/summary.json, RUN/best.json         every model's scores; the model to use

A training run (``autoqvis train --out RUN``): ``RUN/model/`` (the finished model), ``RUN/last.pt`` (the
resumable checkpoint), ``RUN/metrics.jsonl`` and ``RUN/fingerprint.json``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BEST",
    "MODEL_DIR",
    "MODEL_FILE",
    "STAGE0",
    "SUMMARY",
    "TRAIN_METRICS",
    "VIDEOS",
    "VIDEOS_FINGERPRINT",
    "WORLD_GT",
    "WORLD_STILLS",
    "WORLD_TEST",
    "WORLD_UNLABELED",
    "DemoLayout",
    "SelfTrainLayout",
    "fingerprint_beside",
    "run_relative",
]

MODEL_DIR = "model"  # a training run's finished model folder
MODEL_FILE = "model.json"  # marks a folder as a model folder
TRAIN_METRICS = "metrics.jsonl"
STAGE0 = "m0"
BEST = "best.json"
SUMMARY = "summary.json"
VIDEOS = "videos.json"
VIDEOS_FINGERPRINT = "videos.fingerprint.json"


def fingerprint_beside(path: Path) -> Path:
    """The fingerprint file of an output named ``path`` (a file or a folder): ``<name>.fingerprint.json``
    beside it (``.json`` names drop their suffix: ``selection.json`` -> ``selection.fingerprint.json``)."""
    path = Path(path)
    stem = path.stem if path.suffix == ".json" else path.name
    return path.with_name(stem + ".fingerprint.json")


def run_relative(path: Path, root: Path | None) -> str:
    """``path`` relative to the run folder ``root`` (POSIX) when it lies inside it, else as given (absolute):
    what a run's own files (``best.json``, ``summary.json``) record, so that a copied run names its own."""
    if root is not None:
        inside = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
        if inside != ".." and not inside.startswith(".." + os.sep):
            return Path(inside).as_posix()
        return os.path.abspath(path)
    return str(path)


@dataclass(frozen=True)
class SelfTrainLayout:
    """Paths inside a self-training run folder; round 0 is M0."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    def stage(self, k: int) -> Path:
        """The folder of round ``k`` (``m0`` for k = 0)."""
        return self.root / (STAGE0 if k == 0 else f"round_{k}")

    def model(self, k: int) -> Path:
        return self.stage(k) / MODEL_DIR

    def predictions(self, k: int) -> Path:
        """Round ``k``'s input: the previous model's raw tracks, one ``<video id>.json`` each."""
        return self.stage(k) / "predictions"

    def model_predictions(self, k: int) -> Path:
        return self.stage(k) / "model_predictions"

    def pseudo_labels(self, k: int) -> Path:
        return self.stage(k) / "pseudo_labels.json"

    def selection(self, k: int) -> Path:
        return self.stage(k) / "selection.json"

    def training_set(self, k: int) -> Path:
        return self.stage(k) / "training_set.json"

    def scores(self, folder: Path) -> Path:
        """A model's cached scores on the validation set, in the folder beside (above) the model folder."""
        return Path(folder) / "metrics.json"

    @property
    def best(self) -> Path:
        return self.root / BEST

    @property
    def summary(self) -> Path:
        return self.root / SUMMARY

    @property
    def label_free(self) -> Path:
        """Every label-free criterion per model and unlabeled video (what the pick compares)."""
        return self.root / "label_free.json"

    @property
    def holdout_teacher(self) -> Path:
        """MaskCut's masks of the held-out videos' teacher frames (the teacher criterion's cache)."""
        return self.root / "holdout_teacher.json"

    @property
    def pool_teacher(self) -> Path:
        """MaskCut's masks of the pseudo-labelled videos' teacher frames (``selection.min_teacher_iou``)."""
        return self.root / "pool_teacher.json"

    @property
    def videos(self) -> Path:
        return self.root / VIDEOS

    @property
    def videos_fingerprint(self) -> Path:
        return self.root / VIDEOS_FINGERPRINT

    @property
    def frames(self) -> Path:
        return self.root / "frames"

    @property
    def discovery(self) -> Path:
        return self.root / "discovery"


# the generated world's folder (``OUT/data``): what make_world writes into it
WORLD_STILLS, WORLD_UNLABELED, WORLD_TEST, WORLD_GT = "stills", "unlabeled", "test", "test_gt.json"


@dataclass(frozen=True)
class DemoLayout:
    """Paths inside a demo folder (``autoqvis demo --out OUT``, and the demo-world studies in bench/)::

    OUT/data/{stills,unlabeled,test}/, OUT/data/test_gt.json   the generated world (and its fingerprint.json)
    OUT/discovery/                     MaskCut on the stills (or your videos' frames)
    OUT/synthetic_previews/            ImageCut2Video previews
    OUT/selftrain/                     the self-training run (a SelfTrainLayout)
    OUT/ablation_confidence/           the confidence-only ablation's rounds, from the same M0
    OUT/results.json, OUT/report.html  every model's scores; the report
    """

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def stills(self) -> Path:
        return self.data / WORLD_STILLS

    @property
    def unlabeled(self) -> Path:
        return self.data / WORLD_UNLABELED

    @property
    def test(self) -> Path:
        return self.data / WORLD_TEST

    @property
    def test_gt(self) -> Path:
        return self.data / WORLD_GT

    @property
    def discovery(self) -> Path:
        return self.root / "discovery"

    @property
    def synthetic_previews(self) -> Path:
        return self.root / "synthetic_previews"

    @property
    def selftrain(self) -> SelfTrainLayout:
        return SelfTrainLayout(self.root / "selftrain")

    @property
    def ablation(self) -> SelfTrainLayout:
        return SelfTrainLayout(self.root / "ablation_confidence")

    @property
    def results(self) -> Path:
        return self.root / "results.json"
