"""UPSNet's results_list.pkl: legitimate numpy 1 / numpy 2 pickles load; bombs and malformed all_panos do not."""

from __future__ import annotations

import pickle
import struct
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from pss_bench.baselines.upsnet.adapter import _check_pickle, _Image
from pss_bench.errors import FormatError
from pss_bench.io.safe_pickle import load_restricted_pickle


def _dump(tmp_path: Path, obj, protocol: int, name: str = "results_list.pkl") -> Path:
    p = tmp_path / name
    p.write_bytes(pickle.dumps(obj, protocol=protocol))
    return p


def _images(*sizes):
    return [_Image(i, None, f"{i}.png", s) for i, s in enumerate(sizes)]


PANOS = [np.arange(12, dtype=np.uint8).reshape(3, 4), np.zeros((5, 6, 3), np.int32)]


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_numpy_pickles_of_every_protocol_load(tmp_path, protocol):
    """Protocol 5 under numpy 2 pickles arrays through numpy._core.numeric._frombuffer."""
    obj = {"all_panos": PANOS, "all_boxes": [[np.zeros((0, 5), np.float32)]], "all_pano_cls_inds": [np.arange(3)] * 2,
           "scores": np.float32(0.5), "names": np.array(["a", "bc"]), "objs": np.array([1, "x", None], dtype=object),
           "f": np.asfortranarray(np.arange(6.0).reshape(2, 3)), "dt": np.dtype("u2")}
    got = load_restricted_pickle(_dump(tmp_path, obj, protocol))
    for a, b in zip(got["all_panos"], PANOS):
        assert type(a) is np.ndarray and a.dtype == b.dtype and np.array_equal(a, b)
    assert np.array_equal(got["f"], obj["f"]) and got["names"].tolist() == ["a", "bc"]
    assert got["objs"].tolist() == [1, "x", None] and got["scores"] == np.float32(0.5) and got["dt"] == np.dtype("u2")
    _check_pickle(_dump(tmp_path, obj, protocol), _images((3, 4), (5, 6)))


