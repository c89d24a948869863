"""Atomic writes: the target appears whole with ordinary permissions, no temporary file stays."""
import os
import stat

import pytest

from slicercad import atomic


def test_atomic_writes_leave_ordinary_permissions_and_no_temporary_file(tmp_path):
    path = atomic.write_text(tmp_path / "report.md", "hello")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]


def test_a_failed_write_keeps_the_previous_file(tmp_path):
    path = atomic.write_text(tmp_path / "manifest.jsonl", "old\n")
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["manifest.jsonl"]
