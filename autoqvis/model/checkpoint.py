"""Reading weight files: safetensors, or torch pickles of tensors only (``torch.load(weights_only=True)``), and
saying why a file cannot be read (damaged, or a pickle that would run code). Used by the model's loader
(:mod:`autoqvis.model.build`), the ViT loader (:mod:`autoqvis.model.vit`) and the training checkpoints; it
imports neither, so they all stand above it."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch
from safetensors.torch import load_file

from autoqvis.config.checks import choices
from autoqvis.config.sections import Preset
from autoqvis.errors import CheckpointError
from autoqvis.runs.access import require_file

__all__ = ["check_not_preset", "describe_torch_load_error", "read_state_dict"]


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file: safetensors, or a torch pickle of tensors only (``weights_only``)."""
    path = Path(path)
    check_not_preset(path)
    if path.is_dir():
        if not (path / "model.safetensors").exists():
            raise CheckpointError(
                f"{path} is a folder without model.safetensors; pass a .pth or .safetensors file, or a folder "
                "written by autoqvis"
            )
        path = path / "model.safetensors"
    require_file(
        path, not_found="; pass a .pth, .safetensors or a folder written by autoqvis", error=CheckpointError
    )
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except Exception as err:  # safetensors raises its own error types
            raise CheckpointError(f"{path} is not a readable safetensors file: {err}") from err
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (
        Exception
    ) as err:  # torch raises many types for bad files (UnpicklingError, RuntimeError, IndexError...)
        needs_code, reason = describe_torch_load_error(err, path)
        if needs_code:
            raise CheckpointError(
                f"{path} needs arbitrary code to unpickle, which autoqvis refuses for safety ({reason}). "
                "Convert it once, in a trusted environment, to safetensors: "
                "python -c \"import torch, safetensors.torch as s; d=torch.load('IN.pth', weights_only=False)['model']; "
                "s.save_file({k: v.contiguous() for k, v in d.items()}, 'OUT.safetensors')\""
            ) from err
        raise CheckpointError(
            f"{path} is not a readable torch checkpoint ({reason}); the file is damaged, truncated or not a "
            "checkpoint: pass the .pth or .safetensors file again (a fresh copy) or a model folder"
        ) from err
    if isinstance(data, dict) and "model" in data and isinstance(data["model"], dict):
        data = data["model"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"{path}: expected a state dict of tensors (or {{'model': state_dict}})")
    return data


def check_not_preset(path: str | Path) -> None:
    """A weights path that does not exist but is a preset's name (``--weights tiny``) is refused: random
    weights must never stand in for a model silently."""
    if str(path) in choices(Preset) and not Path(path).exists():
        raise CheckpointError(
            f"{path} is a preset name, not a weights file; pass a model folder or checkpoint (the preset of a "
            "weights file is given with --preset or model.preset)"
        )


def describe_torch_load_error(err: BaseException, path: str | Path | None = None) -> tuple[bool, str]:
    """Why ``torch.load(weights_only=True)`` failed: (the file is a pickle that would run code, a short reason).

    Random or truncated bytes fail in the weights-only unpickler too; a pickle needing code is one that names
    an unsupported *global*, or (a plain ``pickle.dump`` file, which that unpickler cannot even walk) a valid
    pickle stream that imports or calls something (read with :mod:`pickletools`, which runs nothing)."""
    text = str(err)
    inner = re.search(r"WeightsUnpickler error:\s*(.+)", text)
    reason = inner.group(1).strip() if inner else (text.strip().splitlines() or [""])[0]
    reason = f"{type(err).__name__}: {reason}" if reason else type(err).__name__
    if len(reason) > 200:
        reason = reason[:197] + "..."
    if not isinstance(err, pickle.UnpicklingError):
        return False, reason
    if "Unsupported global" in text:
        return True, reason
    target = _pickle_code(Path(path)) if path is not None else None
    return (True, f"it imports {target}") if target else (False, reason)


def _pickle_code(path: Path) -> str | None:
    """What a well-formed pickle stream at the start of ``path`` imports (``module.name``), None when it
    imports nothing or is not a pickle stream (random or truncated bytes)."""
    import pickletools

    strings: list[str] = []
    try:
        with open(path, "rb") as f:
            for op, arg, _ in pickletools.genops(f):
                if op.name in ("GLOBAL", "INST"):
                    return str(arg).replace(" ", ".")
                if op.name == "STACK_GLOBAL":
                    return ".".join(strings[-2:]) or "an object"
                if isinstance(arg, str):
                    strings.append(arg)
    except Exception:  # not a pickle stream
        return None
    return None
