"""The demo job behind ``make demo``: the paper's comparison on a CPU, in minutes.

1. Generate a SynthStreets val set with a fixed seed (the checkpoints never saw it),
   large enough that every thing class has many more than K + 1 instances:
   with fewer, K retrieves every other instance and the class's CE equals
   both bounds whatever the embedding.
2. Run ``predict`` with each bundled checkpoint (``pss_bench/checkpoints/``).
3. ``compare`` them: PQ and Context Error in one table, bootstrap confidence
   intervals and paired p-values for every difference, and a report folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from pss_bench.errors import PssBenchError

CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"
# name shown in the table -> checkpoint file; a missing file is skipped
BUNDLED = {"PSS": "pss_synthstreets_tiny.pt", "UPSNet-style": "upsnet_synthstreets_tiny.pt"}
DEMO_SEED = 1  # the bundled models were trained on seed 0
#: Frames of the demo's val set. SynthStreets' rarest thing class (bus) has about
#: 0.19 instances per frame: 250 frames hold 47 buses, 100 riders, 171 bicycles,
#: 722 persons and 1,500 cars (seed 1), every class more than twice K + 1 = 21.
#: Predicting them with both bundled checkpoints is nearly all of the demo's
#: time (docs/benchmarks.md has the measurement).
DEMO_FRAMES = 250
#: A class with fewer instances than this many times K + 1 gets a warning.
FEW_INSTANCES = 2
DEMO_K = 20


def bundled_checkpoints() -> dict[str, Path]:
    """The bundled checkpoints present in this installation, by display name."""
    found = {name: CHECKPOINT_DIR / f for name, f in BUNDLED.items() if (CHECKPOINT_DIR / f).is_file()}
    if not found:
        raise PssBenchError(f"{CHECKPOINT_DIR}: no bundled checkpoint found ({', '.join(BUNDLED.values())})")
    return found


def thing_instance_counts(gt_json: str | os.PathLike) -> dict[str, int]:
    """Non-crowd instances per thing category of a GT JSON, by category name (in the JSON's order)."""
    from pss_bench.io.panoptic import load_panoptic_json

    gt = load_panoptic_json(gt_json, role="gt")
    counts = {c.id: 0 for c in gt.categories.values() if c.isthing}
    for ann in gt.annotations:
        for cid, crowd in zip(ann.segments.category_ids.tolist(), ann.segments.iscrowd.tolist()):
            if cid in counts and not crowd:
                counts[cid] += 1
    return {gt.categories[cid].name: n for cid, n in counts.items()}


def run_demo(
    out: str | os.PathLike,
    *,
    frames: int = DEMO_FRAMES,
    workers: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    bootstrap=None,
    command: str | None = None,
):
    """Runs the three steps into ``out``; returns ``(CompareResult, report_dir)``.

    Args:
        out: the demo's folder (data, predictions, report).
        frames: val frames to generate.
        workers: generation and prediction processes, decoding threads
            (default: the usable cores).
        progress: ``progress(stage, done, total)``.
        bootstrap: :class:`~pss_bench.metrics.bootstrap.BootstrapSettings`
            (default: 1,000 resamples, 95%, seed 0).
        command: the command line, for the report's provenance.
    """
    from pss_bench.metrics.bootstrap import BootstrapSettings

    from pss_bench.data.synthstreets import generate
    from pss_bench.evaluation.compare import compare_models
    from pss_bench.threads import default_workers
    from pss_bench.models.predict import write_predictions
    from pss_bench.report.document import write_report

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = out / f"synthstreets_val_seed{DEMO_SEED}_{frames}"
    if not (data / "gtFine" / "cityscapes_panoptic_val.json").is_file():
        generate(data, train=0, val=frames, seed=DEMO_SEED, workers=workers or default_workers(),
                 progress=(lambda d, t: progress("SynthStreets", d, t)) if progress else None)
    preds = []
    for name, ckpt in bundled_checkpoints().items():
        pred = out / f"pred_{name.lower().replace('-', '_')}"
        write_predictions(ckpt, data, pred, split="val", overwrite=True, workers=workers or default_workers(),
                          progress=(lambda d, t, n=name: progress(f"predict {n}", d, t)) if progress else None)
        preds.append((name, pred))
    result = compare_models([p for _, p in preds], data / "gtFine" / "cityscapes_panoptic_val.json",
                            names=[n for n, _ in preds], k=DEMO_K, workers=workers, use_cache=False,
                            keep_instances=True, bootstrap=bootstrap if bootstrap is not None else BootstrapSettings(),
                            progress=progress)
    from pss_bench.report.provenance import collect

    if progress:
        progress("report", 0, 1)
    report = write_report(result, out / "report", images_root=data / "leftImg8bit",
                          provenance=collect(result, command))
    if progress:
        progress("report", 1, 1)
    return result, report
