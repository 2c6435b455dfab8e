"""Per image, the per-step facts the step plots share: reference latency, traced steps, cold steps."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from dsocr.report.inputs import RunInputs

from dsocr.vocab import ImageStatus

#: Optional prediction columns (added by the cold-step work): read when the schema has them.
COLD_COLUMN = "decode_step_cold"


@dataclass(frozen=True)
class ImageSteps:
    """One image's decode steps (K = 1..N-1) as the capture's reference clock measured them."""

    image_index: int
    label: str
    step_ms: np.ndarray
    #: Steps found in the torch trace (sampled runs trace windows of steps).
    traced: np.ndarray
    #: Steps the capture marked cold (None: the run does not record it).
    cold: np.ndarray | None


def traced_steps(steps: pa.Table | None) -> dict[int, np.ndarray]:
    """image_index -> sorted traced step numbers, from analysis/steps.parquet."""
    if steps is None or steps.num_rows == 0:
        return {}
    table = steps.select(["image_index", "step"]).sort_by([("image_index", "ascending"), ("step", "ascending")])
    images = table["image_index"].to_numpy()
    numbers = table["step"].to_numpy()
    bounds = np.flatnonzero(np.diff(images)) + 1
    return {
        int(group[0]): values for group, values in zip(np.split(images, bounds), np.split(numbers, bounds), strict=True)
    }


def image_steps(run: RunInputs) -> list[ImageSteps]:
    """Every processed image with at least one decode step, in image order."""
    ok = run.predictions.filter(pc.equal(run.predictions["status"], ImageStatus.ok))
    traced = traced_steps(run.steps)
    has_cold = COLD_COLUMN in ok.column_names
    columns = ["image_index", "image_path", "decode_step_ms", *([COLD_COLUMN] if has_cold else [])]
    result = []
    for row in ok.select(columns).to_pylist():
        values = row["decode_step_ms"] or []
        if not values:
            continue
        step_ms = np.array([np.nan if value is None else value for value in values], dtype=np.float64)
        cold = None
        if has_cold and row[COLD_COLUMN] is not None:
            cold = np.array([bool(flag) for flag in row[COLD_COLUMN]], dtype=bool)
        name = str(row["image_path"]).rsplit("/", 1)[-1]
        result.append(
            ImageSteps(
                image_index=row["image_index"],
                label=f"img {row['image_index']}: {name}",
                step_ms=step_ms,
                traced=traced.get(row["image_index"], np.zeros(0, dtype=np.int32)),
                cold=cold,
            )
        )
    return result


def windows(steps: np.ndarray) -> list[tuple[int, int]]:
    """Contiguous runs of step numbers as (first, last)."""
    if steps.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(steps) != 1)
    starts = np.concatenate(([steps[0]], steps[breaks + 1]))
    ends = np.concatenate((steps[breaks], [steps[-1]]))
    return [(int(a), int(b)) for a, b in zip(starts, ends, strict=True)]
