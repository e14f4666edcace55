"""The shared foundation helpers: atomic writes (lifecycle.fileio) and ISO time parsing (lifecycle.clock)."""
from __future__ import annotations

import datetime as dt
import os
import stat

import pytest

from lifecycle import fileio
from lifecycle.clock import parse_utc, utcnow_iso
from lifecycle.fileio import atomic_write
from lifecycle.paths import StatePaths


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_write_replaces_whole_files_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "a" / "b" / "out.json"
    assert atomic_write(target, "first") == target  # parent folders created
    atomic_write(target, b"\x00second")
    assert target.read_bytes() == b"\x00second"
    assert [p.name for p in target.parent.iterdir()] == ["out.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert _mode(target) == 0o666 & ~umask  # what open(path, "w") gives


def test_atomic_write_sets_an_exact_mode_and_can_refuse_to_overwrite(tmp_path):
    target = tmp_path / "secret"
    atomic_write(target, "s3cret", mode=0o600, replace=False)
    assert _mode(target) == 0o600
    with pytest.raises(FileExistsError):
        atomic_write(target, "other", replace=False)
    assert target.read_text() == "s3cret"
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]
    atomic_write(target, "report", mode=0o644)
    assert _mode(target) == 0o644


def test_a_failed_write_keeps_the_old_file_and_cleans_up(tmp_path, monkeypatch):
    target = tmp_path / "out.txt"
    atomic_write(target, "old")

    def crash(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(fileio.os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        atomic_write(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_a_secret_is_created_once_owner_only_and_never_empty(tmp_path):
    paths = StatePaths(tmp_path)
    first = paths.secret("token")
    assert len(first) > 20 and paths.secret("token") == first
    path = tmp_path / "secrets" / "token"
    assert _mode(path) == 0o600
    path.write_text("")  # what a crash of the old, non-atomic code could leave
    again = paths.secret("token")
    assert again and again != first and path.read_text() == again


@pytest.mark.parametrize("text", ["2026-01-07T13:05:09.123Z", "2026-01-07T13:05:09.123z",
                                  "2026-01-07T14:05:09.123+01:00", "2026-01-07T13:05:09.123",
                                  " 2026-01-07T13:05:09.123+00:00 "])
def test_parse_utc_reads_every_spelling_as_aware_utc(text):
    assert parse_utc(text) == dt.datetime(2026, 1, 7, 13, 5, 9, 123000, tzinfo=dt.UTC)
    assert parse_utc(text).tzinfo == dt.UTC


@pytest.mark.parametrize("bad", ["", "yesterday", None, 12])
def test_parse_utc_names_what_it_cannot_read(bad):
    with pytest.raises(ValueError, match=f"not an ISO 8601 time: {bad!r}"):
        parse_utc(bad)


def test_utcnow_iso_round_trips_and_stays_importable_from_the_ledger():
    from lifecycle.ledger import utcnow_iso as from_ledger
    from lifecycle.reporting.html import _parse_time

    now = utcnow_iso()
    assert from_ledger is utcnow_iso and now.endswith("Z")
    assert abs(parse_utc(now) - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)
    assert _parse_time(now) == parse_utc(now) and _parse_time("garbage") is None and _parse_time(None) is None
