"""Folders given as feed inputs: their files below them, sorted, hidden entries left out; an empty one is an error."""

from __future__ import annotations

from pathlib import Path

import pytest

from feeds import FeedError, feed_files


def test_a_folder_is_its_files_sorted_and_files_stay_where_they_are(tmp_path: Path) -> None:
    day = tmp_path / "day"
    (day / "b").mkdir(parents=True)
    (day / ".cache").mkdir()
    for name in ("2.itch", "1.itch", "b/3.itch", ".hidden", ".cache/x.itch"):
        (day / name).write_bytes(b"")
    single = tmp_path / "single.itch"
    single.write_bytes(b"")
    got = feed_files([str(single), str(day)])
    assert got == [str(single), str(day / "1.itch"), str(day / "2.itch"), str(day / "b" / "3.itch")]


def test_an_empty_folder_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(FeedError, match=str(tmp_path)):
        feed_files([str(tmp_path)])
