"""A demo-sized compare report: the two bundled checkpoints on a few unseen SynthStreets frames."""

from __future__ import annotations

from pathlib import Path

import pytest

#: Frames of the small report: enough for persons and cars with K = 5 neighbours, a few seconds to predict.
FRAMES = 8
K = 5


@pytest.fixture(scope="session")
def bundled_compare(tmp_path_factory):
    """``(result, root)``: compare of the bundled PSS and UPSNet-style checkpoints on ``FRAMES`` val frames."""
    from pss_bench.data.synthstreets import generate
    from pss_bench.demo import DEMO_SEED, bundled_checkpoints
    from pss_bench.evaluation.compare import compare_models
    from pss_bench.metrics.bootstrap import BootstrapSettings
    from pss_bench.models.predict import write_predictions

    root = tmp_path_factory.mktemp("bundled_report")
    data = root / "data"
    generate(data, train=0, val=FRAMES, seed=DEMO_SEED)
    preds = []
    for name, ckpt in bundled_checkpoints().items():
        pred = root / f"pred_{name.lower().replace('-', '_')}"
        write_predictions(ckpt, data, pred, split="val")
        preds.append((name, pred))
    result = compare_models([p for _, p in preds], data / "gtFine" / "cityscapes_panoptic_val.json",
                            names=[n for n, _ in preds], k=K, workers=1, use_cache=False, keep_instances=True,
                            bootstrap=BootstrapSettings(resamples=200))
    return result, root


@pytest.fixture(scope="session")
def bundled_report(bundled_compare) -> Path:
    """The report folder of :func:`bundled_compare`, with images, written as ``compare --report`` does."""
    from pss_bench.report.document import write_report
    from pss_bench.report.provenance import collect

    result, root = bundled_compare
    rep = root / "report"
    write_report(result, rep, images_root=root / "data" / "leftImg8bit", n_queries=2,
                 provenance=collect(result, "pss-bench compare (the test's bundled_report fixture)"))
    return rep
