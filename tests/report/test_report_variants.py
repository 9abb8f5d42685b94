"""``compare --metrics ... --report``: the further metrics in report.md, report.html and results.json.

Two models on the two COCO panoptic sample images: the GT itself (``good``) and a shifted copy
(``bad``). Every number the report prints is checked against ``compare --json`` of the same run.
"""

from __future__ import annotations

import html
import json
import re

import pytest

from prediction_helpers import perturbed_prediction
from pss_bench.cli import main

#: label -> (key in bootstrap.variants, row, score as in the JSON)
ROWS = {
    "Boundary PQ": ("boundary_pq", "All", "pq"), "Boundary PQ-Th": ("boundary_pq", "Things", "pq"),
    "Boundary PQ-St": ("boundary_pq", "Stuff", "pq"), "Boundary SQ": ("boundary_pq", "All", "sq"),
    "Boundary RQ": ("boundary_pq", "All", "rq"),
    "PQ†": ("pq_dagger", "All", "pq"), "PQ†-Th": ("pq_dagger", "Things", "pq"), "PQ†-St": ("pq_dagger", "Stuff", "pq"),
    "Parsing Covering": ("pc", "All", "pc"),
    "PQ small": ("pq_area/small", "All", "pq"), "PQ medium": ("pq_area/medium", "All", "pq"),
    "PQ large": ("pq_area/large", "All", "pq"),
}


def _num(x: float, sign: bool = False) -> str:
    return f"{round(100 * x, 1) + 0.0:{'+' if sign else ''}.1f}"


def _cell(iv: dict, sign: bool = False) -> str:
    """The report's ``"value [low, high]"`` in %, written here from the JSON (values far from 0 in these data)."""
    return f"{_num(iv['estimate'], sign)} [{_num(iv['low'], sign)}, {_num(iv['high'], sign)}]"


def _p(d: dict) -> str:
    p = "<0.001" if d["p_value"] < 0.001 else f"{d['p_value']:.3f}"
    return f"{p} *" if d["significant"] else p


@pytest.fixture(scope="module")
def coco(sample_data, tmp_path_factory):
    s = sample_data / "coco_panoptic" / "panopticapi_sample" / "sample_data"
    gt_json, gt_dir = s / "panoptic_examples.json", s / "panoptic_examples"
    root = tmp_path_factory.mktemp("variants_report")
    bad_json, bad_dir = perturbed_prediction(gt_json, gt_dir, root / "raw", 4, "shift")
    return root, gt_json, gt_dir, bad_json


def _compare(coco, name: str, *extra: str, capsys=None) -> tuple:
    root, gt_json, gt_dir, bad_json = coco
    rep, js = root / f"rep_{name}", root / f"{name}.json"
    args = ["compare", str(gt_json), str(bad_json), "--names", "good,bad", "--gt", str(gt_json),
            "--gt-dir", str(gt_dir), "--workers", "1", "--no-cache", "--bootstrap", "60", "--seed", "5",
            "--report", str(rep), "--json", str(js), *extra]
    assert main(args) == 0
    return rep, json.loads(js.read_text())


@pytest.fixture(scope="module")
def with_metrics(coco):
    return _compare(coco, "all", "--metrics", "all")


def _md_rows(md: str) -> dict[str, list[str]]:
    section = md.split("### Further metrics", 1)[1].split("## Charts", 1)[0]
    rows = {}
    for line in section.splitlines():
        if line.startswith("| ") and not line.startswith("| Metric"):
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            rows[cells[0]] = cells[1:]
    return rows


