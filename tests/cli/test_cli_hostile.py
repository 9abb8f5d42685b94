"""Hostile inputs to the command line (issue 13): one line, the right exit code, no traceback, no output file.

Covers what every subcommand shares: the ``--json`` target checked before any
work, ``-q``, Ctrl-C, a missing ``--gt``, manifests, rich markup and
undecodable characters in user strings, deep or malformed JSON/YAML.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from context_error_helpers import reset_cli_debug, write_embeddings, write_tiny_gt
from pss_bench.cli import main
from pss_bench.io.prediction import PredictionWriter


pytestmark = pytest.mark.usefixtures("no_hang")


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    reset_cli_debug(monkeypatch)


def _ids():
    ids = np.full((12, 16), 1, np.uint32)  # road
    ids[2:6, 2:6] = 2  # car
    ids[6:10, 8:12] = 3  # car
    ids[1:4, 10:14] = 4  # car
    return ids


SEGS = [{"id": 1, "category_id": 1, "iscrowd": 0}, {"id": 2, "category_id": 2, "iscrowd": 0},
        {"id": 3, "category_id": 2, "iscrowd": 0}, {"id": 4, "category_id": 2, "iscrowd": 0}]


def _cats(thing_name="car", stuff_name="road"):
    return [{"id": 1, "name": stuff_name, "isthing": 0}, {"id": 2, "name": thing_name, "isthing": 1}]


def _make(root: Path, cats=None) -> tuple[Path, Path]:
    """A GT of two images and a prediction directory (perfect panoptic + embeddings) naming it."""
    root.mkdir(parents=True, exist_ok=True)
    gt_json, _ = write_tiny_gt(root, {"a": (_ids(), SEGS), "b": (_ids(), SEGS)}, cats or _cats())
    pred = root / "pred"
    rng = np.random.default_rng(0)
    with PredictionWriter(pred, model="test", gt_json=str(gt_json.resolve())) as w:
        for image_id in ("a", "b"):
            w.add_panoptic(image_id, f"{image_id}.png", _ids(), [{"id": s["id"], "category_id": s["category_id"]}
                                                                  for s in SEGS])
            w.add_embeddings(image_id, np.array([1, 2, 3, 4]), rng.normal(size=(4, 3)).astype(np.float32))
        w.commit()
    return gt_json, pred


@pytest.fixture()
def ds(tmp_path):
    return _make(tmp_path / "ds")


def _err_lines(captured) -> list[str]:
    return [line for line in captured.err.splitlines() if line.strip()]


def _one_line_error(captured) -> str:
    lines = _err_lines(captured)
    assert len(lines) == 1 and lines[0].startswith("error:"), captured.err
    assert "Traceback" not in captured.err
    return lines[0]


# --------------------------------------------------------------------------- --json targets (item 9)


def _pq(gt_json, pred):
    return ["pq", str(pred), "--gt", str(gt_json), "--no-cache"]


def _ce(gt_json, pred):
    return ["context-error", str(pred), "--gt", str(gt_json), "--no-cache", "--k", "1"]


def _compare(gt_json, pred):
    return ["compare", str(pred), "--gt", str(gt_json), "--no-cache", "--k", "1"]


_COMPUTE = {"pq": ("pss_bench.evaluation.pq", "evaluate_pq"),
            "context-error": ("pss_bench.evaluation.context_error", "evaluate_context_error"),
            "compare": ("pss_bench.evaluation.compare", "compare_models")}


@pytest.mark.parametrize("command", [_pq, _ce, _compare], ids=["pq", "context-error", "compare"])
@pytest.mark.parametrize("target", ["proc", "under_a_file", "a_folder"])
def test_unwritable_json_target_is_a_usage_error_before_any_work(ds, tmp_path, command, target, monkeypatch,
                                                                  capsys):
    import importlib

    gt_json, pred = ds
    args = command(gt_json, pred)
    module, name = _COMPUTE[args[0]]

    def _must_not_run(*a, **k):
        raise AssertionError("computed before checking --json")

    monkeypatch.setattr(importlib.import_module(module), name, _must_not_run)
    (tmp_path / "file.txt").write_text("x")
    path = {"proc": "/proc/pss_bench_x.json", "under_a_file": str(tmp_path / "file.txt" / "r.json"),
            "a_folder": str(tmp_path)}[target]
    assert main([*args, "--json", path]) == 2
    err = capsys.readouterr().err
    assert "--json" in err and "Traceback" not in err
    assert (tmp_path / "file.txt").read_text() == "x"


def test_json_into_a_missing_folder_is_refused_naming_it(ds, tmp_path, capsys):
    """Issue 23 item 9: a typo in --json's folder must not create folders anywhere."""
    gt_json, pred = ds
    out = tmp_path / "new" / "dir" / "r.json"
    assert main([*_pq(gt_json, pred), "--json", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"the folder {tmp_path / 'new' / 'dir'} does not exist" in " ".join(err.split())
    assert not (tmp_path / "new").exists()


def test_json_into_proc_says_what_is_wrong(ds, capsys):
    gt_json, pred = ds
    assert main([*_pq(gt_json, pred), "--json", "/proc/pss_bench_x.json"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "cannot create a file in /proc (it accepts no new files)" in err
    assert "No such file or directory" not in err


@pytest.mark.parametrize("name, ok", [("fig.jpg", False), ("fig", False), ("fig.PNG", True), ("fig.svg", True)])
def test_figure_out_takes_only_the_listed_formats(name, ok, tmp_path):
    import click

    from pss_bench.cli.options import writable_figure

    if ok:
        assert writable_figure(None, None, tmp_path / name) == tmp_path / name
    else:
        with pytest.raises(click.BadParameter, match=r"expected a \.png, \.pdf, \.svg file name"):
            writable_figure(None, None, tmp_path / name)


def test_show_retrievals_refuses_a_jpeg_before_any_work(ds, tmp_path, capsys):
    gt_json, pred = ds
    out = tmp_path / "x.jpg"
    assert main(["show-retrievals", str(pred), "--gt", str(gt_json), "--query", "a:1", "--out", str(out)]) == 2
    assert ".png, .pdf, .svg" in capsys.readouterr().err and not out.exists()


# --------------------------------------------------------------------------- -q, Ctrl-C, --gt (item 27)


def test_quiet_silences_wrote(ds, tmp_path, capsys):
    gt_json, pred = ds
    out = tmp_path / "r.json"
    assert main(["-q", *_pq(gt_json, pred), "--json", str(out)]) == 0
    assert capsys.readouterr().err == ""
    assert out.exists()
    assert main([*_pq(gt_json, pred), "--json", str(out)]) == 0
    assert "wrote" in capsys.readouterr().err


def test_ctrl_c_exits_130_and_writes_nothing(ds, tmp_path, monkeypatch, capsys):
    import pss_bench.evaluation.pq as pq_mod

    def _interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(pq_mod, "evaluate_pq", _interrupted)
    gt_json, pred = ds
    out = tmp_path / "r.json"
    assert main([*_pq(gt_json, pred), "--json", str(out)]) == 130
    assert not out.exists()
    assert "Traceback" not in capsys.readouterr().err


def test_missing_gt_is_a_usage_error_like_a_missing_pred(ds, tmp_path, capsys):
    gt_json, pred = ds
    assert main(["pq", str(pred), "--gt", str(tmp_path / "nope.json")]) == 2
    assert "nope.json" in capsys.readouterr().err
    assert main(["context-error", str(pred), "--gt", str(tmp_path / "nope.json")]) == 2
    capsys.readouterr()
    # the manifest names a GT that is gone: also a usage error, naming both
    manifest = json.loads((pred / "manifest.json").read_text())
    manifest["gt_json"] = str(tmp_path / "gone.json")
    (pred / "manifest.json").write_text(json.dumps(manifest))
    assert main(["pq", str(pred)]) == 2
    err = capsys.readouterr().err
    assert "gone.json" in err and "manifest.json" in err


def test_manifest_without_gt_json_says_so(ds, capsys):
    gt_json, pred = ds
    manifest = json.loads((pred / "manifest.json").read_text())
    del manifest["gt_json"]
    (pred / "manifest.json").write_text(json.dumps(manifest))
    assert main(["pq", str(pred)]) == 2
    err = capsys.readouterr().err
    assert "has no manifest.json" not in err
    assert "gt_json" in err and "--gt" in err


def test_deep_manifest_is_one_line(ds, capsys):
    gt_json, pred = ds
    (pred / "manifest.json").write_text('{"gt_json": ' + "[" * 50_000 + "]" * 50_000 + "}")
    assert main(["pq", str(pred)]) == 1
    assert "nested more than" in _one_line_error(capsys.readouterr())


def test_deep_context_json_is_one_line(ds, capsys):
    gt_json, pred = ds
    (gt_json.parent / "context.json").write_text('{"a": ' + "{\"1\": " * 50_000 + '"x"' + "}" * 50_000 + "}")
    assert main(_ce(gt_json, pred)) == 1
    line = _one_line_error(capsys.readouterr())
    assert "context.json" in line and "nested more than" in line


# --------------------------------------------------------------------------- markup and odd characters (11, 24)


@pytest.mark.parametrize("folder, shown", [
    ("run[final]", "run[final]/pred.json"),  # rich markup: reported against the right file
    ("a\nb\x1b[31m", "a\\nb\\x1b[31m/pred.json"),  # control characters: still one line, no terminal escape
])
def test_odd_characters_in_a_path_are_printed_verbatim_on_one_line(ds, tmp_path, folder, shown, capsys):
    gt_json, _ = ds
    run = tmp_path / folder
    run.mkdir()
    (run / "pred.json").write_text("{not json")
    assert main(["pq", str(run / "pred.json"), "--gt", str(gt_json), "--no-cache"]) == 1
    line = _one_line_error(capsys.readouterr())
    assert shown in line


@pytest.mark.parametrize("target", ["panoptic.json", "embeddings/a.npz"])
def test_special_files_in_a_prediction_directory_are_refused(ds, target, capsys):
    import os

    gt_json, pred = ds
    (pred / target).unlink()
    os.mkfifo(pred / target)
    assert main(_compare(gt_json, pred)) == 1
    line = _one_line_error(capsys.readouterr())
    assert target in line and "FIFO" in line


@pytest.mark.parametrize("name", ["[/bold]", "[red]car", "a[b]c\\"])
def test_markup_in_category_names_prints_verbatim(tmp_path, name, capsys):
    gt_json, pred = _make(tmp_path / "d", _cats(thing_name=name, stuff_name=f"[bold]{name}"))
    assert main(_pq(gt_json, pred)) == 0
    out = capsys.readouterr().out
    assert name in out and f"[bold]{name}" in out
    assert main(_ce(gt_json, pred)) == 0
    assert name in capsys.readouterr().out
    assert main(_compare(gt_json, pred)) == 0
    assert name in capsys.readouterr().out


def test_markup_and_surrogates_in_file_names_print_safely(ds, capsys):
    gt_json, pred = ds
    obj = json.loads((pred / "panoptic.json").read_text())
    obj["annotations"][0]["file_name"] = "[/bold]\udc80.png"  # a valid (non-UTF-8) name that does not exist
    (pred / "panoptic.json").write_text(json.dumps(obj))
    assert main(_pq(gt_json, pred)) == 1
    line = _one_line_error(capsys.readouterr())
    assert "[/bold]" in line and "not found" in line


def test_validate_prints_undecodable_names_on_stdout(ds, capsys):
    gt_json, _ = ds
    obj = json.loads(gt_json.read_text())
    obj["annotations"][0]["file_name"] = "[/bold]\udc80.png"
    gt_json.write_text(json.dumps(obj))
    assert main(["validate", str(gt_json)]) == 1
    cap = capsys.readouterr()
    assert "[/bold]" in cap.out and "\\udc80" in cap.out and "not found" in cap.out
    assert "Traceback" not in cap.err


# --------------------------------------------------------------------------- validate (item 17)


def test_validate_without_categories_reports_the_root_cause_only(ds, capsys):
    gt_json, _ = ds
    obj = json.loads(gt_json.read_text())
    del obj["categories"]
    gt_json.write_text(json.dumps(obj))
    assert main(["validate", str(gt_json)]) == 1
    cap = capsys.readouterr()
    lines = [line for line in cap.out.splitlines() if line.strip()]
    assert len(lines) == 1, cap.out
    assert "'categories'" in lines[0] and "missing" in lines[0]
    assert "in the PNG but not in the JSON" not in cap.out


# --------------------------------------------------------------------------- YAML configs (item 10)


def _billion_laughs(bad_key: str) -> str:
    lines = ['l0: &l0 "lol"']
    for i in range(1, 10):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    return "\n".join(lines) + f"\n{bad_key}: *l9\n"


@pytest.mark.parametrize("content, needle", [
    (b"train:\n  lr: 0.1\n  name: \xff\xfe\n", "not UTF-8"),
    (("train: " + "[" * 5000 + "]" * 5000 + "\n").encode(), "nested more than"),
    (("train:\n  lr: " + "[" * 80 + "1" + "]" * 80 + "\n").encode(), "nested more than"),
    (_billion_laughs("name").encode(), "expands to more than"),
    (b"train: &a\n  lr: *a\n", "refers to itself"),
    (b"train:\n  lr: 1" + b"1" * 5000 + b"\n", "cannot be read"),
    (b"train:\n  lr: 0x" + b"f" * 400 + b"\n", "too large"),
    (b"train: [1, 2\n", "not valid YAML"),
])
def test_hostile_yaml_config_is_one_line(tmp_path, content, needle, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_bytes(content)
    code = main(["train-reference", "--config", str(cfg), "--data", str(tmp_path), "--out", str(tmp_path / "run")])
    assert code == 1
    line = _one_line_error(capsys.readouterr())
    assert "bad.yaml" in line and needle in line
    assert not (tmp_path / "run").exists()


def test_mathtext_in_category_names_does_not_break_figures(tmp_path, capsys):
    """matplotlib reads '$...$' as mathtext: a category named '$x^$' failed every figure."""
    name = "$x^$"
    gt_json, pred = _make(tmp_path / "d", _cats(thing_name=name))
    out = tmp_path / "out"
    out.mkdir()
    assert main(["show-retrievals", str(pred), "--gt", str(gt_json), "--no-cache", "--query", "a:2", "--k", "1",
                 "--out", str(out / "r.png")]) == 0
    assert main(["context-map", str(pred), "--gt", str(gt_json), "--no-cache", "--category", name,
                 "--out", str(out / "m.png")]) == 0
    assert main([*_compare(gt_json, pred), "--report", str(out / "rep")]) == 0
    assert (out / "r.png").is_file() and (out / "m.png").is_file() and (out / "rep" / "ce_per_category.png").is_file()
