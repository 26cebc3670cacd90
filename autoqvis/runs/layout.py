"""The run-folder layout: every file and folder name a command writes into its ``--out``, in one place.

A self-training run (``autoqvis selftrain --out RUN``)::

    RUN/videos.json, RUN/frames/            the unlabeled videos' frame cache
    RUN/discovery/                          MaskCut on --synthetic-images (when given)
    RUN/m0/model/                           M0 (round 0)
    RUN/round_k/predictions/<video>.json    the previous model's raw tracks on the unlabeled videos
    RUN/round_k/pseudo_labels.json          the fused labels of round k
    RUN/round_k/selection.json              what the selection kept
    RUN/round_k/training_set.json           the labelled frames round k trains on
    RUN/round_k/model/                      the model of round k
    RUN/round_k/model_predictions/          the last model's tracks (label-free pick)
    RUN/summary.json, RUN/best.json         every model's scores; the model to use

A training run (``autoqvis train --out RUN``): ``RUN/model/`` (the finished model), ``RUN/last.pt`` (the
resumable checkpoint), ``RUN/metrics.jsonl`` and ``RUN/fingerprint.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["MODEL_DIR", "MODEL_FILE", "TRAIN_METRICS", "SelfTrainLayout"]

MODEL_DIR = "model"  # a training run's finished model folder
MODEL_FILE = "model.json"  # marks a folder as a model folder
TRAIN_METRICS = "metrics.jsonl"


@dataclass(frozen=True)
class SelfTrainLayout:
    """Paths inside a self-training run folder; round 0 is M0."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    def stage(self, k: int) -> Path:
        """The folder of round ``k`` (``m0`` for k = 0)."""
        return self.root / ("m0" if k == 0 else f"round_{k}")

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

    @property
    def best(self) -> Path:
        return self.root / "best.json"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def videos(self) -> Path:
        return self.root / "videos.json"

    @property
    def frames(self) -> Path:
        return self.root / "frames"

    @property
    def discovery(self) -> Path:
        return self.root / "discovery"
