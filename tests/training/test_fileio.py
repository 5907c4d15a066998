import os
import stat

import pytest

from training.fileio import atomic_write_bytes


def test_writes_the_bytes_into_a_new_folder_readable_by_all(tmp_path):
    previous = os.umask(0o077)
    try:
        path = atomic_write_bytes(tmp_path / "ab" / "blob", b"x" * 100_000)
    finally:
        os.umask(previous)
    assert path.read_bytes() == b"x" * 100_000
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["blob"]


def test_replaces_the_old_file_whole_and_leaves_no_temp_file_when_it_fails(tmp_path):
    atomic_write_bytes(tmp_path / "blob", b"old")
    atomic_write_bytes(tmp_path / "blob", b"new")
    assert (tmp_path / "blob").read_bytes() == b"new"
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "inside").write_bytes(b"")
    with pytest.raises(OSError):
        atomic_write_bytes(tmp_path / "folder", b"cannot replace a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blob", "folder"]
