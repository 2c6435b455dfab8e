"""The exceptions dsocr raises on bad input; the CLI turns each into one ``Error:`` line."""


class DsocrError(Exception):
    """Base of every expected failure: bad input, a bad run directory, a missing model."""


class BadInputError(DsocrError):
    """An argument, option or input file the user gave cannot be used."""


class SchemaMismatchError(DsocrError):
    """An artifact is not the dsocr table, or not the schema version, this reader expects."""


class RunDirError(DsocrError):
    """A run directory is missing, incomplete, or belongs to a different run."""


class ModelLoadError(DsocrError):
    """A model folder does not exist, or holds a model no registered model family loads."""


class MissingExtraError(DsocrError):
    """A command needs an optional dependency group that is not installed."""


class OutputError(DsocrError, OSError):
    """A file or folder cannot be written: read-only, full, or a file where a folder should be.

    Also an OSError, so that code which turns a failed write into a failed row (emit's
    workers) still catches it; ``strerror`` is the system's reason alone ("Read-only file
    system"), for such code to show without the path again."""

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.strerror = reason


class NoImageSucceededError(DsocrError):
    """A capture ran to its end and every image failed (each failed row says why)."""
