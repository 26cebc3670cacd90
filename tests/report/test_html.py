import base64
import io
import re

import numpy as np
from PIL import Image

from autoqvis.report.html import GalleryItem, ModelRow, QualityAnalysis, RunReport, render_report


def tiny_gif():
    frames = [Image.fromarray(np.full((8, 8, 3), v, np.uint8)) for v in (0, 128, 255)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buffer.getvalue()


def test_report_is_self_contained_and_complete(tmp_path):
    rng = np.random.default_rng(0)
    true = rng.random(50)
    report = RunReport(
        title="demo <run>",
        models=[
            ModelRow("synthetic only (M0)", {"AP": 10.0, "AP50": 20.0, "AP75": 8.0, "AR10": 15.0}, jf=30.0),
            ModelRow(
                "round 1",
                {"AP": 12.0, "AP50": 25.5, "AP75": 9.0, "AR10": 18.0},
                pseudo_labels=14,
                best=True,
                label_free={"quality": 0.4321, "stability": 0.6789},
            ),
            ModelRow("no metrics"),
        ],
        config_yaml="selection:\n  quality_min: 0.75\n",
        quality=QualityAnalysis(
            true * 0.9,
            rng.random(50),
            true,
            0.6,
            0.4,
            0.55,
            0.35,
            [{"name": "small", "count": 5, "mean_predicted": 0.5, "mean_true": 0.4}],
        ),
        funnels={"round 1": [("top-k", 40), ("NMS", 30), ("score", 20), ("quality", 12)]},
        gallery=[GalleryItem("video 3 track 1", 0.91, tiny_gif())],
        loss_curves={"initial": ([10, 20, 30], [5.0, 3.0, 2.0])},
        notes=["quick run"],
    )
    path = render_report(report, tmp_path / "report.html")
    page = path.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "demo &lt;run&gt;" in page and "25.5" in page and "Spearman 0.600" in page
    assert "quality_min: 0.75" in page
    # the label-free criteria beside the true metrics, for the selected model
    assert "quality (no labels)" in page and "stability (no labels)" in page
    assert "round 1 <strong>(selected)</strong>" in page and "0.432" in page and "0.679" in page
    images = re.findall(r'src="data:(image/(?:png|gif));base64,([^"]+)"', page)
    assert [m for m, _ in images].count(
        "image/png"
    ) == 4  # bars, scatter, funnel, loss (no histogram with GT)
    assert [m for m, _ in images].count("image/gif") == 1
    for _, data in images:
        Image.open(io.BytesIO(base64.b64decode(data))).verify()  # every embedded image decodes
    assert "http://" not in page and "https://" not in page  # nothing loaded from outside


def test_report_without_ground_truth_shows_the_quality_distribution(tmp_path):
    report = RunReport(
        title="own videos",
        models=[ModelRow("round 1", pseudo_labels=3)],
        config_yaml="{}",
        quality_by_round={"round 1": np.random.default_rng(1).random(30)},
    )
    page = render_report(report, tmp_path / "r.html").read_text()
    assert "no ground truth" in page and page.count("data:image/png") == 1
