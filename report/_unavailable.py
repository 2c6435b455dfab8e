"""A plot that cannot be drawn, and why: the page says so instead of leaving a hole."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Unavailable:
    """The reason a section has no plot (rendered as "not available: <reason>")."""

    reason: str
