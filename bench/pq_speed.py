"""PQ speed: pss-bench against cityscapesscripts' evaluator, side by side.

Builds a Cityscapes-size set (the real 2048x1024 sample frames, replicated
under new image ids, GT made by cityscapesscripts' own converter) or, with
``--set coco``, a COCO-size set (the two panopticapi COCO panoptic samples,
640x427 and 640x360, replicated; 133 categories), and a shifted prediction
of it, then measures, alternating (the order rotates every round):

1. whole processes, as a user runs them: a Python process calling
   cityscapesscripts' ``evaluatePanoptic`` (its process pool over all cores)
   against ``pss-bench pq --no-cache`` (cold) and ``pss-bench pq`` with a
   warm GT cache, each writing its JSON result; and, in the same rounds, the
   decode limit: a process that only reads and decodes the PNGs the cold
   (GT and prediction) or warm (prediction only) run must decode, in as many
   forked workers as ``pss-bench pq`` uses, with the same decoder;
2. the same in one process (``evaluatePanoptic`` against
   ``pss_bench.evaluate_pq``, with worker threads, the library's default, and
   with forked worker processes, what ``pss-bench pq`` uses), without
   interpreter start-up and imports;
3. start-up: ``python -c pass``, ``pss-bench --help``, ``pss-bench pq --help``,
   and which heavy modules ``pss-bench pq`` imports (it must import none);
4. per image on in-memory maps, pss-bench's ``PanopticQuality.update``
   against torchmetrics' ``PanopticQuality`` (when torchmetrics is installed).

Every table records the CPU model, core count, library versions and the
machine's load average before and after it. Results
must equal cityscapesscripts' to 1e-9 (checked on every whole-process run's
JSON and in-process), or the script exits 1. The tables go into
docs/benchmarks.md between the pq_speed markers (``--set coco``: the
pq_speed_coco markers).

Usage::

    python bench/pq_speed.py [--set cityscapes|coco] [--frames N] [--repeats 5] [--no-write]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MARK_START, MARK_END = "<!-- pq_speed:start -->", "<!-- pq_speed:end -->"
COCO_START, COCO_END = "<!-- pq_speed_coco:start -->", "<!-- pq_speed_coco:end -->"


def shifted_prediction(gt_json: Path, gt_dir: Path, out_dir: Path, seed: int = 0) -> Path:
    """A prediction directory: each GT map rolled by a random offset, the top rows VOID."""
    from pss_bench.io.panoptic import load_panoptic_json, read_id_png
    from pss_bench.io.prediction import PredictionWriter

    gt = load_panoptic_json(gt_json, gt_dir, role="gt")
    rng = np.random.default_rng(seed)
    with PredictionWriter(out_dir, model="shifted-gt", overwrite=True, gt_json=str(gt_json)) as w:
        for ann in gt.annotations:
            ids = read_id_png(gt.png_path(ann))
            dy, dx = (int(v) for v in rng.integers(-12, 13, size=2))
            shifted = np.roll(ids, (dy, dx), axis=(0, 1))
            shifted[: ids.shape[0] // 40] = 0
            present = set(np.unique(shifted).tolist())
            segs = [{"id": int(s), "category_id": int(c)}
                    for s, c in zip(ann.segments.ids, ann.segments.category_ids) if int(s) in present]
            w.add_panoptic(ann.image_id, ann.file_name, shifted, segs)
        w.commit()
    return out_dir


def build_set(sample: Path, work: Path, frames: int) -> tuple[Path, Path, Path]:
    from pss_bench.data.cityscapes import build_panoptic_gt

    base_json, base_dir = build_panoptic_gt(sample / "cityscapes" / "gtFine", "train", work / "base")
    base = json.loads(base_json.read_text())
    gt_dir = work / "gt"
    gt_dir.mkdir()
    anns, images = [], []
    for k in range(frames):
        src = base["annotations"][k % len(base["annotations"])]
        img = dict(base["images"][k % len(base["images"])])
        new_id = f"{src['image_id']}_r{k:03d}"
        fn = f"{new_id}_gtFine_panoptic.png"
        shutil.copyfile(base_dir / src["file_name"], gt_dir / fn)
        anns.append({**src, "image_id": new_id, "file_name": fn})
        images.append({**img, "id": new_id})
    gt_json = work / "gt.json"
    gt_json.write_text(json.dumps({"images": images, "annotations": anns, "categories": base["categories"]}))
    pred = shifted_prediction(gt_json, gt_dir, work / "pred", seed=0)
    return gt_json, gt_dir, pred


def build_coco_set(sample: Path, work: Path, frames: int) -> tuple[Path, Path, Path]:
    """``frames`` COCO-size GT images (the panopticapi samples replicated, 133 categories) and a shifted prediction."""
    base = sample / "coco_panoptic" / "panopticapi_sample"
    src = json.loads((base / "sample_data" / "panoptic_examples.json").read_text())
    cats = json.loads((base / "panoptic_coco_categories.json").read_text())
    gt_dir = work / "coco_gt"
    gt_dir.mkdir(parents=True)
    anns, images = [], []
    for k in range(frames):
        a = src["annotations"][k % len(src["annotations"])]
        im = next(i for i in src["images"] if i["id"] == a["image_id"])
        new_id = k + 1
        fn = f"{new_id:012d}.png"
        shutil.copyfile(base / "sample_data" / "panoptic_examples" / a["file_name"], gt_dir / fn)
        anns.append({**a, "image_id": new_id, "file_name": fn})
        images.append({**im, "id": new_id, "file_name": f"{new_id:012d}.jpg"})
    gt_json = work / "coco_gt.json"
    gt_json.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return gt_json, gt_dir, shifted_prediction(gt_json, gt_dir, work / "coco_pred", seed=1)


def cpu_model() -> str:
    """The CPU model from /proc/cpuinfo (``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> str:
    """CPU model, core count, Python and the versions of the libraries a pq run's speed rests on."""
    from importlib.metadata import PackageNotFoundError, version

    libs = []
    for dist in ("numpy", "pywuffs", "pyspng", "Pillow", "cityscapesscripts"):
        try:
            libs.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            libs.append(f"{dist} not installed")
    return f"{cpu_model()} ({platform.machine()}), {os.cpu_count()} cores, Python {platform.python_version()}, " + ", ".join(libs)


#: A whole process that only reads and decodes the PNGs listed in a file, as pss-bench pq's workers do.
DECODE_SCRIPT = (
    "import sys\n"
    "from pss_bench.io.panoptic import decode_id_words, read_png_file\n"
    "from pss_bench.threads import map_forked\n"
    "paths = open(sys.argv[1]).read().split('\\n')\n"
    "for _ in map_forked(lambda p: decode_id_words(read_png_file(p)).shape, paths, int(sys.argv[2])):\n"
    "    pass\n"
)


def export_ref(ref: str, dest: Path) -> tuple[str, dict]:
    """Exports the ``pss_bench`` package of git ``ref`` into ``dest``.

    Returns:
        ``(label, env)``: ``"REF (short sha)"`` and an environment whose
        PYTHONPATH makes ``pss-bench`` and ``import pss_bench`` use that code.
    """
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", ref],
                         capture_output=True, text=True, check=True).stdout.strip()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "pss_bench"], capture_output=True, check=True).stdout
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    precompile(dest / "pss_bench")
    return f"{ref} ({sha})", dict(os.environ, PYTHONPATH=str(dest))


