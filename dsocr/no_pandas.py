"""Keep pandas out of dsocr's Parquet-only commands.

pyarrow imports pandas whenever it is installed, on the first ``pa.array``, ``pa.table`` or
``to_numpy`` of a process, to learn whether its inputs are pandas objects: 0.19 s of a 0.83 s
``dsocr analyze`` process on the H200's host at 1.15 M events. dsocr hands pyarrow numpy arrays
and Python lists only, and nothing else those commands import needs pandas (``dsocr report``
draws its plotly figures with pandas hidden), so they hide it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

#: The commands that read and write Parquet, JSON and images only (not capture: torch and
#: transformers are not ours to restrict; sweep runs each capture in a process of its own).
PANDAS_FREE_COMMANDS = frozenset({"analyze", "export-trace", "compare", "emit", "import", "report", "sweep"})


class _HiddenPandas:
    """A meta path finder for which pandas is not installed."""

    @staticmethod
    def find_spec(name: str, path: Sequence[str] | None, target: ModuleType | None = None) -> ModuleSpec | None:
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError(f"No module named {name!r} (dsocr hides pandas: it never uses it)", name=name)
        return None


def hide_pandas() -> None:
    """Make ``import pandas`` fail for the rest of this process, unless it is imported already."""
    if "pandas" not in sys.modules and _HiddenPandas not in sys.meta_path:
        sys.meta_path.insert(0, _HiddenPandas)
