"""The demo report in headless Chromium: it loads, and every figure and gallery image is present (slow:
installs Debian's chromium when missing)."""

import shutil
import subprocess

import pytest

pytestmark = pytest.mark.slow


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        done = subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], capture_output=True, text=True)
        if done.returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], capture_output=True)
            subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], capture_output=True, check=True)
        path = shutil.which("chromium")
    assert path, "chromium could not be installed"
    return path


def test_demo_report_renders_in_headless_chromium(tmp_path, monkeypatch):
    from autoqvis.cli import main

    monkeypatch.setenv("AUTOQVIS_HOME", str(tmp_path / "home"))
    assert main(["demo", "--quick", "--out", str(tmp_path / "demo")]) == 0
    report = tmp_path / "demo" / "report.html"
    chromium = _chromium()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000"]
    dom = subprocess.run(
        [chromium, *flags, "--enable-logging=stderr", "--v=0", "--dump-dom", report.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dom.returncode == 0
    assert "Uncaught" not in dom.stderr and "SyntaxError" not in dom.stderr
    html = dom.stdout
    source = report.read_text()
    assert html.count("<img") == source.count("<img")  # every image of the file is in the rendered page
    assert (
        html.count('src="data:image/png') >= 3
    )  # at least the AP chart, the quality figure, the loss curves
    if "Pseudo-labelled clips" in source:
        assert 'src="data:image/gif' in html
    shot = tmp_path / "report.png"
    subprocess.run(
        [chromium, *flags, "--window-size=1200,2000", f"--screenshot={shot}", report.as_uri()],
        capture_output=True,
        timeout=120,
    )
    assert shot.stat().st_size > 50_000  # a rendered page, not a blank one
