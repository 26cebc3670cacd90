"""The AutoQ-VIS self-training loop on the user's unlabeled videos, one readable function per stage.

    run = SelfTrainRun(cfg, out, videos, synthetic, evaluator)   # every stage on cfg.device
    result = run.run(init=checkpoint)               # or run.run(m0=model_folder): M0 given, no initial stage
    result.models                                   # [ModelResult M0, round 1, ..., round K]
    result.selected_model                           # the model to use (best.json)

What :meth:`SelfTrainRun.run` does, stage by stage:

    m0 = run.initial_stage(init)                    # the initial stage: VIS model + quality head on synthetic clips
    for k in 1..K:
        predictions = run.pseudo_label(k, model)    # current model on every unlabeled video
        labels, stats, training_set = run.select_and_fuse(k, predictions, labels)
        model = run.retrain(k, training_set, m0)    # head frozen, DropLoss, 50/50 real/synthetic

Everything a round produces lives in ``round_k/``: ``predictions/<video>.json`` (one per video, written as
soon as the video is done), ``pseudo_labels.json`` (YouTube-VIS, with per-frame ``selected`` flags),
``training_set.json`` (eligible frames only), ``selection.json`` (counts after each step), the training run
(``last.pt``, ``metrics.jsonl``, ``model/``) and ``metrics.json`` when a validation set is given; the last
round also holds ``model_predictions/`` (its model on the unlabeled videos, for the label-free criteria). The
run folder gets ``summary.json`` (one :class:`ModelResult` per model) and ``best.json``: the model to use,
the best by ``selftrain.select_metric`` on the validation set (M0 included), else the best by the label-free
criterion ``selftrain.label_free_pick`` (:mod:`autoqvis.selftrain.pick`). A rerun continues from the last
finished unit: a finished video, a finished selection, a training checkpoint.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from autoqvis.config import Config, TrainingConfig, config_to_dict, inference_settings
from autoqvis.device import resolve_device
from autoqvis.errors import CheckpointError, DataError
from autoqvis.evaluate.models import ModelScores
from autoqvis.io.tracks import track_from_json, write_tracks
from autoqvis.io.video import FrameList
from autoqvis.io.ytvis import YTVISDataset, load_json, load_ytvis, save_ytvis
from autoqvis.model import load_model
from autoqvis.model.vit_backbone import TokenCache, use_token_cache
from autoqvis.predict.predict import raw_settings, segment_video
from autoqvis.progress import progress_bar
from autoqvis.runs.atomic import atomic_write_json
from autoqvis.runs.fingerprint import Unit, hash_json, weights_identity
from autoqvis.runs.layout import SelfTrainLayout, fingerprint_beside, run_relative
from autoqvis.runs.step import open_step
from autoqvis.selftrain.fuse import fuse_labels, replace_labels
from autoqvis.selftrain.pick import (
    holdout_names,
    label_free_per_video,
    mean_scores,
    pick_label_free,
    pick_safe,
    teacher_cuts,
)
from autoqvis.selftrain.pseudo_label import (
    SelectionStats,
    build_training_set,
    eligibility_counts,
    select_video,
)
from autoqvis.structures import Track
from autoqvis.synth.augment import clip_augment
from autoqvis.train import dist
from autoqvis.train.data import ClipSource
from autoqvis.train.determinism import deterministic_algorithms
from autoqvis.train.run import train_stage
from autoqvis.train.sources import mixing_probs
from autoqvis.train.video_source import VideoClipSource

__all__ = ["ModelResult", "SelfTrainResult", "SelfTrainRun", "round_training_config", "run_relative"]

log = logging.getLogger("autoqvis")

M0_NAME = "M0 (synthetic only)"


@dataclass
class ModelResult:
    """One model of a self-training run: M0 (``round`` 0) or the model of round k."""

    name: str  # "M0 (synthetic only)", "round 1", ...
    path: Path  # the model folder (model.safetensors + model.json)
    round: int
    selection: SelectionStats | None = None  # counts of the pseudo-labels it was trained on (rounds)
    scores: ModelScores | None = None  # on the validation set, when one is given
    note: str = ""  # e.g. why a round kept the previous model
    label_free: dict[str, float | None] | None = None  # criteria on the unlabeled videos (selftrain/pick.py)

    @property
    def pseudo_labels(self) -> int | None:
        """Pseudo-labelled objects after fusion (None for M0)."""
        return None if self.selection is None else self.selection.fused.objects

    def to_json(self, samples: bool = False, root: Path | None = None) -> dict:
        """A ``summary.json`` row; the per-frame quality samples only with ``samples``. With ``root`` (the run
        folder) a model inside it is named relative to it, so that a copied or moved run names its own."""
        row: dict = {"model": self.name, "path": run_relative(self.path, root), "round": self.round}
        if self.selection is not None:
            row["pseudo_labels"] = self.pseudo_labels
            row["selection"] = self.selection.to_json()
        if self.scores is not None:
            row["metrics"] = self.scores.to_json(samples=samples)
        if self.note:
            row["note"] = self.note
        if self.label_free is not None:
            row["label_free"] = self.label_free
        return row

    @classmethod
    def from_json(cls, row: dict, root: Path | None = None) -> ModelResult:
        """Inverse of :meth:`to_json`: a relative path is resolved against ``root``."""
        path = Path(row["path"])
        return cls(
            name=row["model"],
            path=root / path if root is not None and not path.is_absolute() else path,
            round=int(row.get("round", 0)),
            selection=SelectionStats.from_json(row["selection"]) if row.get("selection") else None,
            scores=ModelScores.from_json(row["metrics"]) if row.get("metrics") else None,
            note=row.get("note", ""),
            label_free=row.get("label_free"),
        )


@dataclass
class SelfTrainResult:
    """What a run produced: every model, and which one to use."""

    models: list[ModelResult]
    selected: int  # index into ``models``
    rule: str  # why that one
    metric: str | None = None  # the validation metric it was chosen by (None without a validation set)
    criterion: str | None = None  # the label-free criterion it was chosen by (without a validation set)

    @property
    def selected_model(self) -> ModelResult:
        return self.models[self.selected]

    def best_json(self, root: Path | None = None) -> dict:
        """The content of ``best.json``; with ``root`` (the run folder) the model's path is relative to it
        when the model lies inside (absolute otherwise: an M0 given from elsewhere)."""
        chosen = self.selected_model
        return {
            "model": chosen.name,
            "path": run_relative(chosen.path, root),
            "metric": self.metric,
            "value": chosen.scores.value(self.metric) if self.metric and chosen.scores else None,
            "rule": self.rule,
            "label_free_criterion": self.criterion,
            "label_free": {m.name: m.label_free for m in self.models},
        }


def round_training_config(cfg: Config) -> TrainingConfig:
    """The self-training rounds' optimisation: the training section as the rounds section changes it
    (:meth:`~autoqvis.config.RoundsConfig.training`: iterations, batch, rate; DropLoss and the frozen head
    on unless ``training`` sets them)."""
    return cfg.rounds.training(cfg.training)


def pick_best(models: Sequence[ModelResult], metric: str) -> int:
    """Index of the model with the highest ``metric`` (the first on ties); the last when none is scored."""
    values = [m.scores.value(metric) if m.scores else None for m in models]
    scored = [(v, -i) for i, v in enumerate(values) if v is not None]
    return -max(scored)[1] if scored else len(models) - 1


@dataclass
class SelfTrainRun:
    cfg: Config
    out: Path
    videos: YTVISDataset  # the unlabeled videos (frame cache)
    synthetic: Sequence[ClipSource]
    evaluator: Callable[[Path], ModelScores] | None = None  # scores a model folder on a validation set
    resume: bool = True  # False: every unit of the run starts over (--no-resume)
    # the frozen ViT's tokens of the unlabeled frames, shared by the models that predict them
    tokens: TokenCache | None = field(default=None, init=False, repr=False, compare=False)
    # each model's label-free criteria per unlabeled video (selftrain/pick.py), set by run()
    per_video: list[dict[str, dict[int, float]]] | None = field(default=None, init=False, repr=False)

    @property
    def layout(self) -> SelfTrainLayout:
        return SelfTrainLayout(self.out)

    @property
    def device(self) -> str:
        """Where every stage computes: the config's ``device`` (chosen once, resolved by the command)."""
        return str(resolve_device(self.cfg.device, "device"))

    # -- the initial stage --------------------------------------------------------------------------------

    def initial_stage(self, init: str | Path | None = None) -> Path:
        """M0: the VIS model trained jointly with the quality head on synthetic clips (quality loss on every
        query), from ``init`` (a VideoCutLER / AutoQ-VIS checkpoint or a model folder) when given."""
        training = self.cfg.training.stage_losses(
            self_training=False
        )  # DropLoss, frozen head: off unless set
        sources = list(self.synthetic)
        return train_stage(
            self.cfg,
            sources,
            [1 / len(sources)] * len(sources),
            self.layout.stage(0),
            init=init,
            training=training,
            resume=self.resume,
        )

    # -- pseudo-labels ------------------------------------------------------------------------------------

    def pseudo_label(self, k: int, model_dir: Path) -> dict[int, list[Track]]:
        """The current model's top-k tracks for every unlabeled video (round k's pseudo-labelling pass)."""
        folder = self.layout.predictions(k)
        return self.predict_unlabeled(
            model_dir, folder, f"round {k}: pseudo-label", f"round {k}'s predictions"
        )

    def predict_unlabeled(
        self, model_dir: Path, folder: Path, title: str, what: str
    ) -> dict[int, list[Track]]:
        """A model's raw top-k tracks for every unlabeled video, one file per video in ``folder`` (this rank's
        share; a finished video of the same model and settings is not predicted again:
        ``<folder>.fingerprint.json``). Raw: :func:`~autoqvis.predict.predict.segment_video`'s network output
        in class-score order, with ``selection.top_k`` queries; the pass does not finish them
        (:func:`~autoqvis.predict.predict.finish_tracks`: ``inference.track_score`` and the CRF are for
        outputs), since the selection ranks and thresholds every frame by its own ``selection.selection_score``."""
        inf = dataclasses.replace(self.cfg.inference, top_k=self.cfg.selection.top_k)
        fingerprint = {
            "model": weights_identity(model_dir),
            "inference": raw_settings(inf),
            "videos": self.videos.content_hash(),
        }
        opened = self._open(Unit(what, fingerprint_beside(folder), (folder,)), fingerprint)
        model = load_model(model_dir, model=self.cfg.model, device=self.device)
        if self.tokens is None and inf.token_cache_mb > 0:
            self.tokens = TokenCache(inf.token_cache_mb * 2**20)
        use_token_cache(model, self.tokens)
        todo = [v for i, v in enumerate(self.videos.videos) if i % dist.world_size() == dist.rank()]
        with progress_bar(title, total=len(todo), enabled=dist.is_main()) as bar:
            for info in todo:
                path = folder / f"{info.id}.json"
                if not path.is_file():
                    source = FrameList(
                        name=info.name,
                        short_side=inf.short_side,
                        max_size=inf.max_size,
                        paths=self.videos.frame_paths(info.id),
                    )
                    tracks = segment_video(model, source, inf).tracks
                    write_tracks(path, tracks)
                bar.advance()
        dist.barrier()
        opened.finish()  # every rank's videos are written (recorded again: a redone video changed them)
        return {info.id: _read_tracks(folder / f"{info.id}.json") for info in self.videos.videos}

    def _open(self, unit: Unit, fingerprint: dict, finished: Callable[[], bool] | None = None):
        """Open one unit of the run (rank 0 writes its fingerprint; the others wait for it)."""
        opened = open_step(unit, fingerprint, self.resume, finished=finished, write=dist.is_main())
        dist.barrier()
        return opened

    # -- selection and fusion -------------------------------------------------------------------------------

    def select_and_fuse(
        self, k: int, predictions: dict[int, list[Track]], previous: dict[int, list[Track]] | None
    ) -> tuple[dict[int, list[Track]], SelectionStats, YTVISDataset]:
        """Select per video, fuse with earlier rounds (or replace), keep eligible frames; written once."""
        labels_path, stats_path, train_path = (
            self.layout.pseudo_labels(k),
            self.layout.selection(k),
            self.layout.training_set(k),
        )
        unit = Unit(
            f"round {k}'s selection", fingerprint_beside(stats_path), (labels_path, stats_path, train_path)
        )
        fingerprint = {
            "selection": config_to_dict(self.cfg.selection),  # the whole section: every field selects
            # and the one background-region rule (its home is the discovery section)
            "discovery": {
                "max_area": self.cfg.discovery.max_area,
                "max_borders": self.cfg.discovery.max_borders,
            },
            "predictions": _tracks_hash(predictions),
            "previous": None if previous is None else _tracks_hash(previous),
            # the teacher's cuts (selection.min_teacher_iou) are MaskCut with the discovery section
            "teacher": config_to_dict(self.cfg.discovery) if self.cfg.selection.min_teacher_iou > 0 else None,
            "videos": self.videos.content_hash(),
        }
        finished = [train_path, labels_path, stats_path]
        opened = self._open(unit, fingerprint, lambda: all(p.is_file() for p in finished))
        if opened.done:
            labels = load_ytvis(labels_path, check_frames=False).tracks
            return (
                labels,
                SelectionStats.from_json(load_json(stats_path)),
                load_ytvis(train_path, self.videos.frames_root, check_frames=False),
            )
        s = self.cfg.selection
        stats = SelectionStats()
        regions = self.cfg.discovery
        teacher = self.pool_teacher(sorted(predictions)) if s.min_teacher_iou > 0 else {}
        selected = {
            vid: select_video(tracks, s, stats, regions, teacher.get(vid, {}))
            for vid, tracks in predictions.items()
        }
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
        opened.finish()
        dist.barrier()
        return labels, stats, training_set

    # -- retraining -------------------------------------------------------------------------------------------

    def retrain(self, k: int, training_set: YTVISDataset, init: Path) -> Path:
        """Round k's model: from ``init`` (M0, or the previous round without reset), head frozen, DropLoss,
        batches from the pseudo-labelled videos mixed with the synthetic clips as ``rounds`` says."""
        if not training_set.videos:
            raise RuntimeError(
                f"round {k}: no video kept enough selected frames to train on (see {self.layout.selection(k)}); "
                "lower selection.quality_min or selection.min_frames"
            )
        real = VideoClipSource(
            training_set, clip_augment(self.cfg.synthesis), num_frames=self.cfg.synthesis.num_frames
        )
        frames = sum(v.length for v in training_set.videos)
        sources = [*self.synthetic, real]
        probs = mixing_probs(len(self.synthetic), [frames], self.cfg.rounds)
        log.info("round %d: %d labelled frames; real clips drawn with probability %.3f", k, frames, probs[-1])
        return train_stage(
            self.cfg,
            sources,
            probs,
            self.layout.stage(k),
            init=init,
            training=round_training_config(self.cfg),
            settings={"rounds": config_to_dict(self.cfg.rounds)},  # the whole section counts
            resume=self.resume,
        )

    # -- the whole loop ---------------------------------------------------------------------------------------

    def run(self, init: str | Path | None = None, m0: str | Path | None = None) -> SelfTrainResult:
        """M0 (trained from ``init``, or ``m0`` as given), then ``selftrain.num_rounds`` rounds, each model
        scored by the evaluator when there is one; writes ``summary.json`` and ``best.json``."""
        with deterministic_algorithms(self.cfg.training.deterministic):
            m0 = Path(m0) if m0 is not None else self.initial_stage(init)
            models = [self.result(M0_NAME, 0, m0)]
            model, labels = m0, None
            unlabeled = []  # each model's predictions on the unlabeled videos, for the label-free criteria
            held = self.held_out()  # videos no round takes pseudo-labels from (the teacher criterion's)
            for k in range(1, self.cfg.selftrain.num_rounds + 1):
                predictions = self.pseudo_label(k, model)
                unlabeled.append(predictions)
                selectable = {v: t for v, t in predictions.items() if v not in held}
                labels, stats, training_set = self.select_and_fuse(k, selectable, labels)
                if not training_set.videos:
                    log.warning(
                        "round %d: no video kept %d selected frames (see %s); the round keeps the previous model. "
                        "Lower selection.quality_min or train the initial stage longer.",
                        k,
                        self.cfg.selection.min_eligible_frames,
                        self.layout.selection(k),
                    )
                    models.append(
                        self.result(f"round {k}", k, model, stats, "no pseudo-labels kept; previous model")
                    )
                    continue
                start = m0 if self.cfg.selftrain.reset_each_round else model
                model = self.retrain(k, training_set, start)
                models.append(self.result(f"round {k}", k, model, stats))
            if len(models) > 1:
                last = self.layout.model_predictions(len(models) - 1)
                unlabeled.append(
                    self.predict_unlabeled(model, last, "last model: predict", "the last model's predictions")
                )
                teacher = self.teacher(held)
                self.per_video = label_free_per_video(unlabeled, self.cfg.selection, teacher, sorted(held))
                if dist.is_main():  # every criterion per model and video (what the pick compares, paired)
                    atomic_write_json(
                        self.layout.label_free,
                        {
                            "held_out": sorted(held),
                            "models": {
                                m.name: {c: {str(v): x for v, x in pv.items()} for c, pv in p.items()}
                                for m, p in zip(models, self.per_video, strict=True)
                            },
                        },
                    )
                for m, per_video in zip(models, self.per_video, strict=True):
                    m.label_free = mean_scores(per_video)
        result = self.choose(models)
        if dist.is_main():
            rows = [
                m.to_json(root=self.out)
                | ({"selected": True, "rule": result.rule} if i == result.selected else {})
                for i, m in enumerate(models)
            ]
            atomic_write_json(self.layout.summary, rows)
            atomic_write_json(self.layout.best, result.best_json(self.out))
        return result

    def choose(self, models: list[ModelResult]) -> SelfTrainResult:
        """The model to use: the best by ``selftrain.select_metric`` on the validation set; without one, the
        best by the label-free criterion ``selftrain.label_free_pick`` on the unlabeled videos."""
        s = self.cfg.selftrain
        if self.evaluator is not None:
            best = pick_best(models, s.select_metric)
            return SelfTrainResult(
                models, best, f"highest {s.select_metric} on the validation set", s.select_metric
            )
        criterion = s.label_free_pick
        if criterion != "last" and s.pick_margin > 0:
            per_video = [p.get(criterion, {}) for p in self.per_video] if self.per_video else []
            best, why = pick_safe(per_video, s.pick_margin)
            rule = f"no validation set: label-free {criterion} on the unlabeled videos: {why}"
            log.info("best model: %s (%s)", models[best].name, rule)
            return SelfTrainResult(models, best, rule, criterion=criterion)
        scores = [m.label_free or {} for m in models]
        rule = (
            "no validation set: the last round"
            if criterion == "last"
            else f"no validation set: highest label-free {criterion} on the unlabeled videos"
        )
        return SelfTrainResult(models, pick_label_free(scores, criterion), rule, criterion=criterion)

    def held_out(self) -> set[int]:
        """Ids of the unlabeled videos held out of every round's pseudo-labels (``selftrain.holdout``)."""
        infos = self.videos.videos if self.videos is not None else []
        names = holdout_names([v.name for v in infos], self.cfg.selftrain.holdout)
        return {v.id for v in infos if v.name in names}

    def teacher(self, held: set[int]) -> dict[int, dict[int, list]] | None:
        """MaskCut's masks of the held-out videos' teacher frames (``holdout_teacher.json``), or None without
        held-out videos or when the discovery ViT cannot be loaded (then the teacher criterion has no value)."""
        if not held:
            return None
        try:
            return teacher_cuts(
                self.videos, held, self.cfg.discovery, self.layout.holdout_teacher, self.device
            )
        except CheckpointError as err:
            log.warning("label-free teacher criterion: no MaskCut teacher (%s)", err)
            return None

    def pool_teacher(self, ids: list[int]) -> dict[int, dict[int, list]]:
        """MaskCut's cuts of the teacher frames of the videos ``ids`` (``pool_teacher.json``, made once per
        run), for ``selection.min_teacher_iou``; the discovery weights must load."""
        try:
            return teacher_cuts(self.videos, ids, self.cfg.discovery, self.layout.pool_teacher, self.device)
        except CheckpointError as err:
            raise CheckpointError(
                f"selection.min_teacher_iou needs the MaskCut teacher, whose ViT did not load ({err}); pass "
                "discovery.weights or set selection.min_teacher_iou=0"
            ) from err

    def result(
        self, name: str, k: int, model: Path, stats: SelectionStats | None = None, note: str = ""
    ) -> ModelResult:
        """A model's row, scored (once; ``metrics.json`` beside the model folder) when there is an evaluator."""
        scores = None
        if self.evaluator is not None:
            # beside the model folder (a weights file given as M0 is scored into the run's m0/ folder)
            folder = model.parent if model.is_dir() else self.layout.stage(0)
            cache = self.layout.scores(folder)
            unit = Unit(f"the scores of {name}", fingerprint_beside(cache), (cache,))
            identity = getattr(self.evaluator, "identity", None)
            fingerprint = {
                "model": weights_identity(model),
                "validation": identity() if callable(identity) else type(self.evaluator).__name__,
                "inference": inference_settings(self.cfg.inference),
                "evaluation": config_to_dict(self.cfg)["evaluation"],
            }
            opened = open_step(unit, fingerprint, self.resume, finished=cache.is_file, write=dist.is_main())
            if opened.done:
                scores = _read_scores(cache, ModelScores.metric_set(self.cfg.evaluation.max_dets))
            if scores is None:  # not scored yet, or scored before the metrics changed
                scores = self.evaluator(model)
                if dist.is_main():
                    atomic_write_json(cache, scores.to_json(samples=True))
                opened.finish()
        return ModelResult(name, model, k, stats, scores, note)


