"""Atomic writes: complete or absent, with ordinary permissions."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fusionrec.core.io import atomic_write, atomic_write_text


def test_atomic_write_replaces_the_target_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "a.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["a.txt"]


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    atomic_write_text(target, "old")

    def explode(handle: object) -> None:
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, explode)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_written_files_get_the_umask_permissions_not_owner_only(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        target = tmp_path / "a.txt"
        atomic_write_text(target, "x")
        assert target.stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)
