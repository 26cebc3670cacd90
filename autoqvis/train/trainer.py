"""The training loop: an explicit loop that reads top to bottom.

    trainer = Trainer(model, sources, probs, cfg.training, out_dir, device)
    trainer.train(resume=True)

Per iteration: fetch this rank's clips -> preprocess (normalise, pad) -> forward -> criterion -> check the
loss is finite -> backward (AMP-scaled when fp16) -> every ``grad_accum`` micro-batches: clip the full-model
gradient norm, step, schedule. Rank 0 logs a heartbeat line and a JSON line per ``log_period`` iterations to
``metrics.jsonl`` (and, when the optional ``tensorboard`` package is installed, the same values as event files
in ``tensorboard/``) and writes ``last.pt`` atomically every ``checkpoint_period`` iterations and at the end.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autoqvis.config import TrainingConfig
from autoqvis.device import autocast, autocast_dtype, describe_amp, resolve_amp
from autoqvis.errors import AutoqvisError, CheckpointError, StaleOutputError
from autoqvis.progress import progress_bar
from autoqvis.runs.atomic import atomic_write_text
from autoqvis.runs.fingerprint import describe_changes
from autoqvis.train import dist
from autoqvis.train.checkpoint import capture_rng, load_training_state, restore_rng, save_training_state
from autoqvis.train.data import ClipSource, MixingBatchSampler, build_loader
from autoqvis.train.determinism import deterministic_algorithms
from autoqvis.train.ema import WeightAverage
from autoqvis.train.optim import all_params, build_optimizer, build_scheduler, clip_full_model
from autoqvis.train.tensorboard import TensorBoardLog

__all__ = ["CHECKPOINT_NAME", "Trainer", "TrainingDivergedError"]

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "last.pt"


class TrainingDivergedError(AutoqvisError):
    """The loss became NaN or infinite."""


@dataclass
class StepResult:
    losses: dict[str, float]
    total: float
    grad_norm: float | None


class Trainer:
    """Trains ``model`` (a VideoMaskFormer with its criterion) on batches mixed from ``sources``."""

    def __init__(
        self,
        model: nn.Module,
        sources: Sequence[ClipSource],
        probs: Sequence[float],
        cfg: TrainingConfig,
        out_dir: str | Path,
        device: torch.device,
        run_config: dict[str, Any] | None = None,
        fingerprint: dict[str, Any] | None = None,
    ):
        self.cfg, self.device, self.out_dir = cfg, device, Path(out_dir)
        self.sources, self.probs = list(sources), list(probs)
        self.run_config = run_config or {}
        autocast_dtype(cfg.amp, device)  # fp16 on the CPU, or bf16 on a GPU without it: a clear error now
        self.amp = resolve_amp(cfg.amp, device)  # auto: bf16 where the device computes it natively, else off
        # what determines the run (autoqvis.train.run.training_fingerprint): stored in every checkpoint, and a
        # checkpoint of another fingerprint is not resumed
        self.fingerprint = None if fingerprint is None else json.loads(json.dumps(fingerprint, default=str))
        self.model = model.to(device)
        self.optimizer = build_optimizer(self.model, cfg)
        self.scheduler = build_scheduler(self.optimizer, cfg)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp == "fp16")
        self.ddp_model: nn.Module = self.model
        if dist.is_distributed():
            ids = [device.index] if device.type == "cuda" else None
            self.ddp_model = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.iteration = 0
        self.stream_seed = cfg.seed
        self.ema = WeightAverage(self.model, cfg.ema_decay) if cfg.ema_decay > 0 else None
        self.board: TensorBoardLog | None = None  # event files during train(), when tensorboard is installed

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / CHECKPOINT_NAME

    # -----------------------------------------------------------------------------------------------
    # the loop

    def train(self, resume: bool = True) -> Path:
        """Run to ``cfg.max_iters``; with ``resume`` continue from ``last.pt`` when it exists. With
        ``cfg.deterministic`` the kernels are deterministic for the run's duration."""
        with deterministic_algorithms(self.cfg.deterministic):
            return self._train(resume)

    def _train(self, resume: bool) -> Path:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if resume and self.checkpoint_path.exists():
            self.resume_from(self.checkpoint_path)
            log.info("resumed from %s at iteration %d", self.checkpoint_path, self.iteration)
        self._truncate_metrics()  # lines of an interrupted run after the state we start from
        if self.iteration >= self.cfg.max_iters:
            log.info("training already finished (%d iterations)", self.iteration)
            return self.checkpoint_path
        if dist.is_main():
            log.info("training precision: %s", describe_amp(self.cfg.amp, self.device))
        sampler = MixingBatchSampler(
            [len(s) for s in self.sources],
            self.probs,
            batch_size=self.cfg.batch_size,
            max_iters=self.cfg.max_iters * self.cfg.grad_accum,
            seed=self.stream_seed,
            start_iter=self.iteration * self.cfg.grad_accum,
            rank=dist.rank(),
            world_size=dist.world_size(),
        )
        # pinned host memory makes the copies to the GPU asynchronous; it pays with worker processes (a background
        # thread pins the next batches while the GPU computes; without workers it is one more synchronous copy)
        pin = self.device.type == "cuda" and self.cfg.num_workers > 0
        loader = build_loader(self.sources, sampler, self.cfg.num_workers, pin_memory=pin)
        self.model.train()
        meter = _Meter()
        start = time.perf_counter()
        first_iteration = self.iteration
        batches = iter(loader)
        self.board = TensorBoardLog(
            self.out_dir / "tensorboard",
            purge_step=self.iteration + 1 if self.iteration else None,
            enabled=dist.is_main(),
        )
        with (
            progress_bar(
                "train", total=self.cfg.max_iters, completed=self.iteration, enabled=dist.is_main()
            ) as bar,
            closing(self.board),
        ):
            while self.iteration < self.cfg.max_iters:
                micro = [next(batches) for _ in range(self.cfg.grad_accum)]
                result = self.step(micro)
                self.iteration += 1
                meter.add(result)
                bar.advance()
                if self.iteration % self.cfg.log_period == 0 or self.iteration == self.cfg.max_iters:
                    seconds = (time.perf_counter() - start) / (self.iteration - first_iteration)
                    self.log_metrics(meter.mean(), seconds)
                    meter = _Meter()
                if self.iteration % self.cfg.checkpoint_period == 0 or self.iteration == self.cfg.max_iters:
                    self.save()
        return self.checkpoint_path

    def step(self, micro_batches: list[list]) -> StepResult:
        """One optimiser step over ``grad_accum`` micro-batches of clips."""
        self.optimizer.zero_grad(set_to_none=True)
        sums: dict[str, float] = {}
        for clips in micro_batches:
            # forward and compute losses
            with self.autocast():
                losses = self.forward_losses(clips)
            total = sum(losses.values())
            self._check_finite(total, losses)
            # backward
            self.scaler.scale(total / len(micro_batches)).backward()
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach()) / len(micro_batches)
        # clip gradients of the whole model, then step
        self.scaler.unscale_(self.optimizer)
        grad_norm = clip_full_model(all_params(self.optimizer), self.cfg.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model, self.iteration)
        return StepResult(losses=sums, total=sum(sums.values()), grad_norm=float(grad_norm))

    def forward_losses(self, clips: list) -> dict[str, torch.Tensor]:
        """Weighted losses of one micro-batch (list of :class:`~autoqvis.structures.Clip`)."""
        model = self.model
        images, _ = model.preprocess([c.frames.to(self.device, non_blocking=True) for c in clips])
        targets = model.prepare_targets(clips, images.shape[-2:])
        outputs = self.ddp_model(images, num_videos=len(clips))  # any clip length (synthesis.num_frames)
        return model.criterion(outputs, targets)

    # -----------------------------------------------------------------------------------------------
    # state

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "sampler": {"seed": self.stream_seed},  # batches are a pure function of (seed, iteration)
            "rng": capture_rng(),
            "iteration": self.iteration,
            "config": json.dumps(self.run_config),
            **({"ema": self.ema.state_dict()} if self.ema is not None else {}),
            "fingerprint": json.dumps(self.fingerprint),
        }

    def resume_from(self, path: Path) -> None:
        """Load ``last.pt``: refused when it was written with another fingerprint, and a damaged file says how
        to recover."""
        state = load_training_state(path, self.device)
        stored = json.loads(state.get("fingerprint") or "null") if isinstance(state, dict) else None
        if stored is not None and self.fingerprint is not None and stored != self.fingerprint:
            raise StaleOutputError(
                f"{path} was written by a training run with other settings or inputs: "
                f"{describe_changes(stored, self.fingerprint)}. Rerun with the earlier settings to resume it, pass "
                "a new --out, or add --no-resume to train from scratch"
            )
        try:
            self.load_state(state)
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise CheckpointError(
                f"cannot resume from {path}: {type(err).__name__}: {err}; the file is damaged or from another "
                f"model. Rerun with --no-resume to start the training over, or delete {path}"
            ) from err

    def load_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.stream_seed = int(state["sampler"]["seed"])
        self.iteration = int(state["iteration"])
        restore_rng(state["rng"])
        if self.ema is not None:
            if "ema" not in state:
                raise CheckpointError(
                    f"{self.checkpoint_path} holds no weight average but training.ema_decay is set; "
                    "rerun with --no-resume to start over"
                )
            self.ema.load_state_dict(state["ema"])

    def final_weights(self) -> None:
        """Put the stage's output into the model: the weight average when there is one (else a no-op)."""
        if self.ema is not None:
            self.ema.copy_to(self.model)

    def save(self) -> None:
        if dist.is_main():
            save_training_state(self.checkpoint_path, self.state_dict())
        dist.barrier()

    # -----------------------------------------------------------------------------------------------
    # helpers

    def autocast(self):
        """The context a forward pass runs in: autocast to ``training.amp`` on this device (or nothing)."""
        return autocast(self.amp, self.device)

    def _check_finite(self, total: torch.Tensor, losses: dict[str, torch.Tensor]) -> None:
        if torch.isfinite(total):
            return
        terms = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in losses.items())
        kept = (
            f"the last good checkpoint {self.checkpoint_path} is kept"
            if self.checkpoint_path.exists()
            else "no checkpoint was written yet"
        )
        raise TrainingDivergedError(
            f"loss is {float(total.detach())} at iteration {self.iteration + 1} ({terms}); {kept}. "
            "Lower training.lr, turn training.amp off, or check the input data."
        )

    def log_metrics(self, values: dict[str, float], seconds_per_iter: float) -> None:
        if not dist.is_main():
            return
        lr = self.optimizer.param_groups[0]["lr"]
        eta = seconds_per_iter * (self.cfg.max_iters - self.iteration)
        main_terms = {k: v for k, v in values.items() if k.startswith("loss_") and not k[-1].isdigit()}
        detail = " ".join(f"{k.removeprefix('loss_')} {v:.3g}" for k, v in main_terms.items())
        log.info(
            "it %d/%d | loss %.4g (%s) | lr %.3g | %.3f s/it | eta %s",
            self.iteration,
            self.cfg.max_iters,
            values["total"],
            detail,
            lr,
            seconds_per_iter,
            _format_eta(eta),
        )
        record = {"iteration": self.iteration, "lr": lr, "seconds_per_iter": seconds_per_iter, **values}
        with open(self.out_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.board is not None:
            self.board.log(self.iteration, record)

    def _truncate_metrics(self) -> None:
        """Drop metric lines written after the checkpoint we resume from (they will be logged again)."""
        path = self.out_dir / "metrics.jsonl"
        if not dist.is_main() or not path.exists():
            return
        lines = path.read_text().splitlines()
        kept = [line for line in lines if _iteration_of(line) <= self.iteration]
        if len(kept) != len(lines):
            atomic_write_text(path, "".join(line + "\n" for line in kept))


class _Meter:
    """Running means of the step results since the last log line."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, result: StepResult) -> None:
        self.count += 1
        values = {**result.losses, "total": result.total}
        if result.grad_norm is not None and math.isfinite(result.grad_norm):
            values["grad_norm"] = result.grad_norm
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v

    def mean(self) -> dict[str, float]:
        return {k: v / self.count for k, v in self.sums.items()}


def _iteration_of(line: str) -> float:
    """The iteration of a metrics line; a torn (half-written) line counts as after every checkpoint."""
    try:
        return json.loads(line)["iteration"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return math.inf


def _format_eta(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
