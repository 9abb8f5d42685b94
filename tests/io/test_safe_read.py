"""Reading users' files: regular files only, whole, one-line errors; plain PNG names joined without pathlib."""

from __future__ import annotations

import os
import threading

import pytest

from pss_bench.errors import FormatError, UnsafePathError
from pss_bench.io import panoptic
from pss_bench.io.panoptic import NAME_MAX, safe_join
from pss_bench.io.safe_read import read_bytes


def test_reads_the_whole_file_empty_or_large(tmp_path):
    f = tmp_path / "a.bin"
    for data in (b"", b"x", os.urandom(200_000)):
        f.write_bytes(data)
        assert read_bytes(f) == data


def test_missing_folder_and_size_bound_are_one_line_errors_naming_the_file(tmp_path):
    f = tmp_path / "a.png"
    with pytest.raises(FormatError, match=r"a\.png: PNG file not found$"):
        read_bytes(f, what="PNG file")
    with pytest.raises(FormatError, match=r": expected a PNG file, found a folder$"):
        read_bytes(tmp_path, what="PNG file")
    f.write_bytes(b"x" * 100)
    assert read_bytes(f, max_bytes=100) == b"x" * 100
    with pytest.raises(FormatError, match=r"^image 3: 100 bytes, more than such a PNG file can have$"):
        read_bytes(f, "image 3", what="PNG file", max_bytes=99)
    # where="" : no prefix (the caller adds its own, as the caches do)
    with pytest.raises(FormatError, match=r"^100 bytes, more than such a cache entry can have$"):
        read_bytes(f, "", what="cache entry", max_bytes=10)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "p.png"
    os.mkfifo(fifo)
    done = []

    def read():
        with pytest.raises(FormatError, match=r"expected a PNG file, found a special file \(FIFO, named pipe\)"):
            read_bytes(fifo, what="PNG file")
        done.append(True)

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(10)
    assert done, "reading a FIFO blocked"


NAMES = ["a.png", "000000000139.png", "é.png", "a b.png", "x" * NAME_MAX, "x" * (NAME_MAX + 1), "a\udcffb.png",
         "a\0b.png", ".", "..", "sub/a.png", "../a.png", "/abs.png", "a\\b.png", "a.png/", ""]


@pytest.mark.parametrize("name", NAMES, ids=range(len(NAMES)))
def test_plain_name_shortcut_gives_what_the_full_checks_give(tmp_path, monkeypatch, name):
    def outcome():
        try:
            return ("ok", safe_join(tmp_path, name, where="w", resolve=False))
        except UnsafePathError as exc:
            return ("refused", str(exc))

    fast = outcome()
    monkeypatch.setattr(panoptic, "_PLAIN_NAMES", False)
    assert outcome() == fast
