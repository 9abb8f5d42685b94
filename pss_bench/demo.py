"""The demo job behind ``make demo``: the paper's comparison on a CPU, in minutes.

1. Generate a SynthStreets val set with a fixed seed (the checkpoints never saw it).
2. Run ``predict`` with each bundled checkpoint (``pss_bench/checkpoints/``).
3. ``compare`` them: PQ and Context Error in one table, and a report folder.
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


def bundled_checkpoints() -> dict[str, Path]:
    """The bundled checkpoints present in this installation, by display name."""
    found = {name: CHECKPOINT_DIR / f for name, f in BUNDLED.items() if (CHECKPOINT_DIR / f).is_file()}
    if not found:
        raise PssBenchError(f"{CHECKPOINT_DIR}: no bundled checkpoint found ({', '.join(BUNDLED.values())})")
    return found


def run_demo(
    out: str | os.PathLike,
    *,
    frames: int = 40,
    workers: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
):
    """Runs the three steps into ``out``; returns ``(CompareResult, report_dir)``."""
    from pss_bench.data.synthstreets import generate
    from pss_bench.evaluation.compare import compare_models
    from pss_bench.parallel import default_workers
    from pss_bench.reference_model.predict import write_predictions
    from pss_bench.report_compare import write_report

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = out / f"synthstreets_val_seed{DEMO_SEED}_{frames}"
    if not (data / "gtFine" / "cityscapes_panoptic_val.json").is_file():
        generate(data, train=0, val=frames, seed=DEMO_SEED, workers=workers or default_workers(),
                 progress=(lambda d, t: progress("SynthStreets", d, t)) if progress else None)
    preds = []
    for name, ckpt in bundled_checkpoints().items():
        pred = out / f"pred_{name.lower().replace('-', '_')}"
        write_predictions(ckpt, data, pred, split="val", overwrite=True,
                          progress=(lambda d, t, n=name: progress(f"predict {n}", d, t)) if progress else None)
        preds.append((name, pred))
    result = compare_models([p for _, p in preds], data / "gtFine" / "cityscapes_panoptic_val.json",
                            names=[n for n, _ in preds], workers=workers, use_cache=False, keep_instances=True)
    report = write_report(result, out / "report", images_root=data / "leftImg8bit")
    return result, report
