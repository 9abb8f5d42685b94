"""``pss-bench compare``: one table, --json, --report, shared GT decoding, no output on failure.

The data: a tiny SynthStreets val set (4 frames, 128x256) and prediction
directories written with PredictionWriter: ``ctx`` (panoptic = GT, each
instance embedded by its own context descriptor: a near-oracle retrieval),
``rand`` (GT shifted by 3 px, random embeddings), ``pqonly`` (no embeddings)
and ``embonly`` (embeddings, no panoptic prediction).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from pss_bench.cli import main
from pss_bench.data.synthstreets import generate
from pss_bench.evaluation.compare import compare_models, instance_context_errors, pick_queries
from pss_bench.evaluation.context_error import evaluate_context_error
from pss_bench.evaluation.pq import evaluate_pq
from pss_bench.io.panoptic import load_panoptic_json, read_id_png
from pss_bench.io.prediction import PredictionWriter
from pss_bench.metrics.bootstrap import BootstrapSettings, expanded_p_value
from pss_bench.metrics.context_error import image_context_descriptors

K = 5
PERSON, RIDER, CAR, BICYCLE = 24, 25, 26, 33


def _write_pred(out: Path, gt_json: Path, *, shift: int | None, emb: str | None, seed: int = 0,
                skip_category: int | None = None) -> Path:
    gt = load_panoptic_json(gt_json, role="gt")
    raw = json.loads(gt_json.read_text())
    cats = list(gt.categories.values())
    rng = np.random.default_rng(seed)
    with PredictionWriter(out, out.name, gt_json=str(gt_json)) as w:
        for ann, rann in zip(gt.annotations, raw["annotations"]):
            ids = read_id_png(gt.png_path(ann))
            if shift is not None:
                p = np.roll(ids, shift, axis=1)
                segs = [{"id": s["id"], "category_id": s["category_id"]}
                        for s in rann["segments_info"] if (p == s["id"]).any()]
                w.add_panoptic(ann.image_id, rann["file_name"], p, segs)
            if emb is not None:
                d = image_context_descriptors(ids, ann.segments, cats)
                if emb == "context":
                    e = np.sqrt(d.distributions().reshape(len(d.segment_ids), -1)) + 1e-3
                else:
                    e = rng.normal(size=(len(d.segment_ids), 8))
                keep = d.category_ids != skip_category
                w.add_embeddings(ann.image_id, d.segment_ids[keep], e[keep])
        w.commit(categories=raw["categories"])
    return out


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmp")
    data = root / "synth"
    generate(data, train=0, val=4, seed=1, height=128, width=256)
    gt_json = data / "gtFine" / "cityscapes_panoptic_val.json"
    preds = {
        "ctx": _write_pred(root / "ctx", gt_json, shift=0, emb="context"),
        "rand": _write_pred(root / "rand", gt_json, shift=3, emb="random"),
        "pqonly": _write_pred(root / "pqonly", gt_json, shift=1, emb=None),
        "embonly": _write_pred(root / "embonly", gt_json, shift=None, emb="random", seed=1),
        "nocar": _write_pred(root / "nocar", gt_json, shift=None, emb="context", skip_category=CAR),
    }
    return {"root": root, "gt": gt_json, "images": data / "leftImg8bit", "preds": preds}


def _args(synth, *names):
    return [str(synth["preds"][n]) for n in names] + ["--gt", str(synth["gt"]), "--k", str(K)]


def _row(out: str, name: str) -> list[str]:
    line = next(line for line in out.splitlines() if re.match(rf"^\W*{re.escape(name)}\s", line))
    return [c.strip() for c in re.split(r"[│|]", line) if c.strip()]


def test_table_and_json_rank_models(synth, tmp_path, capsys):
    out = tmp_path / "res.json"
    assert main(["compare", *_args(synth, "ctx", "rand", "pqonly"), "--json", str(out), "--no-cache"]) == 0
    cap = capsys.readouterr()
    res = json.loads(out.read_text())
    assert [m["name"] for m in res["models"]] == ["ctx", "rand", "pqonly"]
    assert set(res["models"][0]) >= {"name", "pred_dir", "pq", "context_error"}
    ctx, rand, pqonly = res["models"]
    # PQ: the exact GT copy scores 1, the shifted ones less.
    assert ctx["pq"]["All"]["pq"] == pytest.approx(1.0)
    assert rand["pq"]["All"]["pq"] < pqonly["pq"]["All"]["pq"] < 1.0
    # CE: context-descriptor embeddings beat random ones and sit between the bounds.
    ce_c, ce_r = ctx["context_error"]["mean"]["ce"], rand["context_error"]["mean"]["ce"]
    b = res["bounds"]
    assert b["mean"]["oracle"] <= ce_c < ce_r
    assert ce_c < b["mean"]["random"]
    assert b["consistent"] is True and b["source"] == "ctx"
    assert pqonly["context_error"] is None and pqonly["notes"]
    assert res["reference"] == "ctx"
    assert rand["relative_mean_ce"] == pytest.approx((ce_r - ce_c) / ce_c)
    assert ctx["relative_mean_ce"] == pytest.approx(0.0)
    # One table on stdout; the relative difference as the paper prints it.
    assert cap.out.count("Model") == 1
    r_ctx, r_rand, r_pq = _row(cap.out, "ctx"), _row(cap.out, "rand"), _row(cap.out, "pqonly")
    assert r_ctx[1] == "100.0" and r_ctx[-1] == "ref"
    assert r_rand[-1] == f"{100 * (ce_r - ce_c) / ce_c:+.1f}%"
    assert r_rand[-2] == f"{ce_r:.3f}" and r_ctx[-2] == f"{ce_c:.3f}"
    assert r_pq[1] == f"{100 * pqonly['pq']['All']['pq']:.1f}"
    assert r_pq[6:] == ["—"] * (len(r_pq) - 6)
    assert _row(cap.out, "(random)")[-1] == f"{b['mean']['random']:.3f}"
    assert _row(cap.out, "(oracle)")[-1] == f"{b['mean']['oracle']:.3f}"
    per_class = ctx["context_error"]["per_class"]
    assert _row(cap.out, "(queries)")[1:] == [str(r["queries"]) for r in per_class.values()] + \
        [str(ctx["context_error"]["mean"]["queries"])]
    assert "wrote" in cap.err and "pqonly" in cap.err  # the missing-CE note is a warning on stderr


def test_matches_the_single_model_evaluators(synth, tmp_path):
    preds, gt = synth["preds"], synth["gt"]
    res = compare_models([preds["ctx"], preds["rand"]], gt, k=K, use_cache=False)
    for m, p in zip(res.models, (preds["ctx"], preds["rand"])):
        assert m.pq.to_dict() == evaluate_pq(p, gt, use_cache=False).to_dict()
        assert m.context_error.to_dict() == evaluate_context_error(p, gt, k=K, use_cache=False).to_dict()


def test_gt_decoded_once_without_cache(synth, monkeypatch):
    """--no-cache: the second model reuses the first one's GT decoding (per metric)."""
    import pss_bench.evaluation.instances as ce_mod  # the GT descriptors of the Context Error
    import pss_bench.evaluation.pq as pq_mod

    reads: dict[str, list[str]] = {"pq": [], "ce": []}

    def counting(kind, real):  # counts decodes (the PNG bytes are read for the cache key anyway)
        def decode(png, *a, **kw):
            reads[kind].append(str(Path(png.path).resolve()))
            return real(png, *a, **kw)
        return decode

    monkeypatch.setattr(pq_mod, "decode_id_words", counting("pq", pq_mod.decode_id_words))
    monkeypatch.setattr(ce_mod, "decode_ids", counting("ce", ce_mod.decode_ids))
    assert main(["compare", *_args(synth, "ctx", "rand"), "--no-cache", "--workers", "1"]) == 0
    gt_pngs = [str(p.resolve()) for p in (synth["gt"].parent / "cityscapes_panoptic_val").glob("*.png")]
    assert len(gt_pngs) == 4
    for name in gt_pngs:
        assert reads["pq"].count(name) == 1
        assert reads["ce"].count(name) == 1
    assert len(reads["pq"]) == 4 + 2 * 4  # GT once + each model's predictions


