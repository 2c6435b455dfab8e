"""One image folder, replaced safely: every file staged under a temp name, then renamed into place.

Emit never empties a folder before its new render exists. The files of a render are written to
hidden temp names beside their final names (``.NAME.HEX.tmp``), then renamed over the old ones
in writing order, ``info.json`` last. A render killed part-way leaves the previous info.json in
place (never a folder without one), and info.json lists the sha256 of every file it describes,
so a folder whose files and info.json disagree is never taken as up to date (emit/plan.py).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from dsocr.tempnames import temp_path


def sha256_hex(data: bytes) -> str:
    """The sha256 hex digest info.json records for a file's bytes."""
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str | None:
    """The sha256 hex digest of the file at ``path``, or None when it cannot be read."""
    try:
        with path.open("rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError:
        return None


def check_not_linked(folder: Path, subfolders: tuple[str, ...]) -> None:
    """Raise OSError when ``folder`` or one of its ``subfolders`` is a symbolic link: writing
    or removing through it would touch files outside the run."""
    for path in (folder, *(folder / name for name in subfolders)):
        if path.is_symlink():
            raise OSError(f"{path} is a symbolic link: emit writes only real folders")


@dataclass
class StagedFolder:
    """The files of one render, written under temp names until :meth:`commit`."""

    out_dir: Path
    #: (temp, final) in writing order.
    staged: list[tuple[Path, Path]] = field(default_factory=list)
    #: Name relative to ``out_dir`` -> sha256 of the staged bytes.
    digests: dict[str, str] = field(default_factory=dict)

    def add(self, relative: str, data: bytes) -> None:
        """Stage ``data`` as ``out_dir/relative``."""
        final = self.out_dir / relative
        final.parent.mkdir(parents=True, exist_ok=True)
        temp = temp_path(final)
        # "x": O_CREAT | O_EXCL, which never follows a link planted at the temp name.
        with temp.open("xb") as handle:
            self.staged.append((temp, final))
            handle.write(data)
        self.digests[relative] = sha256_hex(data)

    def commit(self) -> None:
        """Rename every staged file over its final name, in writing order (info.json last)."""
        for temp, final in self.staged:
            os.replace(temp, final)
        self.staged.clear()

    def discard(self) -> None:
        """Remove the staged files (a render that failed): the previous render stays as it was."""
        for temp, _ in self.staged:
            temp.unlink(missing_ok=True)
        self.staged.clear()
