"""What the compare report shows: the dataset's colours, intervals, absent classes, provenance, the paper.

Charts and figures are inspected as matplotlib figures (``save_figure`` is intercepted), so a test
reads the artists that the PNG is drawn from: error bars, legend labels, titles, "absent" marks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from pss_bench.structures import Category, Segments

from conftest import FRAMES, K


@pytest.fixture()
def figures(monkeypatch):
    """Every figure a report function saves, kept open for inspection (the PNG is still written)."""
    import pss_bench.report.common as common
    import pss_bench.report.context_map as cmap
    import pss_bench.report.retrievals as retr

    kept = []
    real = common.save_figure

    def keep(fig, out):
        kept.append(fig)
        fig.canvas.draw()  # the texts as drawn
        import matplotlib.pyplot as plt

        with monkeypatch.context() as m:
            m.setattr(plt, "close", lambda *a, **k: None)
            return real(fig, out)

    for mod in (common, retr, cmap):
        monkeypatch.setattr(mod, "save_figure", keep)
    yield kept
    import matplotlib.pyplot as plt

    for f in kept:
        plt.close(f)


def _texts(fig) -> list[str]:
    from matplotlib.text import Text

    return [t.get_text() for t in fig.findobj(Text) if t.get_text()]


# --------------------------------------------------------------------------- palettes


def test_cityscapes_gt_json_colours(cityscapes_train_gt):
    """The colours of cityscapesscripts' panoptic JSON: car is Cityscapes' (0, 0, 142)."""
    from cityscapesscripts.helpers.labels import name2label

    from pss_bench.io.panoptic import load_panoptic_json
    from pss_bench.report.palette import dataset_palette

    gt_json, png_dir = cityscapes_train_gt
    gt = load_panoptic_json(gt_json, png_dir)
    pal = dataset_palette(gt.categories, gt_json)
    assert pal.colours[26] == (0, 0, 142) and pal.colours[7] == (128, 64, 128)
    assert all(pal.colours[c.id] == tuple(name2label[c.name].color) for c in gt.categories.values())
    assert pal.source == "the GT JSON's category colours"
    assert pal.hex(26) == "#00008e"


def test_coco_panoptic_json_colours(sample_data):
    from pss_bench.io.panoptic import load_panoptic_json
    from pss_bench.report.palette import dataset_palette

    path = sample_data / "coco_panoptic" / "panopticapi_sample" / "sample_data" / "panoptic_examples.json"
    gt = load_panoptic_json(path)
    pal = dataset_palette(gt.categories, path)
    raw = {c["id"]: tuple(c["color"]) for c in json.loads(path.read_text())["categories"]}
    assert len(pal.colours) == 133 and pal.colours == raw
    assert pal.colours[1] == (220, 20, 60)  # person


def test_colours_without_a_json_field_come_from_cityscapes_names_then_a_default(tmp_path):
    from pss_bench.report.palette import dataset_palette

    cats = [Category(26, "car", True), Category(7, "road", False), Category(300, "zebra", True),
            Category(301, "giraffe", True)]
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"categories": [{"id": 26, "name": "car", "isthing": 1}]}))  # no colours
    pal = dataset_palette(cats, gt)
    assert pal.colours[26] == (0, 0, 142) and pal.colours[7] == (128, 64, 128)
    assert pal.colours[300] != pal.colours[301]
    assert "Cityscapes" in pal.source and "tab20" in pal.source


def test_instance_shades_and_panoptic_colouring():
    from pss_bench.report.palette import (
        OUTSIDE_COLOUR,
        SHADE_DIST,
        Palette,
        colourise_panoptic,
        instance_shade,
    )

    base = (0, 0, 142)
    shades = [instance_shade(base, 26000 + i) for i in range(20)]
    assert all(max(abs(a - b) for a, b in zip(s, base)) <= SHADE_DIST for s in shades)
    assert len(set(shades)) >= 18  # cars tell apart
    assert instance_shade(base, 26003) == shades[3]  # the same on every run
    pal = Palette({7: (128, 64, 128), 26: base}, {7: "road", 26: "car"}, "test")
    ids = np.array([[7, 7, 26001], [26002, 0, -2]])
    segs = Segments(np.array([7, 26001, 26002]), np.array([7, 26, 26]), np.zeros(3, bool))
    img = colourise_panoptic(ids, segs, pal, things={26})
    assert tuple(img[0, 0]) == (128, 64, 128)
    assert tuple(img[0, 2]) == instance_shade(base, 26001) and tuple(img[1, 0]) == instance_shade(base, 26002)
    assert tuple(img[1, 1]) == (0, 0, 0) and tuple(img[1, 2]) == OUTSIDE_COLOUR


# --------------------------------------------------------------------------- figures


def test_retrieval_strip_titles_colours_and_legend(bundled_compare, figures, tmp_path):
    """Issue 23 item 21: titles break lines instead of printing a literal ``\\n``; the legend names the classes."""
    from pss_bench.report.palette import dataset_palette
    from pss_bench.report.retrievals import plot_retrievals, retrieval_panels, title_lines

    result, root = bundled_compare
    inst = result.instances["PSS"]
    row = int(np.flatnonzero(inst.category_ids == 24)[0])  # a person
    panels = retrieval_panels(inst, row, None, 3, root / "data" / "leftImg8bit")
    assert all("\n" in p.title and "\\n" not in p.title for p in panels)
    pal = dataset_palette(inst.gt.categories, inst.gt.path)
    plot_retrievals(panels, tmp_path / "s.png", suptitle=title_lines("a $title$", "second line"), palette=pal)
    texts = _texts(figures[-1])
    assert not [t for t in texts if "\\n" in t.replace("\\$", "")]
    assert any(t.startswith("query: person\n") for t in texts)
    legend = figures[-1].legends[0]
    names = {t.get_text() for t in legend.get_texts()}
    shown = set().union(*(p.classes for p in panels))
    from pss_bench.report.palette import SPECIAL

    assert names == {inst.gt.categories[c].name if c >= 0 else SPECIAL[c][0] for c in shown}
    assert "person" in names
    # Context crops are drawn in the dataset's colours: every colour of a context crop is a class colour
    # (or void / outside).
    allowed = {tuple(c) for c in pal.colours.values()} | {(0, 0, 0), (128, 128, 128)}
    assert {tuple(c) for c in panels[0].context.reshape(-1, 3)} <= allowed


def _bars(ax) -> tuple[int, int]:
    """``(bars with height > 0, error bar segments)`` of an axes."""
    from matplotlib.container import BarContainer, ErrorbarContainer

    bars = sum(1 for c in ax.containers if isinstance(c, BarContainer) for p in c.patches if p.get_height() > 0)
    errs = sum(len(seg.get_segments()) for c in ax.containers if isinstance(c, ErrorbarContainer)
               for seg in c.lines[2])
    return bars, errs


def test_pq_chart_has_intervals_legend_and_absent_classes(bundled_compare, figures, tmp_path):
    from pss_bench.report.charts import ABSENT_TEXT, plot_pq_bars

    result, _ = bundled_compare
    chart = plot_pq_bars(result, tmp_path / "pq.png")
    ax = figures[-1].axes[0]
    absent = [c for c in result.categories
              if not any(m.pq.per_class[c.id].present for m in result.models)]
    assert absent  # 8 SynthStreets frames have no wall, truck, ...
    assert [t.get_text() for t in ax.texts].count(ABSENT_TEXT) == len(absent)
    _, errs = _bars(ax)
    # one whisker per present class and model with an interval, none for an absent class
    with_interval = sum(1 for j, m in enumerate(result.models) for c in result.categories
                        if m.pq.per_class[c.id].present
                        and (iv := result.bootstrap.pq.models[j].per_class.get(c.id)) is not None
                        and iv.low is not None)
    assert errs == with_interval and with_interval >= 20
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["PSS", "UPSNet-style", "95% bootstrap interval"]
    assert [e.label for e in chart.legend] == labels and chart.path.is_file()


def test_pq_summary_and_ce_chart_intervals(bundled_compare, figures, tmp_path):
    from pss_bench.report.charts import plot_ce_bars, plot_pq_summary

    result, _ = bundled_compare
    plot_pq_summary(result, tmp_path / "s.png")
    ax = figures[-1].axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["PQ", "PQ-Th", "PQ-St"]
    assert _bars(ax)[1] == 3 * 2
    # The whisker of PSS's PQ is its bootstrap interval.
    iv = result.bootstrap.pq.models[0].rows["All"]["pq"]
    from matplotlib.container import ErrorbarContainer

    seg = next(c for c in ax.containers if isinstance(c, ErrorbarContainer)).lines[2][0].get_segments()[0]
    assert seg[:, 1] == pytest.approx([100 * iv.low, 100 * iv.high])
    plot_ce_bars(result, tmp_path / "ce.png")
    ax = figures[-1].axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"PSS", "UPSNet-style", "random bound", "oracle bound", "95% bootstrap interval"} <= set(labels)
    no_queries = [c for c in result.thing_categories if result.models[0].context_error.per_class[c.id].ce is None]
    assert [t.get_text() for t in ax.texts].count("no queries") == len(no_queries)
    assert ax.get_ylabel() == "Context Error (lower is better)"


def test_difference_chart_marks_the_significant_ones(bundled_compare, figures, tmp_path):
    from pss_bench.report.charts import plot_differences

    result, _ = bundled_compare
    chart = plot_differences(result, tmp_path / "d.png")
    fig = figures[-1]
    ax_pq, ax_ce = fig.axes[:2]
    pq = result.bootstrap.pq.differences[1]
    ce = result.bootstrap.context_error.differences[1]
    n_pq = sum(bool(d.significant) for d in [*(pq.rows[r]["pq"] for r in ("All", "Things", "Stuff")),
                                              *pq.per_class.values()])
    n_ce = sum(bool(d.significant) for d in [ce.ce, *ce.per_class.values()])
    assert n_pq > 0
    assert sum(t.get_text().strip() == "*" for t in ax_pq.texts) == n_pq
    assert sum(t.get_text().strip() == "*" for t in ax_ce.texts) == n_ce
    assert "UPSNet-style − PSS" in ax_pq.get_title()
    assert chart.legend[0].label.startswith("significant at 5%")
    assert fig.legends and len(fig.legends[0].get_texts()) == 3


def test_context_map_colour_by_context(bundled_compare, figures, tmp_path):
    from pss_bench.errors import PssBenchError
    from pss_bench.report.context_map import plot_context_map

    result, _ = bundled_compare
    inst = result.instances["PSS"]
    plot_context_map(inst, "person", tmp_path / "m.png", color_by="context", max_thumbnails=10)
    legends = figures[-1].legends
    titles = [lg.get_title().get_text() for lg in legends]
    assert titles[0].startswith("hidden context label") and titles[1].startswith("context mask classes")
    labels = {t.get_text() for t in legends[0].get_texts()}
    persons = inst.category_ids == 24
    assert labels == {str(v) for v in inst.labels[persons] if v is not None} | (
        {"(none)"} if any(v is None for v in inst.labels[persons]) else set())
    with pytest.raises(PssBenchError, match="no hidden context labels"):
        plot_context_map(dataclasses.replace(inst, labels=None), "person", tmp_path / "x.png", color_by="context")
    assert not (tmp_path / "x.png").exists()


# --------------------------------------------------------------------------- tables, provenance, paper


def test_class_detail_table(bundled_compare):
    from pss_bench.report.tables import class_detail_cells

    result, _ = bundled_compare
    cells = class_detail_cells(result)
    assert cells.headers == ["Category", "Model", "PQ [95% CI]", "SQ", "RQ", "TP", "FP", "FN"]
    assert len(cells.rows) == len(result.categories) * 2
    for row in cells.rows:
        cat = next(c for c in result.categories if row[0].rstrip(" *") == c.name)
        r = next(m for m in result.models if m.name == row[1]).pq.per_class[cat.id]
        assert row[5:] == [str(r.tp), str(r.fp), str(r.fn)]
        assert (row[2] == "absent") == (not r.present)
        if r.present:
            assert row[2].startswith(f"{100 * r.pq:.1f} [")


def test_provenance(bundled_compare):
    from pss_bench.demo import bundled_checkpoints
    from pss_bench.report.provenance import collect

    result, root = bundled_compare
    prov = collect(result, "pss-bench compare a b")
    gt = Path(result.gt_json)
    assert prov.gt_sha256 == hashlib.sha256(gt.read_bytes()).hexdigest() and prov.gt_images == FRAMES
    assert prov.command == "pss-bench compare a b"
    import pss_bench

    assert prov.version == pss_bench.__version__ and "UTC" in prov.created and "Python" in prov.machine
    for m, (name, ckpt) in zip(prov.models, bundled_checkpoints().items()):
        assert m.name == name and m.checkpoint_sha256 == hashlib.sha256(ckpt.read_bytes()).hexdigest()
        side = ckpt.with_suffix(".config.yaml")
        assert m.config_sha256 == hashlib.sha256(side.read_bytes()).hexdigest()
        assert m.manifest_sha256 is not None and m.model in ("pss-reference", "upsnet-style")
    assert json.loads(json.dumps(prov.to_dict()))["models"][0]["name"] == "PSS"


def _with_ce_difference(result, estimate, low, high, significant):
    """``result`` with its CE bootstrap difference (UPSNet-style − PSS) replaced."""
    from pss_bench.metrics.results import Difference

    bs = result.bootstrap
    ce = bs.context_error
    d = dataclasses.replace(ce.differences[1], ce=Difference(estimate, low, high, 0.002 if significant else 0.5,
                                                              significant))
    ce = dataclasses.replace(ce, differences=(None, d))
    return dataclasses.replace(result, bootstrap=dataclasses.replace(bs, context_error=ce))


def test_paper_lines(bundled_compare):
    from pss_bench.report.provenance import collect, paper_lines

    result, _ = bundled_compare
    prov = collect(result, None)
    lines = paper_lines(result, prov)
    assert "UPSNet 1.16" in lines[0] and "PSS 1.02" in lines[0]
    d = result.bootstrap.context_error.differences[1].ce  # UPSNet-style − PSS
    word = "inconclusive" if not d.significant else ("agrees" if d.estimate > 0 else "disagrees")
    assert word in lines[1]
    assert f"{-d.estimate:+.3f} [{-d.high:+.3f}, {-d.low:+.3f}]" in lines[1]  # PSS − UPSNet-style
    # UPSNet-style significantly lower: the reverse of the paper, and the report says where that is explained.
    rev = paper_lines(_with_ce_difference(result, -0.1, -0.15, -0.05, True), prov)[1]
    assert "disagrees with the paper" in rev and "docs/benchmarks.md" in rev and "+0.100 [+0.050, +0.150]" in rev
    agree = paper_lines(_with_ce_difference(result, 0.1, 0.05, 0.15, True), prov)[1]
    assert "agrees with the paper" in agree and "-0.100 [-0.150, -0.050]" in agree
    flat = paper_lines(_with_ce_difference(result, 0.01, -0.05, 0.07, False), prov)[1]
    assert "inconclusive" in flat
    other = dataclasses.replace(prov, models=tuple(dataclasses.replace(m, model="x") for m in prov.models))
    renamed = dataclasses.replace(result, models=tuple(dataclasses.replace(m, name=f"m{i}")
                                                       for i, m in enumerate(result.models)))
    assert "Not compared here" in paper_lines(renamed, other)[1]


def test_report_escapes_names_and_keeps_results_json(bundled_compare, tmp_path):
    """Autoescaped templates: a model name is text in the HTML, never markup; results.json is --json's."""
    from pss_bench.report.document import write_report

    result, _ = bundled_compare
    evil = '<img src=x onerror="alert(1)">&'
    models = (result.models[0], dataclasses.replace(result.models[1], name=evil))
    renamed = dataclasses.replace(result, models=models, instances={}, retrievals={})
    rep = write_report(renamed, tmp_path / "rep", context_maps=False)
    page = (rep / "report.html").read_text()
    assert "<img src=x" not in page and "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;&amp;" in page
    assert "<script" not in page and "http" not in page.replace("http-equiv", "")
    assert json.loads((rep / "results.json").read_text()) == json.loads(json.dumps(renamed.to_dict()))
    assert "\\n" not in (rep / "report.md").read_text()


