"""Self-train these videos: the one library entry point behind ``autoqvis selftrain`` and the demo.

    result = self_train(cfg, "runs/st", "my_videos", synthetic, val=("gt.json", "frames"))  # on cfg.device
    result.run.result ... result.selected_model.path           # the model best.json names

The unlabeled videos are decoded once into ``out/frames`` (at ``inference.short_side``) unless a frame cache
is passed; with ``val`` every model is scored on those labelled videos. Then :class:`SelfTrainRun` runs M0
and the rounds (resumable; see :mod:`autoqvis.selftrain.loop`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from autoqvis.config import Config
from autoqvis.evaluate.models import ModelEvaluator
from autoqvis.io.video import SkipReport, find_videos
from autoqvis.io.ytvis import YTVISDataset
from autoqvis.selftrain.loop import ModelResult, SelfTrainResult, SelfTrainRun
from autoqvis.selftrain.videos import cache_videos
from autoqvis.train.data import ClipSource

__all__ = ["SelfTraining", "self_train"]


@dataclass
class SelfTraining:
    """A finished self-training: the run (its folder, settings and rounds), what it produced, the frame cache
    of the unlabeled videos, and the videos skipped as unreadable."""

    run: SelfTrainRun
    result: SelfTrainResult
    videos: YTVISDataset
    skipped: SkipReport

    @property
    def models(self) -> list[ModelResult]:
        return self.result.models

    @property
    def selected_model(self) -> ModelResult:
        return self.result.selected_model


def self_train(
    cfg: Config,
    out: str | Path,
    videos: str | Path | Sequence[Path] | YTVISDataset,
    synthetic: Sequence[ClipSource],
    *,
    val: tuple[str | Path, str | Path] | None = None,
    evaluator: ModelEvaluator | None = None,
    init: str | Path | None = None,
    m0: str | Path | None = None,
    resume: bool = True,
    skip_bad: bool = False,
    hint: str = "",
) -> SelfTraining:
    """Quality-guided self-training of ``cfg.model`` on ``videos`` into ``out``, every stage on ``cfg.device``.

    ``videos``: a folder of video files or frame folders, or a list of them (decoded once into ``out``;
    ``skip_bad`` skips the unreadable ones, else an unreadable one is an error ending with ``hint``), or a
    frame cache made earlier (:func:`~autoqvis.selftrain.videos.cache_videos`, shared
    by runs on the same videos). ``synthetic``: the synthetic clip sources of the initial stage and of the
    rounds' mix. ``val``: (YouTube-VIS ground truth, its frames root) to score every model and choose by
    ``selftrain.select_metric`` (or ``evaluator``, one made earlier: a command reads the validation set before
    the long work); without either the label-free criterion chooses. ``init``: the initial stage's
    starting weights; ``m0``: a model used as M0 (no initial stage). ``resume=False`` starts every unit over."""
    out = Path(out)
    skipped = SkipReport()
    if not isinstance(videos, YTVISDataset):
        paths = find_videos(videos) if isinstance(videos, str | Path) else list(videos)
        videos, skipped = cache_videos(
            paths, out, cfg.inference.short_side, skip_bad=skip_bad, resume=resume, hint=hint
        )
    if evaluator is None and val is not None:
        evaluator = ModelEvaluator(val[0], val[1], cfg)
    run = SelfTrainRun(cfg, out, videos, list(synthetic), evaluator, resume=resume)
    return SelfTraining(run, run.run(init=init, m0=m0), videos, skipped)
