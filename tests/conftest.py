"""Shared fixtures: sample pages drawn once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
from dsocr.capture.samples import write_sample_images


@pytest.fixture(scope="session")
def sample_pages(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """dsocr's three sample document pages (PNG, 1240x1754)."""
    return write_sample_images(tmp_path_factory.mktemp("pages"))
