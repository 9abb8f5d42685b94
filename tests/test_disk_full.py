"""Every writer on a really full disk: one line "disk full while writing X", exit 1, nothing left behind.

The outputs go to a small tmpfs filled to the last byte, mounted in a private
mount namespace (``unshare -rm``: no privileges needed where user namespaces
are enabled). The unit tests of the mechanism (monkeypatched writes, no
tmpfs) are in ``io/test_io_atomic.py`` and run everywhere.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from child_process import child_env
from pss_bench.io.panoptic import load_panoptic_json, read_id_png
from pss_bench.io.prediction import PredictionWriter

BUNDLED = Path(__file__).parent.parent / "pss_bench" / "checkpoints" / "pss_synthstreets_tiny.pt"


def _can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt 2>/dev/null || "
                           "mount -t tmpfs -o size=64k tmpfs /tmp"], capture_output=True)
    return proc.returncode == 0


pytestmark = pytest.mark.skipif(not _can_mount_tmpfs(), reason="no unprivileged mount namespace to mount a full tmpfs")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from pss_bench.data.synthstreets import generate
    from upsnet_helpers import perturbed, write_official

    root = tmp_path_factory.mktemp("full")
    generate(root / "synth", train=2, val=2, seed=0, height=64, width=128)
    gt_json = root / "synth" / "gtFine" / "cityscapes_panoptic_val.json"
    gt = load_panoptic_json(gt_json, role="gt")
    raw = json.loads(gt_json.read_text())
    feats = root / "features"
    feats.mkdir()
    rng = np.random.default_rng(0)
    with PredictionWriter(root / "pred", "m", gt_json=str(gt_json)) as w:
        for ann, rann in zip(gt.annotations, raw["annotations"]):
            ids = read_id_png(gt.png_path(ann))
            w.add_panoptic(ann.image_id, rann["file_name"], ids,
                           [{"id": s["id"], "category_id": s["category_id"]} for s in rann["segments_info"]])
            w.add_embeddings(ann.image_id, ann.segments.ids, rng.normal(size=(len(ann.segments), 4)))
            np.save(feats / f"{ann.image_id}.npy", rng.normal(size=(4, 16, 32)).astype(np.float32))
        w.commit(categories=raw["categories"])
    write_official(root / "upsnet", gt_json, perturbed(gt, 0))
    return root, gt_json


SCRIPT = """
import contextlib, io, json, os, sys
from pathlib import Path
from pss_bench.cli import main

full, reserve, root, gt = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
cases = json.loads(sys.argv[5])
results = {}
for name, args, free in cases:
    if free:
        reserve.unlink(missing_ok=True)  # leave some room: a small file fits, a checkpoint does not
    before = sorted(os.listdir(full))
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main([a.replace("@FULL", str(full)).replace("@ROOT", str(root)).replace("@GT", gt) for a in args])
    left = sorted(str(p.relative_to(full)) for p in full.rglob("*") if p.name.startswith("."))
    results[name] = {"rc": rc, "err": err.getvalue(), "new": sorted(set(os.listdir(full)) - set(before)),
                     "hidden": [h for h in left if h not in (".filler", ".reserve")],
                     "tree": sorted(str(p.relative_to(full)) for p in full.rglob("*")
                                    if p.name not in (".filler", ".reserve"))}