def test_embeddings_only_and_reference_is_first_with_ce(synth, capsys):
    assert main(["compare", *_args(synth, "pqonly", "embonly", "ctx"), "--json", "-", "--cache-dir",
                 str(synth["root"] / "cache")]) == 0
    res = json.loads(capsys.readouterr().out)
    pqonly, embonly, ctx = res["models"]
    assert embonly["pq"] is None and embonly["context_error"] is not None
    assert res["reference"] == "embonly"
    assert ctx["relative_mean_ce"] < 0  # better than the random embeddings
    assert list((synth["root"] / "cache").rglob("*.desc")) and list((synth["root"] / "cache").rglob("*.runs"))


def test_instance_ce_agrees_with_the_evaluator(synth):
    res = compare_models([synth["preds"]["ctx"], synth["preds"]["rand"]], synth["gt"], k=K, keep_instances=True)
    for m in res.models:
        inst = res.instances[m.name]
        ce = instance_context_errors(inst, K)
        for cid, row in m.context_error.per_class.items():
            sel = (inst.category_ids == cid) & np.isfinite(ce)
            assert int(sel.sum()) == row.queries
            if row.queries:
                assert ce[sel].mean() == pytest.approx(row.ce, rel=1e-9)
    queries = pick_queries(res, 3)
    assert len(queries) == 3
    diffs = [abs(q.ce["ctx"] - q.ce["rand"]) for q in queries]
    assert diffs == sorted(diffs, reverse=True)
    a, b = (instance_context_errors(res.instances[n], K) for n in ("ctx", "rand"))
    both = np.isfinite(a) & np.isfinite(b)  # same instance sets here: rows correspond
    assert diffs[0] == pytest.approx(np.max(np.abs(a - b)[both]))
    assert pick_queries(res, 3) == queries  # deterministic


