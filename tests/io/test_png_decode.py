"""PNG reading and decoding: Wuffs, pyspng and PIL agree, and bad files give one clear error."""

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
HAVE_WUFFS = panoptic._wuffs_module() is not None
DECODERS = ["wuffs", "pyspng", "pil"]
both_decoders = pytest.mark.parametrize("decoder", DECODERS)
NAMES = {"wuffs": "wuffs", "pyspng": "pyspng", "pil": "PIL"}


@pytest.fixture
def use_decoder(monkeypatch):
    def use(name):
        if name == "pyspng" and not HAVE_SPNG:
            pytest.skip("pyspng is not installed here")
        if name == "wuffs" and not HAVE_WUFFS:
            pytest.skip("pywuffs (the fast-png extra) is not installed here")
        monkeypatch.setenv("PSS_BENCH_PNG_DECODER", name)
        assert panoptic.png_decoder_name() == NAMES[name]
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


def _real_panoptic_pngs(sample_data: Path, cityscapes_gt_dir: Path) -> list[Path]:
    """Every real panoptic PNG of the sample data: Cityscapes GT built by cityscapesscripts, COCO's."""
    coco = sample_data / "coco_panoptic"
    pngs = sorted(cityscapes_gt_dir.glob("*.png"))
    pngs += sorted((coco / "panopticapi_sample" / "sample_data" / "panoptic_examples").glob("*.png"))
    pngs += sorted((coco / "mseg_sample").rglob("*.png")) + sorted((coco / "transformers_sample").rglob("*.png"))
    return pngs


@pytest.mark.parametrize("decoder", ["wuffs", "pyspng"])
def test_decoders_agree_on_real_panoptic_pngs(sample_data, cityscapes_train_gt, use_decoder, decoder):
    """The decoded words (ids and high byte) are byte-equal to PIL's on every real sample PNG."""
    pngs = _real_panoptic_pngs(sample_data, cityscapes_train_gt[1])
    assert len(pngs) >= 12  # 8 Cityscapes frames, the COCO samples
    use_decoder("pil")
    ref = [decode_id_words(read_png_file(p)) for p in pngs]
    use_decoder(decoder)
    for p, r in zip(pngs, ref):
        words = decode_id_words(read_png_file(p))
        assert words.dtype == r.dtype == np.uint32 and words.shape == r.shape, p
        assert np.array_equal(words & 0xFFFFFF, r & 0xFFFFFF), p
        assert np.unique(words >> 24).size == 1, p  # runs of words are runs of ids


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


@both_decoders
def test_transparent_colour_chunk_keeps_the_ids(tmp_path, use_decoder, decoder):
    """An RGB PNG with a tRNS chunk: Wuffs would make that colour transparent black; the ids stay."""
    use_decoder(decoder)
    ids = _ids()
    rgb = id2rgb(ids)
    raw = b"".join(b"\x00" + row.tobytes() for row in rgb)
    trns = struct.pack(">HHH", *(int(v) for v in rgb[5, 3]))  # the colour of id 777
    ihdr = struct.pack(">IIBBBBB", ids.shape[1], ids.shape[0], 8, 2, 0, 0, 0)
    blob = (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"tRNS", trns) + _chunk(b"IDAT", zlib.compress(raw))
            + _chunk(b"IEND", b""))
    (tmp_path / "trns.png").write_bytes(blob)
    words = decode_id_words(read_png_file(tmp_path / "trns.png"))
    assert np.array_equal(words & 0xFFFFFF, ids)
    assert np.unique(words >> 24).size == 1


@both_decoders
def test_what_wuffs_refuses_goes_to_the_next_decoder(tmp_path, use_decoder, decoder):
    """Extra bytes after the last row inside the zlib stream: pyspng and PIL accept it, Wuffs does not."""
    use_decoder(decoder)
    ids = _ids()
    raw = b"".join(b"\x00" + row.tobytes() for row in id2rgb(ids)) + b"\x00" * 50
    (tmp_path / "extra.png").write_bytes(_png(ids.shape[1], ids.shape[0], zlib.compress(raw)))
    assert np.array_equal(read_id_png(tmp_path / "extra.png"), ids)


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
