"""Shared fixtures: sample pages drawn once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dsocr.capture.samples import write_sample_images

from dsocr.no_pandas import unhide_pandas


@pytest.fixture(scope="session")
def sample_pages(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """dsocr's three sample document pages (PNG, 1240x1754)."""
    return write_sample_images(tmp_path_factory.mktemp("pages"))


@pytest.fixture(autouse=True)
def _pandas_visible_again() -> Iterator[None]:
    """An in-process Parquet-only command hides pandas for the rest of its process (as a real
    ``dsocr analyze`` process should); a later in-process capture in the same test worker must not
    inherit that: transformers asks importlib whether pandas exists and the hiding finder raises."""
    yield
    unhide_pandas()