def test_report_html_sections(bundled_report):
    page = (bundled_report / "report.html").read_text()
    for section in ("Verdict", "Against the paper", "Summary", "Charts", "Per class", "Retrievals",
                    "Context maps", "Provenance"):
        assert f">{section}<" in page, section
    assert f"K = {K}" in page
    assert "The strips show" in page or "all 5 retrievals are shown" in page
    prov = json.loads((bundled_report / "provenance.json").read_text())
    assert prov["gt_images"] == FRAMES and prov["command"].startswith("pss-bench compare")


def test_report_without_bootstrap_and_with_mathtext_names(bundled_compare, figures, tmp_path):
    """--bootstrap 0: no error bars, and the legends say so; a model named like mathtext draws as text."""
    from pss_bench.report.document import write_report
    from pss_bench.report.provenance import collect, paper_lines

    result, root = bundled_compare
    odd = dataclasses.replace(result.models[1], name="$x^$")
    plain = dataclasses.replace(result, bootstrap=None, models=(result.models[0], odd),
                                instances={"PSS": result.instances["PSS"], "$x^$": result.instances["UPSNet-style"]},
                                retrievals={"PSS": result.retrievals["PSS"],
                                            "$x^$": result.retrievals["UPSNet-style"]})
    rep = write_report(plain, tmp_path / "rep", images_root=root / "data" / "leftImg8bit", n_queries=1)
    assert not (rep / "differences.png").exists() and (rep / "pq_summary.png").is_file()
    legends = [{t.get_text() for t in ax.get_legend().get_texts()} for f in figures for ax in f.axes
               if ax.get_legend() is not None]
    assert sum("no intervals (--bootstrap 0)" in lg for lg in legends) == 3  # PQ summary, CE, PQ per class
    from matplotlib.container import ErrorbarContainer

    assert not [c for f in figures[:3] for ax in f.axes for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert any(r"prediction: \$x^\$" in t for f in figures for t in _texts(f))
    assert "no significance without intervals" in paper_lines(plain, collect(plain, None))[1]
