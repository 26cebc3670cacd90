import json

from autoqvis.cli import main
from autoqvis.io.ytvis import load_ytvis


def test_quick_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--set", "evaluation.davis_max_proposals=10"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    ap = [
        metrics[name]["ytvis"]["metrics"]["AP"]
        for name in ("simulated: strong", "simulated: medium", "simulated: weak")
    ]
    assert ap[0] > ap[1] > ap[2]
    jf = [m["davis_2017_unsupervised"]["J&F-Mean"] for m in metrics.values()]
    assert jf[0] > jf[2]
    quality = metrics["simulated: medium"]["quality"]["all"]
    assert quality["count"] > 0 and quality["spearman"] > 0.3
    dataset = load_ytvis(out / "example" / "gt.json", frames_root=out / "example" / "frames")
    assert len(dataset) == 4 and dataset.num_tracks() > 0
    html = (out / "report.html").read_text()
    assert "SIMULATED" in html and "Quality predictor" in html
    assert "davis_max_proposals: 10" in (out / "config.yaml").read_text()
    assert "demo finished" in capsys.readouterr().out