def test_numpy1_module_names_load(tmp_path):
    """Pickles written under numpy 1 name numpy.core.*: admitted like numpy 2's numpy._core.*."""
    data = pickle.dumps({"all_panos": PANOS}, protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    (tmp_path / "a.pkl").write_bytes(data)
    assert np.array_equal(load_restricted_pickle(tmp_path / "a.pkl")["all_panos"][0], PANOS[0])
    (tmp_path / "b.pkl").write_bytes(_as_numpy1(pickle.dumps({"all_panos": PANOS}, protocol=5)))
    assert np.array_equal(load_restricted_pickle(tmp_path / "b.pkl")["all_panos"][1], PANOS[1])


def _as_numpy1(data: bytes) -> bytes:
    """A protocol-5 pickle of numpy 2 rewritten as numpy 1 writes it (numpy.core.numeric), frames fixed up."""
    import pickletools

    old, new = b"\x8c\x13numpy._core.numeric", b"\x8c\x12numpy.core.numeric"
    at = data.index(old)
    out = bytearray(data.replace(old, new, 1))
    for op, arg, pos in pickletools.genops(data):
        if op.name == "FRAME" and pos < at < pos + 9 + arg:
            out[pos + 1:pos + 9] = struct.pack("<Q", arg - 1)
    return bytes(out)


def _bounded(path: Path, match: str, max_bytes: int = 8 * 2**20, max_seconds: float = 5.0) -> None:
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(FormatError, match=match) as info:
            _check_pickle(path, _images((3, 4), (5, 6)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "\n" not in str(info.value) and str(info.value).startswith(str(path))
    assert peak < max_bytes, peak
    assert time.perf_counter() - t0 < max_seconds


def test_bytearray_of_a_count_is_refused_without_allocating(tmp_path):
    """30 bytes asking for 1.5 GB: bytearray(1500000000)."""
    p = tmp_path / "bomb.pkl"
    p.write_bytes(b"\x80\x02c__builtin__\nbytearray\nJ\x00\x2f\x68\x59\x85R.")
    assert p.stat().st_size < 40
    _bounded(p, r"bytearray\(int\) refused")


def test_declared_lengths_past_the_end_are_refused(tmp_path):
    p = tmp_path / "bomb.pkl"
    p.write_bytes(b"\x80\x05\x96" + struct.pack("<Q", 1_500_000_000) + b"abc.")  # BYTEARRAY8 of 1.5 GB, 3 bytes given
    _bounded(p, r"not a readable pickle")


def test_memo_index_bomb_is_refused(tmp_path):
    """Ten bytes whose memo index makes the unpickler allocate (and clear) a 2**31-slot table."""
    p = tmp_path / "memo.pkl"
    p.write_bytes(b"\x80\x02Nr\xff\xff\xff\x7f.")
    _bounded(p, r"memo index 2147483647 out of sequence")


def test_shared_reference_bomb_costs_nothing(tmp_path):
    """A few KB of shared references that np.shape would expand to billions of items."""
    leaf = list(range(1000))
    mid = [leaf] * 1000
    top = [mid] * 1000
    p = _dump(tmp_path, {"all_panos": [top, top]}, 2)
    assert p.stat().st_size < 100_000
    _bounded(p, r"all_panos\[0\] must be a 2-D \(or 3-D\) numeric array, found a list of 1000 items")


@pytest.mark.parametrize("reduce_args, match", [
    ("cnumpy\nndarray\n(I1000000000\ntR.", r"numpy\.ndarray\(\.\.\.\) refused"),         # ndarray(1e9)
    ("cnumpy.core.multiarray\n_reconstruct\n(cnumpy\nndarray\n(I1000000000\ntI98\ntR.", r"_reconstruct with shape \(1000000000,\) refused"),
    ("cnumpy.core.multiarray\n_reconstruct\n(cnumpy.core.multiarray\n_reconstruct\n(I0\ntI98\ntR.", r"refused"),
    ("cnumpy\ndtype\n(S'f8'\nI0\nI1\ntR(I3\nS'<'\nNNNI-1\nI-1\nI63\ntb.", r"a state numpy does not write"),  # f8 flagged as objects
    ("cnumpy\ndtype\n(S'V8'\nI0\nI1\ntR(I3\nS'|'\nNNNI1099511627776\nI1\nI0\ntb.", r"a state numpy does not write"),
    ("cbuiltins\nbytes\n(I1500000000\ntR.", r"bytes\(int\) refused"),
    ("c_codecs\nencode\n(Vabc\nVzlib\ntR.", r"only a string to latin1"),
    ("cos\nsystem\n(Vtrue\ntR.", r"refused to load os\.system"),
    ("cbuiltins\ngetattr\n(cbuiltins\nbytes\nVfromhex\ntR.", r"refused to load builtins\.getattr"),
])
def test_hostile_reconstructor_calls_are_refused(tmp_path, reduce_args, match):
    p = tmp_path / "x.pkl"
    p.write_bytes(reduce_args.encode("latin1"))
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match=match) as info:
            load_restricted_pickle(p)
        assert tracemalloc.get_traced_memory()[1] < 8 * 2**20
    finally:
        tracemalloc.stop()
    assert "\n" not in str(info.value)


def test_object_array_with_a_short_state_is_refused_not_a_crash(tmp_path):
    """numpy's own __setstate__ segfaults on an object array given fewer items than its shape."""
    arr = np.array([1, 2, 3], dtype=object)
    data = pickle.dumps(arr, protocol=2)
    # Shape (3,) -> (9,): the state still lists 3 objects.
    bad = data.replace(b"K\x03\x85", b"K\x09\x85", 1)
    assert bad != data
    p = tmp_path / "short.pkl"
    p.write_bytes(bad)
    with pytest.raises(FormatError, match=r"object array of shape \(9,\) refused: its state holds 3 items"):
        load_restricted_pickle(p)


def test_array_state_with_wrong_data_length_is_refused(tmp_path):
    data = pickle.dumps(np.zeros(4, np.float64), protocol=2)
    bad = data.replace(b"K\x04\x85", b"J\x00\xca\x9a\x3b\x85", 1)  # shape (1000000000,), 32 bytes of data
    assert bad != data
    p = tmp_path / "short.pkl"
    p.write_bytes(bad)
    with pytest.raises(FormatError, match=r"needs 8000000000 bytes, its state holds 32"):
        load_restricted_pickle(p)


def _self_ref():
    a = []
    a.append(a)
    return a


@pytest.mark.parametrize("panos, match", [
    (np.array(5), r"all_panos must be a list with one array per image, found a 0-D int64 array of shape \(\)"),
    (7, r"all_panos must be a list with one array per image, found a int"),
    ("abc", r"all_panos must be a list with one array per image, found a str"),
    ([np.zeros((3, 4)), [[1, 2], [3]]], r"all_panos\[1\] must be a 2-D \(or 3-D\) numeric array, found a list of 2 items"),
    ([np.zeros((3, 4)), np.zeros(6)], r"all_panos\[1\] must be a 2-D \(or 3-D\) numeric array, found a 1-D float64 array"),
    ([np.zeros((3, 4)), np.array([1, "a"], dtype=object).reshape(1, 2)], r"all_panos\[1\] must be a 2-D \(or 3-D\) numeric array, found a 2-D object array"),
    ([np.zeros((3, 4)), 5], r"all_panos\[1\] must be a 2-D \(or 3-D\) numeric array, found a int"),
    ([np.zeros((3, 4))], r"all_panos holds 1 images but the GT has 2"),
    ([np.zeros((4, 3)), np.zeros((5, 6))], r"all_panos\[0\] is 3x4 but GT image 0 is 4x3: wrong image order\?"),
])
def test_malformed_all_panos_are_one_line_errors(tmp_path, panos, match):
    p = _dump(tmp_path, {"all_panos": panos}, 2)
    with pytest.raises(FormatError, match=match) as info:
        _check_pickle(p, _images((3, 4), (5, 6)))
    assert "\n" not in str(info.value)


def test_self_referential_all_panos_is_refused(tmp_path):
    p = _dump(tmp_path, {"all_panos": _self_ref()}, 2)
    with pytest.raises(FormatError, match=r"a container holds itself"):
        _check_pickle(p, _images((3, 4)))
    deep = tmp_path / "deep.pkl"
    deep.write_bytes(b"\x80\x02" + b"]" * 5000 + b"a" * 4999 + b".")  # [[[[...]]]] 5000 deep
    with pytest.raises(FormatError, match=r"containers nested more than 100 deep"):
        load_restricted_pickle(deep)


def test_import_upsnet_with_a_hostile_pickle_is_one_line(tmp_path, capsys):
    """End to end: import-upsnet exits 1 with one line and writes nothing."""
    from pss_bench.cli import main
    from pss_bench.data.synthstreets import generate
    from pss_bench.io.panoptic import load_panoptic_json
    from upsnet_helpers import perturbed, write_official

    generate(tmp_path / "s", train=0, val=2, seed=0, height=64, width=128)
    gt_json = tmp_path / "s" / "gtFine" / "cityscapes_panoptic_val.json"
    gt = load_panoptic_json(gt_json, role="gt")
    write_official(tmp_path / "results", gt_json, perturbed(gt, 0))
    ok = main(["import-upsnet", str(tmp_path / "results"), "--gt", str(gt_json), "--dataset", "cityscapes",
               "--out", str(tmp_path / "ok")])
    assert ok == 0
    (tmp_path / "results" / "results_list.pkl").write_bytes(pickle.dumps({"all_panos": np.array(3)}, protocol=5))
    capsys.readouterr()
    assert main(["import-upsnet", str(tmp_path / "results"), "--gt", str(gt_json), "--dataset", "cityscapes",
                 "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "all_panos must be a list" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_hostile_category_map_and_pred_json_are_one_line(tmp_path):
    """--category-map and pred.json entries that are not what UPSNet writes: FormatError, not a traceback."""
    from pss_bench.baselines.upsnet.adapter import _segments_from_pred_json, load_category_map
    from pss_bench.io.panoptic import load_panoptic_json
    from context_error_helpers import write_tiny_gt

    ids = np.ones((4, 4), np.uint32)
    gt_json, _ = write_tiny_gt(tmp_path, {"a": (ids, [{"id": 1, "category_id": 7, "iscrowd": 0}])},
                               [{"id": 7, "name": "road", "isthing": 0}])
    gt = load_panoptic_json(gt_json, role="gt")
    for content, match in [("[1, 2]", r"expected an object"), ('{"0": [7]}', r"maps to \[7\], which is not a GT"),
                           ('{"x": 7}', r"internal id 'x' is not an integer"), ('{"0": true}', r"maps to True"),
                           ('{"99999999999": 7}', r"out of range")]:
        (tmp_path / "map.json").write_text(content)
        with pytest.raises(FormatError, match=match):
            load_category_map(tmp_path / "map.json", gt)
    cat_map = {0: 7}
    for entry, match in [({"segments_info": [5]}, r"segments_info\[0\] is not an object"),
                         ({"segments_info": [{"id": None, "category_id": 0}]}, r"has no integer 'id'"),
                         ({"segments_info": [{"id": 2**70, "category_id": 0}]}, r"has no integer 'id'"),
                         ({"segments_info": [{"id": 1, "category_id": [0]}]}, r"category \[0\] is not an UPSNet")]:
        with pytest.raises(FormatError, match=match):
            _segments_from_pred_json(entry, ids.astype(np.int64), cat_map, "x.png")