def _html_rows(page: str) -> dict[str, list[str]]:
    section = page.split('<h3 id="further">Further metrics</h3>', 1)[1].split("</table>", 1)[0]
    rows = {}
    for tr in re.findall(r"<tr>(.*?)</tr>", section, re.S):
        cells = [html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", tr, re.S)]
        if cells:
            rows[cells[0]] = cells[1:]
    return rows


def test_report_shows_every_metric_with_intervals_and_differences(with_metrics):
    rep, out = with_metrics
    variants = out["bootstrap"]["variants"]
    assert variants["pc"]["names"] == ["good", "bad"]
    md_rows = _md_rows((rep / "report.md").read_text(encoding="utf-8"))
    html_rows = _html_rows((rep / "report.html").read_text(encoding="utf-8"))
    assert list(md_rows) == list(ROWS) and list(html_rows) == list(ROWS)
    for label, (key, row, score) in ROWS.items():
        v = variants[key]
        good, bad = (m["rows"][row][score] for m in v["models"])
        d = v["differences"][1]["rows"][row][score]
        want = [_cell(good), _cell(bad), _cell(d, sign=True), _p(d)]
        assert md_rows[label] == want, label
        assert html_rows[label] == want, label
    # the values are the evaluation's (the point estimates of compare --json)
    bad_pq = out["models"][1]["pq"]
    assert md_rows["Parsing Covering"][1].startswith(_num(bad_pq["pc"]["All"]["pc"]))
    assert md_rows["PQ†-St"][1].startswith(_num(bad_pq["pq_dagger"]["Stuff"]["pq"]))
    assert md_rows["PQ medium"][1].startswith(_num(bad_pq["pq_area"]["medium"]["All"]["pq"]))
    assert md_rows["Boundary RQ"][1].startswith(_num(bad_pq["boundary_pq"]["All"]["rq"]))
    page = (rep / "report.html").read_text(encoding="utf-8")
    assert '<a href="#further">Further metrics</a>' in page
    md = (rep / "report.md").read_text(encoding="utf-8")
    assert "dilation ratio 0.02" in md and "60 paired bootstrap resamples" in md and "Δ = model − good" in md


def test_results_json_is_compare_json_with_the_metrics(with_metrics):
    rep, out = with_metrics
    saved = json.loads((rep / "results.json").read_text(encoding="utf-8"))
    assert saved == out
    assert list(saved["bootstrap"]["variants"]) == ["boundary_pq", "pq_dagger", "pc", "pq_area/small",
                                                    "pq_area/medium", "pq_area/large"]
    assert all("boundary_pq" in m["pq"] and "pc" in m["pq"] for m in saved["models"])


def test_pq_dagger_and_pc_json_carry_only_their_fields(with_metrics):
    _, out = with_metrics
    v = out["bootstrap"]["variants"]
    for key, rows, scores in (("pq_dagger", {"All", "Things", "Stuff"}, {"pq"}), ("pc", {"All"}, {"pc"}),
                              ("boundary_pq", {"All", "Things", "Stuff"}, {"pq", "sq", "rq"}),
                              ("pq_area/large", {"All", "Things", "Stuff"}, {"pq", "sq", "rq"})):
        for m in v[key]["models"]:
            assert set(m["rows"]) == rows and all(set(r) == scores for r in m["rows"].values()), key
        d = v[key]["differences"][1]
        assert set(d["rows"]) == rows and all(set(r) == scores for r in d["rows"].values()), key
    pc = v["pc"]["models"][0]
    assert set(pc) == {"rows", "per_class", "classes"} and set(pc["classes"]) == {"All"}
    assert set(v["pq_dagger"]["models"][0]) == {"rows", "per_class", "few_segments", "classes", "gt_segments", "no_gt"}
    # PC's value is the evaluation's PC, under its own name
    assert v["pc"]["models"][1]["rows"]["All"]["pc"]["estimate"] == pytest.approx(
        out["models"][1]["pq"]["pc"]["All"]["pc"], abs=1e-12)


def test_report_without_metrics_has_no_further_section(coco):
    rep, out = _compare(coco, "plain")
    md = (rep / "report.md").read_text(encoding="utf-8")
    page = (rep / "report.html").read_text(encoding="utf-8")
    assert "Further metrics" not in md and "Further metrics" not in page and 'id="further"' not in page
    assert "variants" not in out["bootstrap"]
    assert "Confidence intervals and significance" in md  # the PQ intervals are still there


def test_report_with_metrics_but_no_bootstrap_shows_the_values(coco):
    root, gt_json, gt_dir, bad_json = coco
    rep = root / "rep_noboot"
    assert main(["compare", str(gt_json), str(bad_json), "--names", "good,bad", "--gt", str(gt_json),
                 "--gt-dir", str(gt_dir), "--workers", "1", "--no-cache", "--bootstrap", "0",
                 "--metrics", "pc,pq-dagger", "--report", str(rep), "--json", str(root / "noboot.json")]) == 0
    out = json.loads((root / "noboot.json").read_text())
    rows = _md_rows((rep / "report.md").read_text(encoding="utf-8"))
    assert list(rows) == ["PQ†", "PQ†-Th", "PQ†-St", "Parsing Covering"]
    assert rows["Parsing Covering"] == [_num(out["models"][0]["pq"]["pc"]["All"]["pc"]),
                                        _num(out["models"][1]["pq"]["pc"]["All"]["pc"])]
    assert "no intervals (run with --bootstrap N)" in (rep / "report.md").read_text(encoding="utf-8")


def test_pq_bootstrap_gives_each_metric_compares_intervals(coco, capsys):
    """``pq --bootstrap 50 --metrics all``: each metric's intervals are compare's for that one model, same seed."""
    root, gt_json, gt_dir, bad_json = coco
    common = ["--gt", str(gt_json), "--gt-dir", str(gt_dir), "--workers", "1", "--no-cache", "--bootstrap", "50",
              "--seed", "3", "--metrics", "all", "--json", "-"]
    assert main(["pq", str(bad_json), *common]) == 0
    captured = capsys.readouterr()
    pq = json.loads(captured.out)
    assert "compare" not in captured.err  # no note pointing elsewhere for the intervals
    assert main(["compare", str(bad_json), *common]) == 0
    cmp = json.loads(capsys.readouterr().out)["bootstrap"]["variants"]
    where = {"boundary_pq": pq["boundary_pq"], "pq_dagger": pq["pq_dagger"], "pc": pq["pc"],
             "pq_area/small": pq["pq_area"]["small"], "pq_area/medium": pq["pq_area"]["medium"],
             "pq_area/large": pq["pq_area"]["large"]}
    assert set(cmp) == set(where)
    for key, block in where.items():
        b = block["bootstrap"]
        assert b["settings"] == cmp[key]["settings"] and b["settings"]["seed"] == 3
        assert b["models"] == cmp[key]["models"] and b["differences"] == [None], key
        assert b["models"][0]["rows"]["All"], key
    # the estimates are the metric's own numbers beside them
    assert pq["pc"]["bootstrap"]["models"][0]["rows"]["All"]["pc"]["estimate"] == pytest.approx(
        pq["pc"]["All"]["pc"], abs=1e-12)
    assert pq["boundary_pq"]["bootstrap"]["models"][0]["rows"]["Things"]["sq"]["estimate"] == pytest.approx(
        pq["boundary_pq"]["Things"]["sq"], abs=1e-12)
    # PQ's own bootstrap stays where it was
    assert pq["bootstrap"]["models"][0]["rows"]["All"]["pq"]["estimate"] == pytest.approx(pq["All"]["pq"], abs=1e-12)


def test_pq_tables_print_each_metrics_interval(coco, capsys):
    root, gt_json, gt_dir, bad_json = coco
    assert main(["pq", str(bad_json), "--gt", str(gt_json), "--gt-dir", str(gt_dir), "--workers", "1",
                 "--no-cache", "--bootstrap", "30", "--metrics", "all"]) == 0
    out = capsys.readouterr().out
    for col in ("PQ 95% CI", "PQ† 95% CI", "PC 95% CI"):
        assert col in out, col
    assert out.count("30 bootstrap resamples of the 2 images") == 5  # PQ, Boundary PQ, PQ†, PC, PQ by size
