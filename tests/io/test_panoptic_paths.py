"""PNG paths of a panoptic JSON: the one-lstat shortcut resolves every name as os.path.realpath does."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pss_bench.errors import UnsafePathError
from pss_bench.io.panoptic import PanopticAnnotation, PanopticJson, _realpath_in
from pss_bench.structures import Segments

pytestmark = pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symbolic links here")


@pytest.fixture
def tree(tmp_path) -> tuple[Path, Path]:
    """``real/pngs`` with plain files, links inside and outside, a sub-folder; ``pngs`` a link to it."""
    pngs = tmp_path / "real" / "pngs"
    (pngs / "sub").mkdir(parents=True)
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"x")
    for name in ("a.png", "b.png", "sub/c.png"):
        (pngs / name).write_bytes(b"x")
    (pngs / "link_in.png").symlink_to("a.png")
    (pngs / "link_out.png").symlink_to(outside)
    (pngs / "link_dir").symlink_to(tmp_path)
    (pngs / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    link_folder = tmp_path / "pngs"
    link_folder.symlink_to(pngs)
    return pngs, link_folder


NAMES = ["a.png", "b.png", "sub/c.png", "link_in.png", "link_out.png", "link_dir/outside.png", "dangling.png",
         "missing.png", "sub/missing.png", "sub", "a.png/", "./a.png"]


@pytest.mark.parametrize("which", ["real", "through a linked folder"])
def test_shortcut_equals_realpath(tree, which):
    folder = tree[0] if which == "real" else tree[1]
    root = os.path.realpath(folder)
    for name in NAMES:
        joined = folder / name
        assert _realpath_in(root, joined, name) == os.path.realpath(joined), name


def test_links_out_of_the_folder_are_still_refused(tree):
    pngs, link_folder = tree
    for folder in (pngs, link_folder):
        anns = [PanopticAnnotation(i, name, Segments.from_records([])) for i, name in enumerate(NAMES)]
        pj = PanopticJson(path=folder.parent / "x.json", png_dir=folder, categories={}, annotations=anns)
        problems = dict(pj.png_path_problems())
        # outside: link_out, link_dir/..., dangling; the same file as a.png: link_in, "a.png/", "./a.png"
        assert set(problems) == {3, 4, 5, 6, 10, 11}, problems
        assert "outside its folder" in problems[4] and "outside its folder" in problems[5]
        assert "is also the PNG of image 0" in problems[3]
        with pytest.raises(UnsafePathError, match="link_out.png"):
            pj.png_path(anns[4])
