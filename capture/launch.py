"""Start a capture as several processes through torchrun (torch-free: the parent only launches).

The parent validates the whole configuration first (see capture.preflight), so a bad option is
one ``Error:`` line from the parent, not one per rank and a launcher traceback.
"""

from __future__ import annotations

import subprocess
import sys

LAUNCHER = "torch.distributed.run"


def launch(argv: list[str], processes: int) -> int:
    """Re-run this capture command under torchrun with ``processes`` ranks; return its exit status."""
    command = [sys.executable, "-m", LAUNCHER, "--standalone", f"--nproc-per-node={processes}"]
    command += ["-m", "dsocr.cli", *argv]
    return subprocess.run(command, check=False).returncode
