"""``evaluate_pq(processes=True)`` (what ``pss-bench pq`` uses): the same numbers, errors and warnings as threads."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from pq_oracle import write_dataset
from pss_bench.errors import PredictionFormatError
from pss_bench.evaluation.pq import evaluate_pq
from pss_bench.threads import fork_available

CATS = [{"id": 1, "name": "thing", "isthing": 1}, {"id": 2, "name": "stuff", "isthing": 0}]


def _images(n: int, seed: int):
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        ids = np.full((24, 32), 9, np.int64)
        segs = [{"id": 9, "category_id": 2}]
        for j in range(int(rng.integers(1, 5))):
            y, x = (int(v) for v in rng.integers(0, 18, size=2))
            ids[y:y + 6, x:x + 7] = 100 + j
            segs.append({"id": 100 + j, "category_id": 1})
        present = set(np.unique(ids).tolist())
        out.append((f"im{k:02d}", ids, [s for s in segs if s["id"] in present]))
    return out


@pytest.fixture()
def ds(tmp_path):
    gt = _images(9, 0)
    pred = [(i, np.roll(ids, 1, axis=0), [{"id": s["id"], "category_id": s["category_id"]} for s in segs])
            for i, ids, segs in gt]
    gt_json, _ = write_dataset(tmp_path, "gt", gt, CATS, with_area=True)
    pred_json, pred_dir = write_dataset(tmp_path, "pred", pred, None, with_area=False)
    return tmp_path, gt_json, pred_json, pred_dir


@pytest.mark.parametrize("workers", [2, 3])
def test_processes_give_the_threads_numbers_bit_for_bit(ds, workers):
    tmp, gt_json, pred_json, _ = ds
    kw = dict(workers=workers, cache_dir=tmp / "cache")
    threads = evaluate_pq(pred_json, gt_json, **kw)
    procs = evaluate_pq(pred_json, gt_json, processes=True, **kw)  # warm cache, written by the threads
    cold = evaluate_pq(pred_json, gt_json, processes=True, workers=workers, use_cache=False)
    serial = evaluate_pq(pred_json, gt_json, workers=1, use_cache=False)
    assert threads.to_dict() == procs.to_dict() == cold.to_dict() == serial.to_dict()
    for a in (procs, cold):
        np.testing.assert_array_equal(a.images.iou, serial.images.iou)
        assert a.images.image_ids == serial.images.image_ids


@pytest.mark.skipif(not fork_available(), reason="forked workers are used on Linux only")
def test_workers_are_forked_only_when_no_other_thread_runs(ds, monkeypatch):
    import threading

    import pss_bench.evaluation.pq as engine

    _, gt_json, pred_json, _ = ds
    calls = []
    real = engine.map_forked
    monkeypatch.setattr(engine, "map_forked", lambda *a: calls.append(1) or real(*a))
    expected = evaluate_pq(pred_json, gt_json, workers=2, use_cache=False).to_dict()
    assert evaluate_pq(pred_json, gt_json, workers=2, use_cache=False, processes=True).to_dict() == expected
    assert calls == [1]
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert evaluate_pq(pred_json, gt_json, workers=2, use_cache=False, processes=True).to_dict() == expected
    finally:
        stop.set()
        other.join()
    assert calls == [1]  # threads, not a fork, while another thread ran


def test_progress_counts_every_image(ds):
    _, gt_json, pred_json, _ = ds
    seen = []
    evaluate_pq(pred_json, gt_json, workers=2, use_cache=False, processes=True, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(k, 9) for k in range(1, 10)]


@pytest.mark.skipif(not fork_available(), reason="forked workers are used on Linux only")
def test_a_bad_cache_entry_is_warned_about_from_a_worker(ds, caplog):
    tmp, gt_json, pred_json, _ = ds
    evaluate_pq(pred_json, gt_json, workers=2, cache_dir=tmp / "cache")
    entries = [p for p in (tmp / "cache").rglob("*.runs")]
    entries[0].write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING):
        evaluate_pq(pred_json, gt_json, workers=2, cache_dir=tmp / "cache", processes=True)
    assert any("ignoring GT cache entry" in r.getMessage() for r in caplog.records)


def test_the_first_bad_image_is_reported_as_with_threads(ds):
    _, gt_json, pred_json, pred_dir = ds
    for name in ("im03.png", "im06.png"):
        (pred_dir / name).write_bytes((pred_dir / name).read_bytes()[:60])  # truncated
    messages = []
    for processes in (False, True):
        with pytest.raises(PredictionFormatError) as ei:
            evaluate_pq(pred_json, gt_json, workers=2, use_cache=False, processes=processes)
        messages.append(str(ei.value))
    assert messages[0] == messages[1] and "'im03'" in messages[0]
