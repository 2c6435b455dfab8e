"""The one naming rule of every atomic write: a hidden temp file beside its final name.

``.FINAL.HEX.tmp`` is written, then renamed over ``FINAL``. A kill between the two leaves the
temp behind, and the next run recognises it by this name. No pyarrow here: emit's render
workers import it.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

#: Random bytes in a temp name (hex-encoded, so twice as many characters).
TEMP_TOKEN_BYTES = 8
TEMP_NAME = re.compile(rf"\.(?P<final>.+)\.[0-9a-f]{{{2 * TEMP_TOKEN_BYTES}}}\.tmp")


def temp_path(final: Path) -> Path:
    """A fresh temp name beside ``final`` (not created)."""
    return final.parent / f".{final.name}.{secrets.token_hex(TEMP_TOKEN_BYTES)}.tmp"


def temp_final_name(name: str) -> str | None:
    """The final file name a temp file named ``name`` stood for, or None when it is not one."""
    match = TEMP_NAME.fullmatch(name)
    return None if match is None else match["final"]