def _written(folder: Path) -> list[str]:
    """What is in ``folder``, hidden staging folders included, but not the test's GT cache."""
    return sorted(p.name for p in folder.iterdir() if p.name != "pss-cache")


def _links(text: str, pattern: str) -> list[str]:
    return re.findall(pattern, text)


def test_report_writes_every_file(synth, tmp_path, capsys):
    rep, js = tmp_path / "rep", tmp_path / "res.json"
    args = ["compare", *_args(synth, "ctx", "rand", "pqonly"), "--names", "A,B,C", "--report", str(rep),
            "--images", str(synth["images"]), "--json", str(js)]
    assert main(args) == 0
    capsys.readouterr()
    for name in ("report.md", "report.html", "results.json", "ce_per_category.png", "pq_per_class.png"):
        assert (rep / name).is_file() and (rep / name).stat().st_size > 0, name
    assert json.loads((rep / "results.json").read_text()) == json.loads(js.read_text())
    md = (rep / "report.md").read_text()
    md_links = _links(md, r"!\[[^\]]*\]\(([^)]+)\)")
    html = (rep / "report.html").read_text()
    html_links = _links(html, r'<img src="([^"]+)"')
    strips = sorted(p.relative_to(rep).as_posix() for p in (rep / "retrievals").glob("q*_m*.png"))
    assert len(strips) == 3 * 2  # 3 queries x the 2 models with embeddings
    panels = sorted(p.relative_to(rep).as_posix() for p in (rep / "retrievals").glob("q*_panoptic.png"))
    assert len(panels) == 3  # one GT / predictions panel per query
    maps = sorted(p.relative_to(rep).as_posix() for p in (rep / "context_maps").glob("*.png"))
    assert len(maps) == 2  # one context map per model with embeddings
    charts = ["ce_per_category.png", "differences.png", "pq_per_class.png", "pq_summary.png"]
    every_png = sorted(p.relative_to(rep).as_posix() for p in rep.rglob("*.png"))
    assert every_png == sorted([*charts, *strips, *panels, *maps])
    for links in (md_links, html_links):  # every picture written is shown, and only those
        assert sorted(set(links)) == every_png
    all_md = _links(md, r"\]\(([^)]+)\)")
    all_html = _links(html, r'(?:src|href)="([^"]+)"')
    assert "results.json" in all_md and "results.json" in all_html
    assert "provenance.json" in all_md and "provenance.json" in all_html
    prov = json.loads((rep / "provenance.json").read_text())
    assert prov["command"] == "pss-bench " + " ".join(args) and prov["gt_images"] == 4
    assert [m["name"] for m in prov["models"]] == ["A", "B", "C"]
    for link in all_md + all_html:
        if link.startswith("#"):  # the HTML's table of contents: an id of the page
            assert f'id="{link[1:]}"' in html, link
        else:
            assert (rep / link).is_file(), link
    for link in md_links:
        f = rep / link
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f.stat().st_size > 1000
    assert "http" not in html and "<script" not in html  # self-contained
    for name in ("A", "B", "C"):
        assert f"| {name} |" in md
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left
    # A second run replaces the earlier report.
    (rep / "stale.txt").write_text("x")
    assert main(args) == 0
    assert not (rep / "stale.txt").exists() and (rep / "report.md").is_file()


