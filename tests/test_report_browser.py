"""Slow: open a rendered report.html in headless Chromium (Debian's `chromium`; scripts/install_chromium.sh) and
check that it loads without errors, fetches nothing, and shows its plots."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from lotus_unlearn.cli import main

pytestmark = pytest.mark.slow

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
]

# Injected into a copy of the report: after the load event, record what the browser made of the page.
PROBE = """
<script>
window.__errors = [];
window.addEventListener("error", e => window.__errors.push(String(e.message || e.type)), true);
window.addEventListener("load", () => {
  const imgs = [...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight, i.src.slice(0, 22)]);
  const fetched = performance.getEntriesByType("resource").map(r => r.name).filter(n => !n.startsWith("data:"));
  document.body.setAttribute("data-probe", JSON.stringify({imgs, fetched, errors: window.__errors}));
});
</script>
"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.fail("no chromium on PATH; run `bash scripts/install_chromium.sh` (make test-slow does)")


def browse(html: Path, *args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [chromium(), *FLAGS, f"--user-data-dir={profile}", *args, html.resolve().as_uri()],
            capture_output=True,
            text=True,
            timeout=180,
        )


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("browser")
    ckpt = root / "original.safetensors"
    tiny = ["--model", "cnn", "--model-arg", "width=8", "--model-arg", "hidden=32"]
    assert main(["train", "--dataset", "digits", *tiny, "--epochs", "6", "--device", "cpu", "--out", str(ckpt)]) == 0
    out = root / "run"
    args = ["unlearn", "--checkpoint", str(ckpt), "--dataset", "digits", "--forget-fraction", "0.1",
            "--device", "cpu", "--hparam", "epochs=2", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    return out


def test_report_loads_without_errors_and_shows_its_plots(report_dir: Path, tmp_path: Path) -> None:
    html = (report_dir / "report.html").read_text(encoding="utf-8")
    probed = tmp_path / "probed.html"
    probed.write_text(html.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    run = browse(probed, "--virtual-time-budget=10000", "--dump-dom")
    assert run.returncode == 0, run.stderr[-2000:]
    match = re.search(r'data-probe="([^"]*)"', run.stdout)
    assert match, run.stdout[-2000:]
    probe = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert probe["errors"] == []
    assert probe["fetched"] == []  # self-contained: nothing loaded from disk or network
    assert len(probe["imgs"]) == 3
    for complete, width, height, src in probe["imgs"]:
        assert complete and width > 300 and height > 200  # decoded by the browser, not a broken image
        assert src == "data:image/png;base64,"
    dom = run.stdout
    assert "Deletion audit report" in dom and 'id="verdict"' in dom


def test_report_screenshot_is_not_blank(report_dir: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    run = browse(report_dir / "report.html", f"--screenshot={shot}", "--window-size=1200,3000")
    assert run.returncode == 0, run.stderr[-2000:]
    assert shot.is_file() and shot.stat().st_size > 50_000
    import matplotlib.image

    pixels = matplotlib.image.imread(str(shot))[..., :3]
    assert pixels.shape[:2] == (3000, 1200)
    colours = np.unique((pixels[::4, ::4] * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 100  # text, tables and plot lines, not an empty page
    # the plots are drawn: the plot colour for "after (unlearned)" (#1f77b4) appears on the page
    blue = np.all(np.abs(pixels - np.array([0x1F, 0x77, 0xB4]) / 255) < 0.03, axis=-1)
    assert blue.sum() > 500
