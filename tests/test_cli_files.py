"""Outputs get the umask's mode, like any file the user makes, not mkstemp's 0600."""

from __future__ import annotations

import os
import stat

import pytest

from k210.core.fsutil import atomic_path, current_umask, write_bytes_atomic, write_json_atomic


@pytest.fixture
def umask():
    def set_mask(mask: int) -> None:
        os.umask(mask)

    old = os.umask(0o022)
    os.umask(old)
    yield set_mask
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002, 0o077])
def test_atomic_files_and_directories_follow_the_umask(tmp_path, umask, mask):
    umask(mask)
    assert current_umask() == mask
    f = write_bytes_atomic(tmp_path / "a.kmodel", b"x")
    j = write_json_atomic(tmp_path / "sub" / "b.json", {"a": 1})
    with atomic_path(tmp_path / "saved", directory=True) as tmp:
        (tmp / "inner").write_text("y")
    plain = tmp_path / "plain.txt"
    plain.write_text("z")  # what open() gives: the reference
    for path in (f, j):
        assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o666 & ~mask
    assert stat.S_IMODE((tmp_path / "saved").stat().st_mode) == 0o777 & ~mask
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]

