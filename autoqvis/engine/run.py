"""One training stage end to end: build the model, its criterion and the trainer, train, save the model.

Used by ``autoqvis train`` and by the self-training rounds. The run folder holds ``last.pt`` (the resumable
training state), ``metrics.jsonl``, ``config.yaml`` and, when training finishes, ``model/`` (the weights in
our format: ``model.safetensors`` + ``model.json``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from autoqvis.config import Config, TrainingConfig, config_to_dict, save_config
from autoqvis.engine import dist
from autoqvis.engine.data import ClipSource
from autoqvis.engine.trainer import Trainer
from autoqvis.model import build_model, load_weights, save_model

__all__ = ["train_stage"]

log = logging.getLogger("autoqvis")


def train_stage(
    cfg: Config,
    sources: Sequence[ClipSource],
    probs: Sequence[float],
    out: str | Path,
    device: str | torch.device = "cpu",
    init: str | Path | None = None,
    training: TrainingConfig | None = None,
    resume: bool = True,
) -> Path:
    """Train ``cfg.model`` (initialised from ``init`` or ``cfg.model.weights``) with ``training`` (default
    ``cfg.training``) on ``sources`` mixed with ``probs``; returns the saved model folder."""
    out = Path(out)
    device = torch.device(device)
    training = training or cfg.training
    final = out / "model"
    if (final / "model.json").is_file() and resume:
        log.info("%s already holds a finished model; skipping training", final)
        return final
    init = init or cfg.model.weights
    torch.manual_seed(training.seed)  # the same initial weights in every process and on every rerun
    model = build_model(cfg.model, training, pretrained_backbone=not init)
    if init:
        load_weights(model, init)
    if dist.is_main():
        save_config(dataclasses.replace(cfg, training=training), out)
    trainer = Trainer(model, sources, probs, training, out, device, run_config=config_to_dict(cfg))
    trainer.train(resume=resume)
    trainer.final_weights()
    if dist.is_main():
        save_model(model.cpu(), final)
        log.info("saved %s", final)
    dist.barrier()
    return final