print(json.dumps(results))
"""

TINY = ["model.fpn_channels=16", "model.head_channels=16", "model.embed_dim=8", "model.classifier_hidden=16",
        "data.crop_size=[64,128]", "data.batch_size=1", "kmeans.grid=[2,4]", "inference.grid=[2,4]",
        "train.iterations=1", "train.checkpoint_every=1", "train.log_every=1", "train.val_every=0"]

CASES = [
    ("pq --json", ["pq", "@ROOT/pred", "--gt", "@GT", "--json", "@FULL/pq.json", "--no-cache"], "@FULL/pq.json"),
    ("context-error --json", ["context-error", "@ROOT/pred", "--gt", "@GT", "--k", "2", "--json", "@FULL/ce.json",
                              "--no-cache"], "@FULL/ce.json"),
    ("embed", ["embed", "@ROOT/features", "--gt", "@GT", "--out", "@FULL/emb", "--workers", "1"], "@FULL/emb"),
    ("import-upsnet", ["import-upsnet", "@ROOT/upsnet", "--gt", "@GT", "--dataset", "cityscapes",
                       "--out", "@FULL/ups"], "@FULL/ups"),
    ("compare --report", ["compare", "@ROOT/pred", "--gt", "@GT", "--k", "2", "--report", "@FULL/rep", "--no-cache"],
     "@FULL/rep"),
    ("predict", ["predict", str(BUNDLED), "--data", "@ROOT/synth", "--out", "@FULL/predict", "--max-images", "1"],
     "@FULL/predict"),
    ("make-synthetic", ["make-synthetic", "@FULL/synth", "--train", "1", "--val", "0", "--height", "64",
                        "--width", "128", "--workers", "1"], "@FULL/synth"),
]


@pytest.mark.slow
def test_every_writer_on_a_full_disk(inputs, tmp_path):
    root, gt_json = inputs
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    full = tmp_path / "full"
    full.mkdir()
    cases = [(name, args, False) for name, args, _ in CASES]
    cases.append(("training checkpoint", ["train-reference", "--config", "synthstreets_tiny", "--data", "@ROOT/synth",
                                          "--out", "@FULL/run", *TINY], True))
    shell = textwrap.dedent(f"""
        set -e
        mount -t tmpfs -o size=2m tmpfs {full}
        dd if=/dev/zero of={full}/.reserve bs=1k count=256 2>/dev/null
        dd if=/dev/zero of={full}/.filler bs=64k 2>/dev/null || true
        exec {sys.executable} {script} {full} {full}/.reserve {root} {gt_json} '{json.dumps(cases)}'
    """)
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", shell], capture_output=True, text=True, timeout=900,
                          env=child_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    targets = {name: target.replace("@FULL", str(full)) for name, _, target in CASES}
    targets["training checkpoint"] = str(full / "run" / "checkpoint_last.pt")
    for name, r in results.items():
        err = r["err"].strip()
        assert r["rc"] == 1, (name, r)
        assert "Traceback" not in err and err.splitlines()[-1] == f"error: disk full while writing {targets[name]}", (name, err)
        assert [line for line in err.splitlines() if "error" in line.lower()] == [err.splitlines()[-1]], (name, err)
        assert r["hidden"] == [], (name, r)
        if name != "training checkpoint":
            assert r["new"] == [], (name, r)  # no output, no staging folder
        else:  # the run folder keeps its config and log (what --resume needs), no partial checkpoint
            assert r["tree"] == ["run", "run/config.yaml", "run/log.jsonl"], r


def test_train_reference_failed_start_leaves_nothing(inputs, tmp_path):
    """Issue 23 item 20: disk full while writing RUN/config.yaml: the run folders it created are gone too."""
    root, gt_json = inputs
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    full = tmp_path / "full"
    full.mkdir()
    cases = [("start", ["train-reference", "--config", "synthstreets_tiny", "--data", "@ROOT/synth",
                        "--out", "@FULL/runs/run", *TINY], False)]
    shell = textwrap.dedent(f"""
        set -e
        mount -t tmpfs -o size=1m tmpfs {full}
        dd if=/dev/zero of={full}/.filler bs=64k 2>/dev/null || true
        dd if=/dev/zero of={full}/.filler2 bs=1k 2>/dev/null || true
        exec {sys.executable} {script} {full} {full}/.reserve {root} {gt_json} '{json.dumps(cases)}'
    """)
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", shell], capture_output=True, text=True, timeout=300,
                          env=child_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])["start"]
    err = r["err"].strip()
    assert r["rc"] == 1 and err.splitlines()[-1] == f"error: disk full while writing {full}/runs/run/config.yaml", r
    assert r["tree"] == [".filler2"] and r["hidden"] == [".filler2"], r  # no runs/, no runs/run/
