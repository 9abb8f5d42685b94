"""The compare report as a reader sees it: rendered by headless Chromium (Debian's ``chromium`` package).

The checks run in the page itself: a copy of ``report.html`` gets a script that, once everything has
loaded, measures the page and writes the measurements into the DOM, which ``--dump-dom`` prints:

* no broken image (every ``<img>`` loaded, with a natural width);
* no horizontal scroll at a 1,400 px wide window;
* every figure (charts, strips, panels, context maps) carries a legend;
* no literal escape sequence (``\\n``, ``\\x1b``, ``&lt;``) in the rendered text or the alt texts.

Skipped, with the reason, where ``chromium`` is not installed, except under ``CI=true`` (``.ci/run``
installs it), where its absence fails. Set ``PSS_BENCH_REPORT_SCREENSHOT=FILE.png`` to also keep a
screenshot of the top of the rendered page (``docs/compare_report.png`` was made so).
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

WIDTH = 1400
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--allow-file-access-from-files")

CHECK_SCRIPT = r"""
<script>
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const broken = imgs.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.getAttribute('src'));
  const figs = [...document.querySelectorAll('figure')];
  const noLegend = figs.filter(f => f.querySelectorAll('ul.legend li').length === 0)
                       .map(f => (f.querySelector('img') || {}).getAttribute('src'));
  const texts = [document.body.innerText, ...imgs.map(i => i.alt), document.title];
  const escapes = [];
  for (const t of texts) {
    for (const m of t.matchAll(/\\[ntrxu0]|&(lt|gt|amp|quot|#\d+);/g)) {
      escapes.push(t.slice(Math.max(0, m.index - 30), m.index + 30));
    }
  }
  const res = {
    images: imgs.length, broken, figures: figs.length, noLegend, escapes,
    charts: document.querySelectorAll('figure.chart').length,
    strips: document.querySelectorAll('figure.strip').length,
    panels: document.querySelectorAll('figure.panel').length,
    maps: document.querySelectorAll('figure.map').length,
    provenance: document.querySelectorAll('dl.provenance dt').length,
    scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
  };
  const pre = document.createElement('pre');
  pre.id = 'pss-check';
  pre.textContent = JSON.stringify(res);
  document.body.appendChild(pre);
});
</script>
"""


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def browser() -> str:
    path = chromium()
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI: chromium is not installed (.ci/run installs Debian's chromium package)")
        pytest.skip("headless Chromium is not installed (apt-get install chromium): the report is not "
                    "checked in a browser")
    return path


def run_chromium(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={WIDTH},1000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def rendered_checks(browser: str, report: Path, work: Path) -> dict:
    """The measurements of :data:`CHECK_SCRIPT` on a copy of ``report`` rendered at :data:`WIDTH` px."""
    copy = work / "report"
    shutil.copytree(report, copy)
    page = (copy / "report.html").read_text(encoding="utf-8")
    (copy / "checked.html").write_text(page.replace("</body>", CHECK_SCRIPT + "</body>"), encoding="utf-8")
    proc = run_chromium(browser, work / "profile", "--virtual-time-budget=20000", "--dump-dom",
                        (copy / "checked.html").as_uri())
    m = re.search(r'<pre id="pss-check">(.*?)</pre>', proc.stdout, re.S)
    assert m, f"no measurements in the rendered page (exit {proc.returncode}): {proc.stderr[-2000:]}"
    return json.loads(html.unescape(m.group(1)))


def test_report_renders_in_chromium(browser, bundled_report, tmp_path):
    res = rendered_checks(browser, bundled_report, tmp_path)
    assert res["images"] >= 8 and res["broken"] == []
    assert res["innerWidth"] == WIDTH
    assert res["scrollWidth"] <= WIDTH, f"horizontal scroll: the page is {res['scrollWidth']} px wide"
    # Four charts; per query one GT / prediction panel and a strip per model; a context map per model.
    assert res["charts"] == 4 and res["panels"] == 2 and res["strips"] == 2 * 2 and res["maps"] == 2
    assert res["figures"] == res["images"] and res["noLegend"] == []
    assert res["escapes"] == []
    assert res["provenance"] >= 7


def test_the_check_fails_on_a_broken_page(browser, bundled_report, tmp_path):
    """The measurements catch what they look for: a missing picture, a too-wide page, a legend-less figure, ``\\n``."""
    bad = tmp_path / "bad"
    shutil.copytree(bundled_report, bad)
    page = (bad / "report.html").read_text(encoding="utf-8")
    page = page.replace('<img src="pq_summary.png"', '<img src="missing.png"', 1)
    page = page.replace('<ul class="legend" aria-label="legend">', '<ul class="not-a-legend">', 1)
    page = page.replace("</h1>", "</h1><p>title\\nwith an escape</p><div style='width:2000px'>wide</div>", 1)
    (bad / "report.html").write_text(page, encoding="utf-8")
    res = rendered_checks(browser, bad, tmp_path / "work")
    assert res["broken"] == ["missing.png"]
    assert res["scrollWidth"] > WIDTH
    assert len(res["noLegend"]) == 1
    assert any("title\\nwith" in e for e in res["escapes"])


def test_screenshot(browser, bundled_report, tmp_path):
    """A screenshot of the rendered page is a picture of the page, not a blank or an error page."""
    import numpy as np
    from PIL import Image

    out = Path(os.environ.get("PSS_BENCH_REPORT_SCREENSHOT") or tmp_path / "shot.png")
    height = int(os.environ.get("PSS_BENCH_REPORT_SCREENSHOT_HEIGHT", "2400"))
    proc = run_chromium(browser, tmp_path / "profile", f"--window-size={WIDTH},{height}",
                        f"--screenshot={out}", (bundled_report / "report.html").as_uri())
    assert out.is_file(), proc.stderr[-2000:]
    with Image.open(out) as im:
        assert im.size == (WIDTH, height)
        px = np.asarray(im.convert("RGB"))
    assert px.std() > 20 and (px < 128).any(axis=2).mean() > 0.01  # text and charts, not a blank page


def test_report_with_further_metrics_renders_in_chromium(browser, sample_data, tmp_path):
    """``compare --metrics all --report``: the further-metrics table renders (no overflow, no escapes, † and Δ as text)."""
    from prediction_helpers import perturbed_prediction
    from pss_bench.cli import main

    s = sample_data / "coco_panoptic" / "panopticapi_sample" / "sample_data"
    gt_json, gt_dir = s / "panoptic_examples.json", s / "panoptic_examples"
    bad_json, _ = perturbed_prediction(gt_json, gt_dir, tmp_path / "raw", 4, "shift")
    rep = tmp_path / "rep"
    assert main(["compare", str(gt_json), str(bad_json), "--names", "good,bad", "--gt", str(gt_json), "--gt-dir",
                 str(gt_dir), "--workers", "1", "--no-cache", "--bootstrap", "50", "--metrics", "all",
                 "--report", str(rep)]) == 0
    res = rendered_checks(browser, rep, tmp_path / "work")
    assert res["broken"] == [] and res["escapes"] == [] and res["noLegend"] == []
    assert res["scrollWidth"] <= WIDTH, f"horizontal scroll: the page is {res['scrollWidth']} px wide"
    page = run_chromium(browser, tmp_path / "profile2", "--dump-dom", (rep / "report.html").as_uri()).stdout
    text = html.unescape(re.sub(r"<[^>]+>", " ", page.split('id="further"', 1)[1].split("</table>", 1)[0]))
    for label in ("Boundary PQ-Th", "PQ†-St", "Parsing Covering", "PQ large", "Δ bad"):
        assert label in text, label
