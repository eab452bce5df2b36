"""Shared fixtures: where the real market data lives, and skipping cleanly when it does not."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REPLAY_DATA = REPO.parent / "shared" / "replay_data"


@pytest.fixture(scope="session")
def replay_data() -> Path:
    """The read-only real-data folder beside the project (../shared/replay_data)."""
    if not REPLAY_DATA.is_dir():
        pytest.skip(f"real data folder {REPLAY_DATA} is absent")
    return REPLAY_DATA


def real_file(root: Path, relative: str) -> Path:
    """One file of the real data, skipping the test when that file is missing."""
    path = root / relative
    if not path.is_file():
        pytest.skip(f"real data file {path} is absent")
    return path
