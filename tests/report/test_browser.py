"""The demo report in headless Chromium: it loads, and every figure and gallery image is present (slow; skipped
when chromium is missing: `make setup-browser` installs Debian's chromium)."""

import shutil
import subprocess

import pytest

pytestmark = pytest.mark.slow


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("chromium not found; install it with `make setup-browser` (apt-get install chromium)")
    return path


def test_demo_report_renders_in_headless_chromium(tmp_path, monkeypatch):
    from autoqvis.cli import main

    chromium = _chromium()
    monkeypatch.setenv("AUTOQVIS_HOME", str(tmp_path / "home"))
    assert main(["demo", "--quick", "--out", str(tmp_path / "demo")]) == 0
    report = tmp_path / "demo" / "report.html"
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
