"""The AutoQ-VIS self-training loop on the user's unlabeled videos, one readable function per stage.

    run = SelfTrainRun(cfg, out, videos, synthetic, device)
    m0 = run.initial_stage(init)                    # S3: VIS model + quality head on synthetic clips
    for k in 1..K:
        predictions = run.pseudo_label(k, model)    # current model on every unlabeled video
        labels, stats = run.select_and_fuse(k, predictions, previous_labels)
        model = run.retrain(k, labels, init=m0)     # head frozen, DropLoss, 50/50 real/synthetic

Everything a round produces lives in ``round_k/``: ``predictions/<video>.json`` (one per video, written as
soon as the video is done), ``pseudo_labels.json`` (YouTube-VIS, with per-frame ``selected`` flags),
``training_set.json`` (eligible frames only), ``selection.json`` (counts after each step), the training run
(``last.pt``, ``metrics.jsonl``, ``model/``) and ``metrics.json`` when a validation set is given. The run
folder gets ``summary.json`` (one row per model) and ``best.json``: the model to use, the best by
``selection.select_metric`` on the validation set (M0 included), else the last round. A rerun continues from
the last finished unit: a finished video, a finished selection, a training checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from autoqvis.config import Config, TrainingConfig, config_to_dict
from autoqvis.engine import dist
from autoqvis.engine.data import ClipSource
from autoqvis.engine.run import train_stage
from autoqvis.io.atomic import atomic_write_json
from autoqvis.io.ytvis import YTVISDataset, load_json, load_ytvis, save_ytvis
from autoqvis.progress import progress_bar
from autoqvis.selftrain.evaluate import metric_value, pick_best
from autoqvis.selftrain.fuse import fuse_labels, replace_labels
from autoqvis.selftrain.pseudo_label import (
    SelectionStats,
    build_training_set,
    eligibility_counts,
    select_video,
)
from autoqvis.structures import Track

__all__ = ["SelfTrainRun", "round_training_config", "summary_row"]

log = logging.getLogger("autoqvis")


def round_training_config(cfg: Config) -> TrainingConfig:
    """The self-training stage's optimisation: the training section with the selection section's round
    settings (iterations, batch, frozen head, DropLoss)."""
    s = cfg.selection
    return dataclasses.replace(
        cfg.training,
        max_iters=s.round_iters,
        batch_size=s.round_batch_size,
        freeze_quality_head=s.freeze_quality_head,
        droploss=s.droploss,
    )


@dataclass
class SelfTrainRun:
    cfg: Config
    out: Path
    videos: YTVISDataset  # the unlabeled videos (frame cache)
    synthetic: Sequence[ClipSource]
    device: str = "cpu"

    def __post_init__(self) -> None:
        if (
            self.cfg.training.deterministic
        ):  # for every stage, inference included, so that a resumed run is exact
            import torch

            torch.use_deterministic_algorithms(True, warn_only=True)

    # -- S3 ---------------------------------------------------------------------------------------------

    def initial_stage(self, init: str | Path | None = None) -> Path:
        """M0: the VIS model trained jointly with the quality head on synthetic clips (quality loss on every
        query). ``init`` is a VideoCutLER / AutoQ-VIS checkpoint or a model folder; an AutoQ-VIS M0 given as a
        folder with ``skip_initial`` semantics is the caller's choice."""
        training = dataclasses.replace(self.cfg.training, freeze_quality_head=False, droploss=False)
        sources = list(self.synthetic)
        return train_stage(
            self.cfg,
            sources,
            [1 / len(sources)] * len(sources),
            self.out / "m0",
            self.device,
            init=init,
            training=training,
        )

    # -- pseudo-labels ------------------------------------------------------------------------------------

    def pseudo_label(self, k: int, model_dir: Path) -> dict[int, list[Track]]:
        """The current model's top-k tracks for every unlabeled video (this rank's share; resumable)."""
        from autoqvis.inference.predict import PredictOptions, segment_video
        from autoqvis.io.video import FrameList
        from autoqvis.model import load_model

        folder = self.out / f"round_{k}" / "predictions"
        model = load_model(model_dir, device=self.device)
        inf = self.cfg.inference
        options = PredictOptions.from_config(
            inf, self.device, top_k=self.cfg.selection.top_k, track_score="class"
        )
        todo = [v for i, v in enumerate(self.videos.videos) if i % dist.world_size() == dist.rank()]
        with progress_bar(f"round {k}: pseudo-label", total=len(todo), enabled=dist.is_main()) as bar:
            for info in todo:
                path = folder / f"{info.id}.json"
                if not path.is_file():
                    source = FrameList(
                        name=info.name,
                        short_side=inf.short_side,
                        max_size=inf.max_size,
                        paths=self.videos.frame_paths(info.id),
                    )
                    tracks = segment_video(model, source, options).tracks
                    atomic_write_json(path, [_track_json(t) for t in tracks])
                bar.advance()
        dist.barrier()
        return {
            info.id: [_track_from_json(d) for d in load_json(folder / f"{info.id}.json")]
            for info in self.videos.videos
        }

    # -- selection and fusion -------------------------------------------------------------------------------

    def select_and_fuse(
        self, k: int, predictions: dict[int, list[Track]], previous: dict[int, list[Track]] | None
    ) -> tuple[dict[int, list[Track]], SelectionStats, YTVISDataset]:
        """Select per video, fuse with earlier rounds (or replace), keep eligible frames; written once."""
        folder = self.out / f"round_{k}"
        labels_path, stats_path, train_path = (
            folder / "pseudo_labels.json",
            folder / "selection.json",
            folder / "training_set.json",
        )
        settings_path = folder / "selection_settings.json"
        settings = config_to_dict(self.cfg)["selection"]
        reuse = settings_path.is_file() and load_json(settings_path) == settings
        if reuse and train_path.is_file() and labels_path.is_file() and stats_path.is_file():
            labels = load_ytvis(labels_path, check_frames=False).tracks
            return (
                labels,
                SelectionStats.from_json(load_json(stats_path)),
                load_ytvis(train_path, self.videos.frames_root, check_frames=False),
            )
        s = self.cfg.selection
        stats = SelectionStats()
        selected = {vid: select_video(tracks, s, stats) for vid, tracks in predictions.items()}
        if previous is None:
            labels = selected
        elif s.fusion == "fuse":
            labels = fuse_labels(previous, selected, s.fuse_iou)
        else:
            labels = replace_labels(previous, selected)
        eligible = eligibility_counts(labels, s.min_eligible_frames, stats)
        training_set = build_training_set(self.videos, labels, eligible)
        if dist.is_main():
            save_ytvis(
                YTVISDataset(
                    videos=list(self.videos.videos),
                    tracks={v.id: list(labels.get(v.id, [])) for v in self.videos.videos},
                ),
                labels_path,
            )
            save_ytvis(training_set, train_path)
            atomic_write_json(stats_path, stats.to_json())
            atomic_write_json(settings_path, settings)
        dist.barrier()
        return labels, stats, training_set

    # -- retraining -------------------------------------------------------------------------------------------

    def retrain(self, k: int, training_set: YTVISDataset, init: Path) -> Path:
        """Round k's model: from ``init`` (M0, or the previous round without reset), head frozen, DropLoss,
        batches from the pseudo-labelled videos with probability ``selection.mix_prob``."""
        from autoqvis.engine.video_source import VideoClipSource
        from autoqvis.synth.augment import clip_augment

        if not training_set.videos:
            raise RuntimeError(
                f"round {k}: no video kept enough selected frames to train on (see round_{k}/selection.json); "
                "lower selection.quality_min or selection.min_frames"
            )
        real = VideoClipSource(
            training_set, clip_augment(self.cfg.synthesis), num_frames=self.cfg.synthesis.num_frames
        )
        p = self.cfg.selection.mix_prob
        sources = [*self.synthetic, real]
        probs = [(1 - p) / len(self.synthetic)] * len(self.synthetic) + [p]
        return train_stage(
            self.cfg,
            sources,
            probs,
            self.out / f"round_{k}",
            self.device,
            init=init,
            training=round_training_config(self.cfg),
        )

    # -- the whole loop ---------------------------------------------------------------------------------------

    def run(self, init: str | Path | None = None, evaluate=None) -> list[dict]:
        """M0, then ``selection.num_rounds`` rounds; ``evaluate(model_dir) -> metrics dict`` scores each model
        when given. Returns one summary row per model."""
        m0 = self.initial_stage(init)
        rows = [self._row("M0 (synthetic only)", m0, None, evaluate)]
        model, labels = m0, None
        for k in range(1, self.cfg.selection.num_rounds + 1):
            predictions = self.pseudo_label(k, model)
            labels, stats, training_set = self.select_and_fuse(k, predictions, labels)
            if not training_set.videos:
                log.warning(
                    "round %d: no video kept %d selected frames (see round_%d/selection.json); the round keeps the "
                    "previous model. Lower selection.quality_min or train the initial stage longer.",
                    k,
                    self.cfg.selection.min_eligible_frames,
                    k,
                )
                rows.append(
                    {
                        **self._row(f"round {k}", model, stats, evaluate),
                        "note": "no pseudo-labels kept; previous model",
                    }
                )
                continue
            start = m0 if self.cfg.selection.reset_each_round else model
            model = self.retrain(k, training_set, start)
            rows.append(self._row(f"round {k}", model, stats, evaluate))
        best = pick_best(rows, self.cfg.selection.select_metric)
        rows[best]["best"] = True
        if dist.is_main():
            atomic_write_json(self.out / "summary.json", [summary_row(r) for r in rows])
            atomic_write_json(
                self.out / "best.json",
                {
                    "model": rows[best]["model"],
                    "path": rows[best]["path"],
                    "metric": self.cfg.selection.select_metric if evaluate is not None else None,
                    "value": metric_value(rows[best].get("metrics"), self.cfg.selection.select_metric),
                    "rule": (
                        f"highest {self.cfg.selection.select_metric} on the validation set"
                        if evaluate is not None
                        else "no validation set: the last round"
                    ),
                },
            )
        return rows

    def _row(self, name: str, model: Path, stats: SelectionStats | None, evaluate) -> dict:
        row = {"model": name, "path": str(model)}
        if stats is not None:
            row["pseudo_labels"] = stats.fused.objects
            row["selection"] = stats.to_json()
        if evaluate is not None:
            cache = model.parent / "metrics.json"
            if cache.is_file():
                row["metrics"] = json.loads(cache.read_text())
            else:
                row["metrics"] = evaluate(model)
                if dist.is_main():
                    atomic_write_json(cache, row["metrics"])
        return row


def summary_row(row: dict) -> dict:
    """``row`` without the per-frame evaluation samples (they stay in the round's ``metrics.json``)."""
    metrics = row.get("metrics")
    if not metrics:
        return row
    return row | {"metrics": {k: v for k, v in metrics.items() if k != "samples"}}


def _track_json(t: Track) -> dict:
    return {"score": t.score, "masks": t.masks, "predicted_iou": t.predicted_iou}


def _track_from_json(d: dict) -> Track:
    return Track(masks=d["masks"], score=float(d["score"]), predicted_iou=d.get("predicted_iou"))