def test_report_without_images_skips_strips(synth, tmp_path):
    rep = tmp_path / "rep"
    assert main(["compare", *_args(synth, "pqonly"), "--report", str(rep)]) == 0
    md = (rep / "report.md").read_text()
    assert "--images" in md and not (rep / "retrievals").exists()
    assert not (rep / "ce_per_category.png").exists() and (rep / "pq_per_class.png").is_file()
    assert "no Context Error" in md


def test_bad_manifest_fails_and_writes_nothing(synth, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.json").write_text(json.dumps({"format": "something-else", "version": 1}))
    rep, js = tmp_path / "rep", tmp_path / "res.json"
    code = main(["compare", str(synth["preds"]["ctx"]), str(bad), "--gt", str(synth["gt"]), "--report", str(rep),
                 "--images", str(synth["images"]), "--json", str(js)])
    assert code == 1
    err = capsys.readouterr().err
    assert "manifest.json" in err and "format" in err
    assert _written(tmp_path) == ["bad"]


def test_failure_after_evaluation_started_writes_nothing(synth, tmp_path, capsys):
    """A prediction PNG that does not match its JSON: exit 1, no report, no JSON."""
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(synth["preds"]["rand"], broken)
    pan = json.loads((broken / "panoptic.json").read_text())
    pan["annotations"][-1]["segments_info"].append({"id": 999999, "category_id": 26})
    (broken / "panoptic.json").write_text(json.dumps(pan))
    rep, js = tmp_path / "rep", tmp_path / "res.json"
    assert main(["compare", str(synth["preds"]["ctx"]), str(broken), "--gt", str(synth["gt"]),
                 "--report", str(rep), "--json", str(js)]) == 1
    assert "999999" in capsys.readouterr().err
    assert _written(tmp_path) == ["broken"]


@pytest.mark.parametrize("extra", [
    ["--names", "a"],
    ["--names", "a,a"],
    ["--cache-dir", "x", "--no-cache"],
    ["--images", "."],
])
def test_usage_errors(synth, extra, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["compare", *_args(synth, "ctx", "rand"), *extra]) == 2
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_replace_a_foreign_folder(synth, tmp_path, capsys):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    assert main(["compare", *_args(synth, "pqonly"), "--report", str(target)]) == 1
    assert "not a pss-bench report" in capsys.readouterr().err
    assert [p.name for p in target.iterdir()] == ["notes.txt"]


def test_report_failure_keeps_the_earlier_report(synth, tmp_path, capsys):
    """Images of the wrong size fail while drawing the strips: the earlier report stays as it was."""
    from PIL import Image

    rep, js = tmp_path / "rep", tmp_path / "res.json"
    assert main(["compare", *_args(synth, "pqonly"), "--report", str(rep)]) == 0
    before = {p.name: p.read_bytes() for p in rep.iterdir()}
    small = tmp_path / "small"
    small.mkdir()
    for f in synth["images"].rglob("*.png"):
        Image.open(f).resize((64, 32)).save(small / f.name)
    code = main(["compare", *_args(synth, "ctx", "rand"), "--report", str(rep), "--images", str(small),
                 "--json", str(js)])
    assert code == 1
    assert "64x32" in capsys.readouterr().err
    assert _written(tmp_path) == ["rep", "small"]
    assert {p.name: p.read_bytes() for p in rep.iterdir()} == before


def test_relative_mean_ce_over_the_classes_both_models_have(synth, capsys):
    """Issue 13 item 3: a model without car embeddings is compared with the reference on the other classes only."""
    res = compare_models([synth["preds"]["rand"], synth["preds"]["nocar"]], synth["gt"], k=K, use_cache=False)
    ref, other = (m.context_error for m in res.models)
    assert ref.per_class[CAR].queries > 0 and other.per_class[CAR].queries == 0
    # Informative classes of this set (K = 5): person and car; the model has no car, so Δ is over person only.
    want = (other.per_class[PERSON].ce - ref.per_class[PERSON].ce) / ref.per_class[PERSON].ce
    assert res.relative_mean_ce(1) == pytest.approx(want)
    assert res.delta_classes(1) == (PERSON,)
    # The plain mean over all classes with queries: person, rider and bicycle in common.
    every = compare_models([synth["preds"]["rand"], synth["preds"]["nocar"]], synth["gt"], k=K, use_cache=False,
                           all_classes=True)
    ref, other = (m.context_error for m in every.models)
    common = (PERSON, RIDER, BICYCLE)
    want = np.mean([other.per_class[c].ce for c in common]) / np.mean([ref.per_class[c].ce for c in common]) - 1
    assert every.relative_mean_ce(1) == pytest.approx(want)
    # ... and the table says so.
    assert main(["compare", *_args(synth, "rand", "nocar"), "--no-cache", "--bootstrap", "200"]) == 0
    out = capsys.readouterr().out
    assert "Δ mean CE of nocar is over the 1 class both it and rand have (without car)" in " ".join(out.split())
    assert _row(out, "nocar")[-1] == f"{100 * res.relative_mean_ce(1):+.1f}%"
    payload = res.to_dict()
    assert payload["models"][1]["delta_classes"] == [PERSON]
    boot = compare_models([synth["preds"]["rand"], synth["preds"]["nocar"]], synth["gt"], k=K, use_cache=False,
                          bootstrap=BootstrapSettings(200)).bootstrap.context_error.differences[1]
    assert boot.classes == (PERSON,)
    assert boot.relative.estimate == pytest.approx(res.relative_mean_ce(1))


def test_confidence_intervals_and_paired_differences(synth, tmp_path, capsys):
    out = tmp_path / "res.json"
    assert main(["compare", *_args(synth, "ctx", "rand", "pqonly"), "--json", str(out), "--no-cache",
                 "--seed", "3"]) == 0
    table = capsys.readouterr().out
    res = json.loads(out.read_text())
    bs = res["bootstrap"]
    assert (bs["resamples"], bs["level"], bs["seed"]) == (1000, 0.95, 3)  # on by default
    assert bs["pq"]["names"] == ["ctx", "rand", "pqonly"] and bs["context_error"]["names"] == ["ctx", "rand"]
    ctx_pq, rand_pq = res["models"][0]["pq"], res["models"][1]["pq"]
    rows = [m["rows"]["All"]["pq"] for m in bs["pq"]["models"]]
    assert rows[0]["estimate"] == pytest.approx(ctx_pq["All"]["pq"])
    assert rows[1]["estimate"] == pytest.approx(rand_pq["All"]["pq"])
    assert rows[1]["low"] <= rows[1]["estimate"] <= rows[1]["high"]
    d = bs["pq"]["differences"][1]["rows"]["All"]["pq"]
    assert bs["pq"]["differences"][0] is None
    assert d["estimate"] == pytest.approx(rand_pq["All"]["pq"] - ctx_pq["All"]["pq"])
    # Every resample has Δ < 0 (raw p = 2 / 1001), but 4 images are 4 images: the expanded percentile's
    # t with 3 degrees of freedom leaves p = 0.075, not significant.
    p4 = float(expanded_p_value(2 / 1001, 4))
    assert d["high"] < 0 and d["p_value"] == pytest.approx(p4) and d["significant"] is False
    ce = bs["context_error"]
    ce_ctx = res["models"][0]["context_error"]
    assert ce["models"][0]["mean"]["ce"]["estimate"] == pytest.approx(ce_ctx["mean"]["ce"])
    dce = ce["differences"][1]
    # Each resample re-forms its gallery from the drawn images; on 4 images some resamples tie (Δ = 0).
    assert dce["paired"] is True and dce["ce"]["estimate"] > 0 and dce["ce"]["low"] > -1e-6
    assert dce["ce"]["p_value"] >= p4 - 1e-12 and dce["ce"]["significant"] is False
    assert dce["relative"]["estimate"] == pytest.approx(res["models"][1]["relative_mean_ce"])
    # The second table: one row per metric, the Δ with its p-value, starred when significant.
    assert "confidence intervals" in table and "Δ rand" in table and "Δ pqonly" in table
    pq_row = _row(table, "PQ")
    assert pq_row[1] == f"{100 * rows[0]['estimate']:.1f} [{100 * rows[0]['low']:.1f}, {100 * rows[0]['high']:.1f}]"
    # Columns: Metric, ctx, rand, pqonly, Δ rand, p, Δ pqonly, p.
    assert pq_row[4] == f"{100 * d['estimate']:+.1f} [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}]"
    assert pq_row[5] == f"{p4:.3f}"
    # The caption names what the intervals cannot show: SQ's rule, classes with few GT segments.
    flat = " ".join(table.split())
    assert "SQ counts 0 for a class without a TP" in flat
    few = {c for m in bs["pq"]["models"] for ids in m["few_segments"].values() for c in ids}
    assert few and "the mean includes classes with fewer than 10 GT segments" in flat  # 4 frames: few of all
    assert _row(table, "mean CE")[5] == f"{dce['ce']['p_value']:.3f}" and _row(table, "mean CE")[6:] == ["—", "—"]


def test_intervals_equal_the_single_model_commands(synth, capsys):
    """Per-stratum seeds: a model's intervals do not depend on the models compared with it."""
    assert main(["compare", *_args(synth, "ctx", "rand"), "--json", "-", "--no-cache", "--bootstrap", "300"]) == 0
    bs = json.loads(capsys.readouterr().out)["bootstrap"]
    rand = str(synth["preds"]["rand"])
    assert main(["pq", rand, "--json", "-", "--no-cache", "--bootstrap", "300"]) == 0
    assert json.loads(capsys.readouterr().out)["bootstrap"]["models"][0] == bs["pq"]["models"][1]
    assert main(["context-error", rand, "--k", str(K), "--json", "-", "--no-cache", "--bootstrap", "300"]) == 0
    assert json.loads(capsys.readouterr().out)["bootstrap"]["models"][0] == bs["context_error"]["models"][1]


def test_bootstrap_off_and_all_classes(synth, capsys):
    assert main(["compare", *_args(synth, "ctx", "rand"), "--json", "-", "--no-cache", "--bootstrap", "0",
                 "--all-classes"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["bootstrap"] is None and res["all_classes"] is True
    ce = res["models"][0]["context_error"]
    assert ce["mean"] == ce["mean_all_classes"]
    with_q = [r for r in ce["per_class"].values() if r["queries"]]
    assert ce["mean"]["classes"] == len(with_q) and any(not r["informative"] for r in with_q)
    assert main(["compare", *_args(synth, "ctx", "rand"), "--no-cache", "--bootstrap", "0"]) == 0
    out = capsys.readouterr().out
    assert "confidence intervals" not in out and "°" in out  # uninformative classes still marked
    assert main(["compare", *_args(synth, "ctx", "rand"), "--ci", "1.5"]) == 2


def test_compare_parses_the_gt_json_once_and_the_report_searches_no_more(synth, tmp_path, monkeypatch, capsys):
    """The GT JSON is parsed once for all models and metrics; the report draws the retrievals already scored."""
    import pss_bench.evaluation.context_error as ce_mod
    import pss_bench.report.retrievals as fig_mod
    import pss_bench.io.panoptic as panoptic_mod

    parses: list[Path] = []
    real_read = panoptic_mod.read_json_file

    def counting_read(path, *a, **kw):
        parses.append(Path(path).resolve())
        return real_read(path, *a, **kw)

    searches: list[tuple[str, int]] = []
    real_retrieve = ce_mod.retrieve

    def counting_retrieve(queries, gallery, k, category_id):
        searches.append((queries.gt.path.name, category_id))
        return real_retrieve(queries, gallery, k, category_id)

    monkeypatch.setattr(panoptic_mod, "read_json_file", counting_read)
    monkeypatch.setattr(ce_mod, "retrieve", counting_retrieve)
    monkeypatch.setattr(fig_mod, "retrieve", counting_retrieve)
    rep = tmp_path / "rep"
    assert main(["compare", *_args(synth, "ctx", "rand", "pqonly"), "--report", str(rep),
                 "--images", str(synth["images"]), "--no-cache", "--workers", "1"]) == 0
    capsys.readouterr()
    assert parses.count(Path(synth["gt"]).resolve()) == 1
    assert len(list((rep / "retrievals").glob("q*_m*.png"))) == 3 * 2
    things = [c for c in json.loads(Path(synth["gt"]).read_text())["categories"] if c["isthing"]]
    assert len(searches) == 2 * len(things)  # score_instances' search of each thing class, per model with embeddings


def test_compare_accepts_what_pq_accepts_and_gt_from_the_manifest(synth, tmp_path, capsys):
    """Issue 23 item 8: a folder with only panoptic.json + panoptic/ and a prediction JSON, as `pq` reads them;
    --gt defaults to the first directory's manifest."""
    import shutil

    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(synth["preds"]["pqonly"] / "panoptic.json", bare / "panoptic.json")
    shutil.copytree(synth["preds"]["pqonly"] / "panoptic", bare / "panoptic")
    js = tmp_path / "res.json"
    assert main(["compare", str(synth["preds"]["ctx"]), str(bare), "--k", str(K), "--json", str(js),
                 "--no-cache", "--bootstrap", "0"]) == 0, capsys.readouterr().err
    res = json.loads(js.read_text())
    want = evaluate_pq(synth["preds"]["pqonly"], synth["gt"], use_cache=False).to_dict()
    assert [m["name"] for m in res["models"]] == ["ctx", "bare"]
    assert res["models"][1]["pq"]["All"] == want["All"]
    # a prediction JSON file (PNGs beside it, as pq's default)
    (tmp_path / "p").mkdir()
    shutil.copy(bare / "panoptic.json", tmp_path / "p" / "m.json")
    shutil.copytree(bare / "panoptic", tmp_path / "p" / "m")
    assert main(["compare", str(tmp_path / "p" / "m.json"), "--gt", str(synth["gt"]), "--json", str(js),
                 "--no-cache", "--bootstrap", "0"]) == 0, capsys.readouterr().err
    assert json.loads(js.read_text())["models"][0]["pq"]["All"] == want["All"]
    # no --gt and no manifest: a usage error naming the option
    assert main(["compare", str(bare), "--no-cache"]) == 2
    assert "missing --gt GT_JSON" in capsys.readouterr().err


def test_compare_without_embeddings_leaves_out_the_ce_columns(synth, capsys):
    """Issue 23 item 11: no model has a Context Error: no 10 empty CE columns."""
    assert main(["compare", *_args(synth, "pqonly"), "--no-cache", "--bootstrap", "0"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if "Model" in line)
    assert [c.strip() for c in re.split(r"[│|┃]", header) if c.strip()] == ["Model", "PQ", "PQ-Th", "PQ-St", "SQ", "RQ"]
    assert "mean CE" not in out and len(_row(out, "pqonly")) == 6


def test_ce_table_one_class_and_one_placeholder():
    from rich.console import Console

    from pss_bench.metrics.results import CERow, ContextErrorResult
    from pss_bench.report.tables import ce_table
    from pss_bench.structures import Category

    car = CERow(ce=0.5, random=0.8, oracle=0.1, score=0.4, queries=3, informative=True)
    bus = CERow(ce=None, random=None, oracle=None, score=None, queries=0, informative=None)
    mean = CERow(ce=0.5, random=0.8, oracle=0.1, score=0.4, queries=3, classes=1)
    res = ContextErrorResult(k=5, categories=(Category(1, "car", True), Category(2, "bus", True)),
                             per_class={1: car, 2: bus}, mean=mean)
    console = Console(width=200, record=True)
    console.print(ce_table(res))
    text = console.export_text()
    assert "1 class" in text and "1 classes" not in text
    assert not re.search(r"\s-\s", text) and "—" in text  # one placeholder, as every other table
