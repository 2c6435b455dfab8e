"""A bounded list of warnings: malformed model output must not turn info.json into megabytes."""

from __future__ import annotations

#: Warnings kept per image; the rest are counted in one closing line.
MAX_WARNINGS = 20
#: Characters of offending model output quoted in a warning.
QUOTE_CHARS = 40


def quote(text: str) -> str:
    """``text`` as a short repr for a warning (long model output is cut)."""
    if len(text) > QUOTE_CHARS:
        return repr(text[:QUOTE_CHARS]) + "..."
    return repr(text)


class WarningList:
    """Keeps the first MAX_WARNINGS messages and counts the others."""

    def __init__(self) -> None:
        self._kept: list[str] = []
        self._dropped = 0

    def add(self, message: str) -> None:
        """Record one warning."""
        if len(self._kept) < MAX_WARNINGS:
            self._kept.append(message)
        else:
            self._dropped += 1

    def extend(self, messages: tuple[str, ...] | list[str]) -> None:
        """Record several warnings, in order."""
        for message in messages:
            self.add(message)

    def as_tuple(self) -> tuple[str, ...]:
        """The kept warnings, plus one line counting the dropped ones when there are any."""
        if self._dropped:
            return (*self._kept, f"... and {self._dropped} more warnings")
        return tuple(self._kept)
