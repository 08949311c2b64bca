"""The report opens in a real headless browser (Debian's chromium) and renders its figures."""

from __future__ import annotations

import shutil
import subprocess
import tempfile

import cv2
import pytest

from training.analysis import analyze, write_report

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(BROWSER is None, reason="needs a headless chromium (apt-get install -y chromium)")
def test_report_renders_in_headless_chromium(overlapping, tmp_path):
    x, labels = overlapping
    index = write_report(analyze(x, labels, perplexity=20, iterations=250), tmp_path / "rep")
    shot = tmp_path / "shot.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync", "--no-first-run",
                        f"--user-data-dir={profile}", "--window-size=1200,2400", f"--screenshot={shot}",
                        index.resolve().as_uri()], check=True, capture_output=True, timeout=120)
    img = cv2.imread(str(shot))
    assert img is not None and img.shape[:2] == (2400, 1200)
    # the warnings box (amber, #fff3cd) and the figures are drawn: many distinct colours, not a blank page
    amber = ((abs(img[..., 0].astype(int) - 0xcd) < 4) & (abs(img[..., 1].astype(int) - 0xf3) < 4)
             & (abs(img[..., 2].astype(int) - 0xff) < 4))
    assert amber.sum() > 2000
    assert len({tuple(p) for p in img[::7, ::7].reshape(-1, 3).tolist()}) > 200
