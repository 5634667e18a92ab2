"""Fixtures for the measure tests."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def sysfs(tmp_path: Path) -> Path:
    root = tmp_path / "sys"
    root.mkdir()
    return root


@pytest.fixture
def h100_data() -> Path:
    """``shared/data/h100``: beside the repository clone (or beside the folder of worktrees)."""
    for shared in (REPO.parent / "shared", REPO.parent.parent / "shared"):
        if (shared / "data" / "h100" / "h100_b1.csv").is_file():
            return shared / "data" / "h100"
    pytest.skip("the real H100 measurements (../shared/data/h100) are not beside this clone")