def _tracks_hash(tracks: dict[int, list[Track]]) -> str:
    """What a set of tracks per video is, for a fingerprint. A video without tracks counts as absent: labels read
    back from their file list every video (the held-out ones with none), the same labels in memory only those
    the selection saw."""
    return hash_json(
        [
            [vid, [[t.score, t.masks, t.predicted_iou, t.selected] for t in video_tracks]]
            for vid, video_tracks in sorted(tracks.items())
            if video_tracks
        ]
    )


def _read_tracks(path: Path) -> list[Track]:
    """A video's predictions written by :meth:`SelfTrainRun.pseudo_label`."""
    return _read_or_explain(path, lambda d: [track_from_json(t) for t in d], "the video is predicted again")


def _read_scores(path: Path, metric_set: list[str]) -> ModelScores | None:
    """The cached scores, or None when they hold another set of metrics than the current code computes."""
    data = _read_or_explain(path, lambda d: d, "the model is scored again")
    if not isinstance(data, dict) or data.get("metric_set") != metric_set:
        log.info(
            "%s holds other metrics than these (%s); scoring the model again", path, ", ".join(metric_set)
        )
        return None
    return _read_or_explain(path, ModelScores.from_json, "the model is scored again")


def _read_or_explain(path: Path, parse: Callable, again: str):
    """``parse`` of a JSON file this loop wrote; a damaged one says what to delete and what the rerun redoes."""
    try:
        return parse(load_json(path))
    except (DataError, KeyError, TypeError, ValueError) as err:
        raise DataError(
            f"cannot read {path} ({err}); delete it ({again} on the rerun) or rerun with --no-resume"
        ) from err
