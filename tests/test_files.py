"""Atomic writes: a reader sees the old file or the new one, never a part; no temp file is left."""

from __future__ import annotations

import os

import pytest

from wav2lip_uhq.files import write_atomic


def test_write_atomic_replaces_text_and_bytes(tmp_path):
    target = tmp_path / "settings.json"
    write_atomic(target, "old")
    assert write_atomic(target, "néw") == target and target.read_text(encoding="utf-8") == "néw"
    write_atomic(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["settings.json"]


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "thumb.jpg"
    target.write_bytes(b"old")

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["thumb.jpg"]


def test_parents_are_made_only_when_asked(tmp_path):
    nested = tmp_path / "a" / "b" / "list.txt"
    with pytest.raises(FileNotFoundError):
        write_atomic(nested, "x")
    write_atomic(nested, "x", parents=True)
    assert nested.read_text() == "x"
