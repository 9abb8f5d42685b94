"""``write_predictions(workers=N)``: forked single-threaded workers write what one process writes (issue 23 item 2)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pss_bench.demo import bundled_checkpoints
from pss_bench.io.panoptic import read_id_png
from pss_bench.models.predict import write_predictions
from pss_bench.threads import fork_available


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from pss_bench.data.synthstreets import generate

    root = tmp_path_factory.mktemp("pw") / "synth"
    generate(root, train=0, val=5, seed=2, height=64, width=128, workers=1)
    return root


@pytest.mark.skipif(not fork_available(), reason="forked workers need Linux")
@pytest.mark.parametrize("name", ["PSS", "UPSNet-style"])
def test_forked_workers_write_the_same_directory(synth, tmp_path, name):
    ckpt = bundled_checkpoints()[name]
    seen = []
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # the one-process run with one thread, as each worker: bit-identical numbers
        write_predictions(ckpt, synth, tmp_path / "one", workers=1)
    finally:
        torch.set_num_threads(threads)
    assert write_predictions(ckpt, synth, tmp_path / "two", workers=2,
                             progress=lambda d, t: seen.append((d, t))) == 5
    assert torch.get_num_threads() == threads  # the parent keeps its setting
    assert seen == [(i, 5) for i in range(1, 6)]
    one, two = (json.loads((tmp_path / d / "panoptic.json").read_text()) for d in ("one", "two"))
    assert [a["image_id"] for a in two["annotations"]] == [a["image_id"] for a in one["annotations"]]
    assert two["annotations"] == one["annotations"]
    for a in one["annotations"]:
        assert np.array_equal(read_id_png(tmp_path / "one" / "panoptic" / a["file_name"]),
                              read_id_png(tmp_path / "two" / "panoptic" / a["file_name"]))
        e1, e2 = (np.load(tmp_path / d / "embeddings" / f"{a['image_id']}.npz") for d in ("one", "two"))
        assert np.array_equal(e1["segment_ids"], e2["segment_ids"]) and np.array_equal(e1["embeddings"],
                                                                                      e2["embeddings"])


def test_a_failing_frame_in_a_worker_is_one_error_and_nothing_is_written(synth, tmp_path):
    from pss_bench.errors import PssBenchError
    from pss_bench.models.checkpoint import with_checksum

    payload = torch.load(bundled_checkpoints()["PSS"], map_location="cpu", weights_only=False)
    payload["state_dict"] = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                             for k, v in payload["state_dict"].items()}
    torch.save(with_checksum(payload), tmp_path / "nan.pt")  # a valid file whose weights are NaN
    with pytest.raises(PssBenchError, match="NaN or infinite values"):
        write_predictions(tmp_path / "nan.pt", synth, tmp_path / "out", workers=2)
    assert not (tmp_path / "out").exists()
