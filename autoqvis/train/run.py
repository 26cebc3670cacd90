"""One training stage end to end: build the model, its criterion and the trainer, train, save the model.

Used by ``autoqvis train`` and by the self-training rounds. The run folder holds ``last.pt`` (the resumable
training state), ``metrics.jsonl``, ``config.yaml``, ``fingerprint.json`` (what determines the run: the model,
training and synthesis sections, the sources and their mixing probabilities, the initial weights) and, when
training finishes, ``model/`` (the weights in our format: ``model.safetensors`` + ``model.json``, and the run's
``inference`` section as ``inference.json``: the settings the model is made for, its default when loaded). A rerun
with the same fingerprint continues (a finished model is reused); with another it stops and says what
changed (:mod:`autoqvis.runs.fingerprint`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from autoqvis.config import Config, TrainingConfig, config_to_dict, save_config
from autoqvis.device import resolve_amp, resolve_device
from autoqvis.model import build_model, load_weights, save_model
from autoqvis.runs.fingerprint import Unit, check_start_over, open_unit, weights_identity
from autoqvis.runs.layout import MODEL_DIR, MODEL_FILE, TRAIN_METRICS
from autoqvis.runs.step import is_done, step
from autoqvis.train import dist
from autoqvis.train.data import ClipSource
from autoqvis.train.trainer import CHECKPOINT_NAME, Trainer

__all__ = ["train_stage", "training_fingerprint", "training_unit"]

log = logging.getLogger("autoqvis")

# training settings that do not change the trained weights
_NOT_IN_FINGERPRINT = ("log_period", "checkpoint_period", "num_workers")


def training_unit(out: Path) -> Unit:
    """The training run in ``out`` as a resumable unit (its checkpoint, metrics and final model)."""
    return Unit(
        "the training run",
        out / "fingerprint.json",
        (out / CHECKPOINT_NAME, out / MODEL_DIR, out / TRAIN_METRICS),
    )


def training_fingerprint(
    cfg: Config,
    training: TrainingConfig,
    sources: Sequence[ClipSource],
    probs: Sequence[float],
    init: str | Path | None,
) -> dict[str, Any]:
    """What determines a training run's weights: the model, training and synthesis (augmentation) sections,
    each source's identity with its mixing probability, and the initial weights' content."""
    model = config_to_dict(cfg.model)
    model.pop("weights")  # the initial weights count by content ("init"), not by path
    train = {k: v for k, v in config_to_dict(training).items() if k not in _NOT_IN_FINGERPRINT}
    return {
        "model": model,
        "training": train,
        "synthesis": config_to_dict(cfg.synthesis),
        "sources": [_source_identity(s) for s in sources],
        "probs": [float(p) for p in probs],
        "init": weights_identity(init),
    }


def _source_identity(source: ClipSource) -> dict[str, Any]:
    identity = getattr(source, "identity", None)
    if callable(identity):
        return identity()
    return {"kind": type(source).__name__, "len": len(source)}


def train_stage(
    cfg: Config,
    sources: Sequence[ClipSource],
    probs: Sequence[float],
    out: str | Path,
    init: str | Path | None = None,
    training: TrainingConfig | None = None,
    resume: bool = True,
    settings: Mapping[str, Any] | None = None,
) -> Path:
    """Train ``cfg.model`` (initialised from ``init`` or ``cfg.model.weights``) with ``training`` (default
    ``cfg.training``) on ``sources`` mixed with ``probs``, on ``cfg.device``; returns the saved model folder.

    With ``resume`` a run with the same fingerprint continues from ``last.pt`` (or its finished model is
    returned); one with another fingerprint raises :class:`~autoqvis.errors.StaleOutputError`. Without
    ``resume`` the run's checkpoint, metrics and model are removed, once the model is built and ``init``
    loaded (a bad ``init`` leaves everything as it was)."""
    out = Path(out)
    device = resolve_device(cfg.device, "device")  # chosen once: the command resolved it into cfg
    # auto precision is resolved on this device, so the fingerprint and config.yaml record what ran
    # DropLoss and the frozen head as this stage trains (None: off outside a self-training round), recorded
    training = (training or cfg.training).stage_losses()
    training = dataclasses.replace(training, amp=resolve_amp(training.amp, device))
    final = out / MODEL_DIR
    init = init or cfg.model.weights

    def fingerprint() -> dict[str, Any]:
        return training_fingerprint(cfg, training, sources, probs, init) | dict(settings or {})

    wanted = fingerprint()
    unit = training_unit(out)
    finished = (final / MODEL_FILE).is_file
    if resume:  # a run of other settings stops here, before anything is written
        if open_unit(unit, wanted, write=False) and is_done(unit, finished):
            log.info("%s already holds the finished model of these settings; skipping training", final)
            return final
    else:
        check_start_over(unit)  # --no-resume never removes what this command reads (an --init inside the run)
    torch.manual_seed(training.seed)  # the same initial weights in every process and on every rerun
    model = build_model(cfg.model, training, pretrained_backbone=not init)
    if init:
        load_weights(
            model, init
        )  # a missing or damaged --init stops here, before anything is written or removed
    # the sources are identified again when training ends: data replaced meanwhile leaves the run unmarked
    with step(unit, wanted, resume, recheck=fingerprint, write=dist.is_main()):
        dist.barrier()
        if dist.is_main():
            save_config(dataclasses.replace(cfg, training=training), out)
        trainer = Trainer(
            model, sources, probs, training, out, device, run_config=config_to_dict(cfg), fingerprint=wanted
        )
        trainer.train(resume=True)
        trainer.final_weights()
        if dist.is_main():
            save_model(model.cpu(), final, inference=cfg.inference)  # the settings it is made for
            log.info("saved %s", final)
        dist.barrier()
    return final
