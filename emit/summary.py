"""What one ``dsocr emit`` did: counts, failures and folders, as lines for the terminal or as JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dsocr.emit.info import EMIT_FAILED, EMIT_NOT_SELECTED, EMIT_RENDERED, EMIT_UP_TO_DATE

from dsocr.errors import DsocrError

#: Up to this many images, emit prints each one's folder; beyond, the viz root and predictions.jsonl.
MAX_LISTED_FOLDERS = 10


class EmitFailedError(DsocrError):
    """Some images could not be rendered (the others were)."""


@dataclass
class EmitSummary:
    """What one emit did, for the CLI's summary line and --json."""

    run_dir: Path
    viz_root: Path
    jsonl: Path
    total: int = 0
    rendered: int = 0
    up_to_date: int = 0
    not_selected: int = 0
    capture_failed: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # about the whole run (the CLI prints them)
    #: (image_path, folder) of each image with a render, in image order.
    folders: list[tuple[str, Path]] = field(default_factory=list)
    seconds: float = 0.0

    def line(self) -> str:
        """One line: the counts that are not zero, where the outputs are, and the time."""
        parts = [f"{self.rendered} rendered"]
        optional = [
            (self.up_to_date, "up to date (--force renders them again)"),
            (len(self.failures), "failed"),
            (self.capture_failed, "not rendered (capture failed)"),
            (self.not_selected, "not selected"),
        ]
        parts += [f"{count} {what}" for count, what in optional if count]
        return f"emit: {', '.join(parts)} of {self.total} images -> {self.viz_root} in {self.seconds:.1f} s"

    def lines(self) -> list[str]:
        """The summary line, then where each image's folder is (or how to find them, for many)."""
        if not self.folders:
            return [self.line()]
        if len(self.folders) > MAX_LISTED_FOLDERS:
            where = (
                f"  {len(self.folders)} image folders in {self.viz_root}/<md5>/; {self.jsonl} names each image's folder"
            )
            return [self.line(), where]
        return [self.line(), *(f"  {folder}/  <- {image_path}" for image_path, folder in self.folders)]

    def failure_message(self) -> str:
        """The one-line error when some images failed."""
        error = self.failures[0][1]
        return (
            f"{len(self.failures)} of {self.total} images could not be rendered (first: {error}); "
            f"each is listed in {self.jsonl}"
        )

    def as_json(self) -> dict[str, Any]:
        """The summary as JSON (paths as strings)."""
        return {
            "run_dir": str(self.run_dir),
            "viz_root": str(self.viz_root),
            "predictions_jsonl": str(self.jsonl),
            "total": self.total,
            "rendered": self.rendered,
            "up_to_date": self.up_to_date,
            "failed": len(self.failures),
            "capture_failed": self.capture_failed,
            "not_selected": self.not_selected,
            "failures": [{"image_path": path, "error": error} for path, error in self.failures],
            "folders": [{"image_path": path, "folder": str(folder)} for path, folder in self.folders],
            "warnings": self.warnings,
            "seconds": self.seconds,
        }

    def count(self, record: dict[str, Any]) -> None:
        """Add one predictions.jsonl record to the counts."""
        status = record["emit_status"]
        if status == EMIT_FAILED:
            self.failures.append((record["image_path"], record["emit_error"]))
        elif status == EMIT_RENDERED:
            self.rendered += 1
        elif status == EMIT_UP_TO_DATE:
            self.up_to_date += 1
        elif status == EMIT_NOT_SELECTED:
            self.not_selected += 1
        else:
            self.capture_failed += 1
