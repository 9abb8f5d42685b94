"""PNG reading and decoding: pyspng and PIL agree, and bad files give one clear error."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pss_bench.errors import FormatError
from pss_bench.io import panoptic
from pss_bench.io.panoptic import decode_id_words, id2rgb, read_id_png, read_png_file

HAVE_SPNG = panoptic._spng_module() is not None
both_decoders = pytest.mark.parametrize("decoder", ["pyspng", "pil"])


@pytest.fixture
def use_decoder(monkeypatch):
    def use(name):
        if name == "pyspng" and not HAVE_SPNG:
            pytest.skip("pyspng is not installed here")
        monkeypatch.setenv("PSS_BENCH_PNG_DECODER", name)
        assert panoptic.png_decoder_name() == ("pyspng" if name == "pyspng" else "PIL")
    return use


def _ids(h=37, w=53, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.choice(np.array([0, 1, 255, 256, 65535, 65536, 2**24 - 1, 123456]), size=(h, w))
    ids[5:20, 3:40] = 777
    return ids.astype(np.uint32)


@both_decoders
def test_rgb_and_rgba_decode_to_the_ids(tmp_path, use_decoder, decoder):
    use_decoder(decoder)
    ids = _ids()
    Image.fromarray(id2rgb(ids)).save(tmp_path / "rgb.png")
    rgba = np.dstack([id2rgb(ids), np.random.default_rng(1).integers(0, 256, ids.shape, dtype=np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    for name in ("rgb.png", "rgba.png"):
        assert np.array_equal(read_id_png(tmp_path / name), ids), name
        words = decode_id_words(read_png_file(tmp_path / name))
        assert words.dtype == np.uint32 and words.shape == ids.shape
        assert np.array_equal(words & 0xFFFFFF, ids)
        assert np.unique(words >> 24).size == 1  # the high byte is constant


def test_decoders_agree_on_real_cityscapes_frames(cityscapes_train_gt, use_decoder):
    gt_json, gt_dir = cityscapes_train_gt
    pngs = sorted(gt_dir.glob("*.png"))[:3]
    use_decoder("pyspng")
    a = [read_id_png(p) for p in pngs]
    use_decoder("pil")
    b = [read_id_png(p) for p in pngs]
    for x, y in zip(a, b):
        assert np.array_equal(x, y)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(width: int, height: int, idat: bytes, color_type: int = 2) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


@both_decoders
def test_corrupt_data_is_one_format_error(tmp_path, use_decoder, decoder):
    use_decoder(decoder)
    good = tmp_path / "good.png"
    Image.fromarray(id2rgb(_ids())).save(good)
    data = good.read_bytes()
    cases = {
        "truncated.png": data[: len(data) // 2],
        "bad_zlib.png": _png(4, 4, b"not zlib data at all"),
        "short_rows.png": _png(64, 64, zlib.compress(b"\x00" * 10)),
    }
    for name, blob in cases.items():
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(FormatError, match=f"{name}.*corrupt PNG data") as info:
            read_id_png(tmp_path / name)
        assert "\n" not in str(info.value)


def test_huge_header_is_refused_before_decoding(tmp_path):
    (tmp_path / "bomb.png").write_bytes(_png(100_000, 100_000, zlib.compress(b"\x00" * 100)))
    with pytest.raises(FormatError, match="bomb.png: 100000x100000 pixels is more than"):
        read_id_png(tmp_path / "bomb.png")


def test_wrong_kinds_of_png_and_files(tmp_path):
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "gray.png")
    with pytest.raises(FormatError, match="gray.png: expected an 8-bit RGB panoptic PNG.*8-bit grayscale"):
        read_id_png(tmp_path / "gray.png")
    with pytest.raises(FormatError, match="missing.png: PNG file not found"):
        read_id_png(tmp_path / "missing.png")
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(FormatError, match="folder.png: expected a PNG file, found a folder"):
        read_id_png(tmp_path / "folder.png")
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(FormatError, match="text.png: not a PNG file"):
        read_id_png(tmp_path / "text.png")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "fifo.png")
    with pytest.raises(FormatError, match="fifo.png: expected a PNG file, found a special file"):
        read_png_file(tmp_path / "fifo.png")
