"""Fixtures for the measure tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def sysfs(tmp_path: Path) -> Path:
    root = tmp_path / "sys"
    root.mkdir()
    return root