def write_block(block: str, start: str, end: str, after: str) -> None:
    """Replaces the text between ``start`` and ``end`` in docs/benchmarks.md (or adds it after ``after``)."""
    doc = ROOT / "docs" / "benchmarks.md"
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    if start in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    elif after in text:
        text = text.replace(after, after + "\n\n" + block, 1)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    doc.write_text(text)


def time_once(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def run_cityscapes(gt_json, gt_dir, pred, out_json):
    from cityscapesscripts.evaluation.evalPanopticSemanticLabeling import evaluatePanoptic

    with contextlib.redirect_stdout(io.StringIO()):
        return evaluatePanoptic(str(gt_json), str(gt_dir), str(pred / "panoptic.json"), str(pred / "panoptic"), str(out_json))


def max_abs_diff(ours: dict, ref: dict) -> float:
    d = 0.0
    for name in ("All", "Things", "Stuff"):
        for m in ("pq", "sq", "rq"):
            d = max(d, abs(ours[name][m] - float(ref[name][m])))
    for cid, r in ref["per_class"].items():
        for m in ("pq", "sq", "rq"):
            d = max(d, abs(ours["per_class"][str(cid)][m] - float(r[m])))
    return d


def bench_in_memory(gt_json, gt_dir, pred, repeats: int) -> dict | None:
    """Per-image update time on decoded maps: pss-bench vs torchmetrics."""
    import torch

    from pss_bench.io.panoptic import load_panoptic_json, read_id_png
    from pss_bench.metrics.pq import PanopticQuality

    gt = load_panoptic_json(gt_json, gt_dir, role="gt")
    pr = load_panoptic_json(pred / "panoptic.json", pred / "panoptic", role="prediction", categories=gt.categories)
    by_id = {a.image_id: a for a in pr.annotations}
    items = []
    for ann in gt.annotations[:8]:
        p = by_id[ann.image_id]
        items.append((read_id_png(gt.png_path(ann)), ann.segments, read_id_png(pr.png_path(p)), p.segments))

    ours_t = []
    for _ in range(repeats):
        m = PanopticQuality(gt.categories)
        for g, gs, q, qs in items:
            ours_t.append(time_once(lambda: m.update(g, gs, q, qs)))
    out = {"ours_ms": 1000 * statistics.median(ours_t)}
    try:
        from torchmetrics.detection import PanopticQuality as TMPanopticQuality
    except ImportError:
        return out

    things = {c.id for c in gt.categories.values() if c.isthing}
    stuffs = {c.id for c in gt.categories.values() if not c.isthing}

    def to_tm(ids, segs):
        # torchmetrics input: (1, H, W, 2) = (category, instance); VOID -> an unknown category
        lut = {int(s): (int(c), k + 1) for k, (s, c) in enumerate(zip(segs.ids, segs.category_ids))}
        cat = np.full(ids.shape, -1, np.int64)
        inst = np.zeros(ids.shape, np.int64)
        for s, (c, k) in lut.items():
            mask = ids == s
            cat[mask] = c
            inst[mask] = k
        return torch.from_numpy(np.stack([cat, inst], -1)[None])

    # torchmetrics takes seconds per frame: 4 frames, once, are enough
    tm_items = [(to_tm(q, qs), to_tm(g, gs)) for g, gs, q, qs in items[:4]]
    tm_t = []
    tm = TMPanopticQuality(things=things, stuffs=stuffs, allow_unknown_preds_category=True)
    for pt, gtt in tm_items:
        tm_t.append(time_once(lambda: tm.update(pt, gtt)))
    out["torchmetrics_ms"] = 1000 * statistics.median(tm_t)
    return out


CS_SCRIPT = (
    "import sys\n"
    "from cityscapesscripts.evaluation.evalPanopticSemanticLabeling import evaluatePanoptic\n"
    "evaluatePanoptic(*sys.argv[1:6])\n"
)
HEAVY = ("torch", "torchvision", "faiss", "matplotlib", "sklearn", "scipy", "cityscapesscripts", "pycocotools")


def precompile(package_dir: Path = ROOT / "pss_bench") -> None:
    """Writes the ``.pyc`` files of pss_bench (and of an exported ref), as ``pip install`` does for site-packages.

    With ``PYTHONDONTWRITEBYTECODE`` set (some shells and CI images set it),
    an editable install would compile every pss_bench module again in every
    timed process (about 0.05 s of CPU a process here), while the packages it
    is compared with were compiled when pip installed them.
    """
    import compileall

    compileall.compile_dir(str(package_dir), quiet=1)


def pss_bench_command() -> list[str]:
    """The ``pss-bench`` console script of this interpreter's environment."""
    script = Path(sys.executable).parent / "pss-bench"
    return [str(script)] if script.exists() else [sys.executable, "-m", "pss_bench.cli"]


#: CPU seconds (user + system, the process and the children it waited for) of every run_process call, by command.
CPU: dict[str, list[float]] = {}


def run_process(cmd: list[str], env: dict | None = None) -> float:
    """Wall seconds of ``cmd``; its CPU seconds go to :data:`CPU` (less disturbed by other jobs than wall time)."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    err = proc.stderr.read()
    proc.stderr.close()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {err.decode(errors='replace')[-2000:]}")
    CPU.setdefault(" ".join(cmd), []).append(usage.ru_utime + usage.ru_stime)
    return elapsed


def alternate(commands: dict[str, "callable"], repeats: int) -> dict[str, list[float]]:
    """Runs every command once per round, the order rotating each round."""
    names = list(commands)
    times: dict[str, list[float]] = {k: [] for k in names}
    for r in range(repeats):
        for k in names[r % len(names):] + names[: r % len(names)]:
            times[k].append(commands[k]())
    return times


def load_avg() -> str:
    try:
        return "/".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def heavy_modules_of(argv: list[str]) -> list[str]:
    """Heavy modules in ``sys.modules`` after ``pss-bench ARGV`` ran in a fresh interpreter."""
    code = (
        "import json, sys\n"
        "from pss_bench.cli import main\n"
        f"rc = main({argv!r})\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]), file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return json.loads(proc.stderr.strip().splitlines()[-1])


def table(rows: list[tuple[str, list[float]]], base: float | None, frames: int | None,
          cpu: dict[str, list[float]] | None = None) -> list[str]:
    cols = (["command", "median (s)"] + (["ms / frame"] if frames else []) + (["speed-up vs cityscapesscripts"] if base else [])
            + (["CPU (s)", "CPU ratio"] if cpu else []) + ["runs (s)"])
    out = ["| " + " | ".join(cols) + " |", "|---|" + "---:|" * (len(cols) - 2) + "---|"]
    cpu_base = statistics.median(cpu[rows[0][0]]) if cpu else None
    for name, ts in rows:
        med = statistics.median(ts)
        cells = [name, f"{med:.2f}"]
        if frames:
            cells.append(f"{1000 * med / frames:.1f}")
        if base:
            cells.append(f"{base / med:.2f}x")
        if cpu:
            c = statistics.median(cpu[name])
            cells += [f"{c:.2f}", f"{cpu_base / c:.2f}x"]
        cells.append(", ".join(f"{t:.2f}" for t in ts))
        out.append("| " + " | ".join(cells) + " |")
    return out


def two_frame_subset(gt_json: Path, pred: Path, work: Path) -> tuple[Path, Path, list[str]]:
    """GT and prediction JSONs of the set's first 2 images (the PNG folders stay the set's), and their
    prediction PNG names."""
    gt = json.loads(gt_json.read_text())
    pr = json.loads((pred / "panoptic.json").read_text())
    keep = {im["id"] for im in gt["images"][:2]}
    sub_gt, sub_pred = work / "two_gt.json", work / "two_pred.json"
    sub_gt.write_text(json.dumps(dict(gt, images=[im for im in gt["images"] if im["id"] in keep],
                                      annotations=[a for a in gt["annotations"] if a["image_id"] in keep])))
    anns = [a for a in pr["annotations"] if a["image_id"] in keep]
    sub_pred.write_text(json.dumps(dict(pr, annotations=anns)))
    return sub_gt, sub_pred, [a["file_name"] for a in anns]


def fixed_cost_note(two_pq: float, two_dec: float, limits: dict[str, tuple[float, float]]) -> str:
    """What a run's fixed cost (a 2-frame run against decoding its 2 PNGs) leaves reachable of each decode limit.

    ``limits``: run name (``cold``, ``warm``) -> (its decode limit's time, the measured run's time).
    The fixed cost is measured warm; a cold run pays the same imports, JSON checks and table.
    """
    fixed = two_pq - two_dec
    parts = []
    for name, (limit, measured) in limits.items():
        best = limit + max(0.0, fixed)
        parts.append(f"{name}: at best {best:.2f} s, {100 * limit / best:.0f}% of the limit's speed "
                     f"(measured {measured:.2f} s, {100 * limit / measured:.0f}%)")
    return (f"**The fixed cost of a run.** `pss-bench pq` on 2 of the frames takes {two_pq:.2f} s against "
            f"{two_dec:.2f} s for decoding those 2 PNGs alone: {fixed:.2f} s that every run pays and the decode "
            f"limit does not (imports of numpy, click and rich, both JSONs parsed and checked, the table). Even if "
            f"every frame cost no more than its decoding, a run would take its limit's time plus that; "
            + "; ".join(parts) + ".")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", dest="set_name", choices=("cityscapes", "coco"), default="cityscapes",
                    help="Cityscapes frames (2048x1024) or COCO-size frames (640x427 / 640x360, 133 categories)")
    ap.add_argument("--frames", type=int, default=None, help="frames in the set (default 48 Cityscapes, 500 COCO)")
    ap.add_argument("--repeats", type=int, default=5, help="alternating rounds of each table (at least 3)")
    ap.add_argument("--data", default=os.environ.get("PSS_BENCH_SAMPLE_DATA", "../shared/data"))
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    ap.add_argument("--compare-ref", metavar="REF", default=None,
                    help="also time the pss_bench package of this git ref (e.g. main), in the same rounds")
    args = ap.parse_args()
    if args.repeats < 3:
        ap.error("--repeats must be at least 3 (medians of fewer runs say little on a shared machine)")
    coco = args.set_name == "coco"
    if args.frames is None:
        args.frames = 500 if coco else 48

    from pss_bench.evaluation.pq import default_workers, evaluate_pq
    from pss_bench.io.panoptic import png_decoder_name

    precompile()
    workers = default_workers()
    pss = pss_bench_command()
    diffs: list[float] = []
    with tempfile.TemporaryDirectory(prefix="pss-bench-pq-speed-") as tmp:
        work = Path(tmp)
        gt_json, gt_dir, pred = (build_coco_set if coco else build_set)(Path(args.data), work, args.frames)
        gt_pngs = sorted(str(q) for q in gt_dir.glob("*.png"))
        pred_pngs = sorted(str(q) for q in (pred / "panoptic").glob("*.png"))
        (work / "decode_cold.txt").write_text("\n".join(gt_pngs + pred_pngs))
        (work / "decode_warm.txt").write_text("\n".join(pred_pngs))
        sub_gt, sub_pred, two_names = two_frame_subset(gt_json, pred, work)
        (work / "decode_two.txt").write_text("\n".join(str(pred / "panoptic" / name) for name in two_names))
        cache = work / "cache"
        cs_out, cold_out, warm_out = work / "cs.json", work / "cold.json", work / "warm.json"
        pq_args = ["pq", str(pred), "--gt", str(gt_json), "--gt-dir", str(gt_dir)]
        commands = {
            "cityscapesscripts `evaluatePanoptic`": lambda: run_process(
                [sys.executable, "-c", CS_SCRIPT, str(gt_json), str(gt_dir), str(pred / "panoptic.json"),
                 str(pred / "panoptic"), str(cs_out)]),
            "`pss-bench pq --no-cache` (cold)": lambda: run_process(
                pss + pq_args + ["--no-cache", "--json", str(cold_out)]),
            "`pss-bench pq` (warm GT cache)": lambda: run_process(
                pss + pq_args + ["--cache-dir", str(cache), "--json", str(warm_out)]),
        }
        limits = {
            "decoding alone, GT and prediction PNGs (cold limit)": lambda: run_process(
                [sys.executable, "-c", DECODE_SCRIPT, str(work / "decode_cold.txt"), str(workers)]),
            "decoding alone, prediction PNGs (warm limit)": lambda: run_process(
                [sys.executable, "-c", DECODE_SCRIPT, str(work / "decode_warm.txt"), str(workers)]),
        }
        commands.update(limits)
        ref_label = None
        if args.compare_ref:
            ref_label, ref_env = export_ref(args.compare_ref, work / "ref")
            commands[f"`pss-bench pq --no-cache` at {ref_label}"] = lambda: run_process(
                pss + pq_args + ["--no-cache", "--json", str(work / "ref_cold.json")], ref_env)
            commands[f"`pss-bench pq` (warm GT cache) at {ref_label}"] = lambda: run_process(
                pss + pq_args + ["--cache-dir", str(work / "ref_cache"), "--json", str(work / "ref_warm.json")], ref_env)
        # warm-up: page cache, .pyc files, and the GT cache for the warm variant
        for run in commands.values():
            run()

        def check() -> None:
            ref = json.loads(cs_out.read_text())
            for out in (cold_out, warm_out, work / "ref_cold.json", work / "ref_warm.json"):
                if out.exists():
                    diffs.append(max_abs_diff(json.loads(out.read_text()), ref))

        check()
        load_proc = [load_avg()]
        CPU.clear()
        proc_times = alternate(commands, args.repeats)
        load_proc.append(load_avg())
        # every command line ran the same number of times, in the same order as its name's runs
        assert len(CPU) == len(proc_times)
        proc_cpu = dict(zip(proc_times, CPU.values()))
        check()

        # in one process: worker threads (the library's default) and forked worker processes (the CLI's)
        ours_kw = dict(gt_dir=gt_dir, workers=workers)
        ref = run_cityscapes(gt_json, gt_dir, pred, work / "cs_in.json")
        for processes in (False, True):
            diffs.append(max_abs_diff(evaluate_pq(pred, gt_json, use_cache=False, processes=processes,
                                                  **ours_kw).to_dict(), ref))
            diffs.append(max_abs_diff(evaluate_pq(pred, gt_json, cache_dir=cache, processes=processes,
                                                  **ours_kw).to_dict(), ref))
        load_in = [load_avg()]
        in_times = alternate({
            "cityscapesscripts `evaluatePanoptic`": lambda: time_once(
                lambda: run_cityscapes(gt_json, gt_dir, pred, work / "cs_in.json")),
            "`evaluate_pq(use_cache=False)`, threads": lambda: time_once(
                lambda: evaluate_pq(pred, gt_json, use_cache=False, **ours_kw)),
            "`evaluate_pq` (warm GT cache), threads": lambda: time_once(
                lambda: evaluate_pq(pred, gt_json, cache_dir=cache, **ours_kw)),
            "`evaluate_pq(use_cache=False, processes=True)` (as `pss-bench pq`)": lambda: time_once(
                lambda: evaluate_pq(pred, gt_json, use_cache=False, processes=True, **ours_kw)),
            "`evaluate_pq(processes=True)` (warm GT cache)": lambda: time_once(
                lambda: evaluate_pq(pred, gt_json, cache_dir=cache, processes=True, **ours_kw)),
        }, args.repeats)
        load_in.append(load_avg())

        # start-up
        load_start = [load_avg()]
        two_pq, two_dec = "`pss-bench pq` on 2 of the frames (warm GT cache)", "decoding alone, those 2 prediction PNGs"
        start_cmds = {
            "`python -c pass`": lambda: run_process([sys.executable, "-c", "pass"]),
            "`pss-bench --help`": lambda: run_process(pss + ["--help"]),
            "`pss-bench pq --help`": lambda: run_process(pss + ["pq", "--help"]),
            two_pq: lambda: run_process(pss + ["pq", str(sub_pred), "--pred-dir", str(pred / "panoptic"), "--gt",
                                               str(sub_gt), "--gt-dir", str(gt_dir), "--cache-dir", str(cache),
                                               "--json", str(work / "two.json")]),
            two_dec: lambda: run_process([sys.executable, "-c", DECODE_SCRIPT, str(work / "decode_two.txt"),
                                          str(workers)]),
        }
        if ref_label:
            start_cmds[f"`pss-bench --help` at {ref_label}"] = lambda: run_process(pss + ["--help"], ref_env)
            start_cmds[f"`pss-bench pq --help` at {ref_label}"] = lambda: run_process(pss + ["pq", "--help"], ref_env)
        start_times = alternate(start_cmds, args.repeats)
        load_start.append(load_avg())
        heavy_help = heavy_modules_of(["--help"])
        heavy_pq = heavy_modules_of(pq_args + ["--no-cache", "--json", str(work / "h.json")])

        mem = bench_in_memory(gt_json, gt_dir, pred, args.repeats)

    diff = max(diffs)
    cs_proc = statistics.median(next(iter(proc_times.values())))
    cs_in = statistics.median(next(iter(in_times.values())))
    med = {k: statistics.median(v) for k, v in proc_times.items()}
    cold_name, warm_name, cold_lim, warm_lim = ("`pss-bench pq --no-cache` (cold)", "`pss-bench pq` (warm GT cache)",
                                                *limits)
    machine = (f"{machine_info()}; PNG decoder {png_decoder_name()}, {workers} workers (`pss-bench pq`: forked "
               f"processes; cityscapesscripts: a pool of {os.cpu_count()} processes)")
    what = ("COCO-size frames (640x427 / 640x360: the 2 panopticapi samples replicated, 133 categories)" if coco
            else "Cityscapes frames of 2048x1024 (the 8 real sample frames replicated)")
    start, end = (COCO_START, COCO_END) if coco else (MARK_START, MARK_END)
    lines = [
        start,
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {machine}; {args.frames} {what} and a shifted prediction; "
        f"{args.repeats} alternating rounds, the order rotating each round; medians.",
        "",
        f"Command: `python bench/pq_speed.py {'--set coco ' if coco else ''}--frames {args.frames} "
        f"--repeats {args.repeats}" + (f" --compare-ref {args.compare_ref}`" if args.compare_ref else "`"),
        "",
        f"**Whole processes**, as a user runs them (load average 1/5/15 min before {load_proc[0]}, after {load_proc[1]}):",
        "",
        *table(list(proc_times.items()), cs_proc, args.frames, proc_cpu),
        "",
        "CPU: user + system seconds of the process and its workers (cityscapesscripts: its pool's processes); "
        "the CPU ratio is what the speed-up approaches when other jobs hold the cores. "
        f"The decode limit: a process that only decodes the PNGs (a cold run: GT and prediction; a warm run: the "
        f"prediction), in {workers} forked workers with the same decoder, interpreter start-up and imports included; "
        f"no pq process can be faster. Cold: {cs_proc / med[cold_name]:.2f}x against a limit of "
        f"{cs_proc / med[cold_lim]:.2f}x ({100 * med[cold_lim] / med[cold_name]:.0f}% of the limit's speed); warm: "
        f"{cs_proc / med[warm_name]:.2f}x against {cs_proc / med[warm_lim]:.2f}x "
        f"({100 * med[warm_lim] / med[warm_name]:.0f}%).",
        "",
        f"**In one process** (no interpreter start-up or imports; load before {load_in[0]}, after {load_in[1]}):",
        "",
        *table(list(in_times.items()), cs_in, args.frames),
        "",
        f"Largest difference from cityscapesscripts over PQ/SQ/RQ rows and classes, every run above: {diff:.1e}.",
        "",
        f"**Start-up** (load before {load_start[0]}, after {load_start[1]}):",
        "",
        *table(list(start_times.items()), None, None),
        "",
        f"Heavy modules imported ({', '.join(HEAVY)}): by `pss-bench --help`: {', '.join(heavy_help) or 'none'}; "
        f"by `pss-bench pq`: {', '.join(heavy_pq) or 'none'}.",
        "",
        fixed_cost_note(statistics.median(start_times[two_pq]), statistics.median(start_times[two_dec]),
                        {"cold": (med[cold_lim], med[cold_name]), "warm": (med[warm_lim], med[warm_name])}),
    ]
    if mem:
        lines += ["", f"In-memory accumulator, per {'COCO-size' if coco else 'Cityscapes'} frame (maps already decoded; torchmetrics: 4 frames once):", "",
                  "| accumulator | median ms / frame |", "|---|---:|",
                  f"| pss-bench `PanopticQuality.update` | {mem['ours_ms']:.1f} |"]
        if "torchmetrics_ms" in mem:
            lines.append(f"| torchmetrics `PanopticQuality.update` | {mem['torchmetrics_ms']:.1f} |")
    lines.append(end)
    block = "\n".join(lines)
    print(block)
    if diff > 1e-9:
        print(f"ERROR: results differ from cityscapesscripts by {diff}", file=sys.stderr)
        return 1
    if not args.no_write:
        if coco and COCO_START not in (ROOT / "docs" / "benchmarks.md").read_text():
            write_block(block, COCO_START, COCO_END, MARK_END)
        else:
            write_block(block, start, end, "## PQ speed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
