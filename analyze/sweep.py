"""A sweep's table: each variant against the baseline, figure by figure, with a noise band.

Per-image figures (TTFT, TPOT p50 over warm steps, decode tokens/s) pool every image of every
repeat; image k of repeat r of a variant pairs with image k of repeat r of the baseline (runs
next to each other in the sweep's order). Per-run figures (pages/s, peak GPU memory) have one
value per repeat, paired by repeat. The verdict and its noise are `dsocr compare`'s, through
``verdict``: with one repeat and one page, only its noise floor remains.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsocr.analyze.compare import FASTER, SAME, SLOWER, verdict
from dsocr.analyze.compare import pairing_keys as image_keys
from dsocr.analyze.runner import analyze_run

from dsocr import rundir
from dsocr.errors import DsocrError
from dsocr.sweep_plan import STATUS_OK, SweepManifest, Variant, read_manifest

MIXED = "mixed"
#: A run that captured but whose analysis failed (its reason says why); sweep.json is not changed.
STATUS_UNREADABLE = "unreadable"
PER_IMAGE, PER_RUN = "image", "run"


@dataclass(frozen=True)
class SweepFigure:
    """A column of the sweep table: ``lower_is_faster`` as `verdict` takes it (None: a quantity)."""

    name: str
    label: str
    unit: str
    lower_is_faster: bool | None
    scope: str


FIGURES = (
    SweepFigure("ttft_ms", "TTFT", "ms", True, PER_IMAGE),
    SweepFigure("tpot_warm_p50_ms", "TPOT p50 warm", "ms", True, PER_IMAGE),
    SweepFigure("decode_tokens_per_s", "decode tok/s", "tok/s", False, PER_IMAGE),
    SweepFigure("pages_per_s", "pages/s", "pages/s", False, PER_RUN),
    SweepFigure("peak_gpu_mib", "peak GPU mem", "MiB", None, PER_RUN),
)


@dataclass(frozen=True)
class RunFigures:
    """One run's figures: per image (keyed by the page's content hash and its repeat in the run) and per run."""

    images: dict[str, dict[str, float]]
    run: dict[str, float | None]


def run_figures(run_dir: Path) -> RunFigures:
    """Analyze one run (writing its ``analysis/``) and read the sweep's figures from it: the
    per-image latency rows of summary.json and the run's pages/s and peak memory from run.json."""
    summary = analyze_run(run_dir).summary
    keys = image_keys(run_dir)
    per_image_names = [figure.name for figure in FIGURES if figure.scope == PER_IMAGE]
    images: dict[str, dict[str, float]] = {name: {} for name in per_image_names}
    for row in summary.images:
        key = keys.get((row.get("rank") or 0, row["image_index"]))
        for name in per_image_names:
            if key is not None and row.get(name) is not None:
                images[name][key] = float(row[name])
    record = rundir.read_run_json(run_dir)
    ok = record.images.ok
    peaks = [rank.peak_gpu_mib for rank in record.ranks or () if rank.peak_gpu_mib is not None]
    run: dict[str, float | None] = {
        "pages_per_s": ok / record.capture_seconds if ok and record.capture_seconds else None,
        "peak_gpu_mib": max(peaks) if peaks else None,
    }
    return RunFigures(images=images, run=run)


def _values(figures: dict[int, RunFigures], figure: SweepFigure) -> dict[str, float]:
    """``repeat/key`` -> value over every repeat of one variant (``repeat`` alone for per-run figures)."""
    values: dict[str, float] = {}
    for repeat, run in figures.items():
        if figure.scope == PER_IMAGE:
            values |= {f"{repeat}/{key}": value for key, value in run.images[figure.name].items()}
        elif run.run[figure.name] is not None:
            values[str(repeat)] = float(run.run[figure.name])  # type: ignore[arg-type]
    return values


def compare_figure(base: dict[str, float], other: dict[str, float], figure: SweepFigure) -> dict[str, Any]:
    """The variant's figure against the baseline's: both medians, the ratio, its noise band, the verdict."""
    same_keys = bool(base) and base.keys() == other.keys()
    paired = [other[key] / base[key] - 1 for key in base if base[key]] if same_keys else None
    result = verdict(list(base.values()), list(other.values()), lower_is_faster=figure.lower_is_faster, paired=paired)
    median_a, median_b, noise = result["a"], result["b"], result["noise"]
    ratio = median_b / median_a if median_a and median_b is not None else None
    return {
        "baseline": median_a,
        "value": median_b,
        "ratio": ratio,
        # compare's noise is relative already (analyze.noise): the band around the ratio.
        "band": noise,
        "verdict": result["verdict"],
        "samples": len(other),
        "paired": same_keys,
        # With one value a side there is no spread to measure: the band is compare's floor alone.
        "band_measured": (len(paired) if paired is not None else min(len(base), len(other))) > 1,
    }


def variant_verdict(figures: dict[str, dict[str, Any]]) -> str | None:
    """faster, slower, same within noise, or mixed, over the timing figures (memory apart)."""
    words = {
        figures[figure.name]["verdict"]
        for figure in FIGURES
        if figure.lower_is_faster is not None and figures.get(figure.name, {}).get("verdict")
    }
    if not words:
        return None
    if FASTER in words and SLOWER in words:
        return MIXED
    return FASTER if FASTER in words else SLOWER if SLOWER in words else SAME


def _variant_row(
    variant: Variant, manifest: SweepManifest, figures: dict[str, dict[int, RunFigures]]
) -> dict[str, Any]:
    runs = [run for run in manifest.runs if run.variant == variant.name]
    failed = [run for run in runs if run.status != STATUS_OK]
    row: dict[str, Any] = {
        "variant": variant.name,
        "options": dict(variant.options),
        "baseline": variant.baseline,
        "runs": [run.run_dir for run in runs if run.status == STATUS_OK],
        "failed_runs": [{"run_dir": run.run_dir, "status": run.status, "reason": run.reason} for run in failed],
        "reason": failed[-1].reason if failed and len(failed) == len(runs) else None,
        "figures": {},
        "verdict": None,
    }
    mine, base = figures.get(variant.name), figures.get(manifest.baseline.name)
    if not mine or not base:
        return row
    for figure in FIGURES:
        row["figures"][figure.name] = compare_figure(_values(base, figure), _values(mine, figure), figure)
    if not variant.baseline:
        row["verdict"] = variant_verdict(row["figures"])
    return row


def sweep_table(sweep_dir: Path) -> dict[str, Any]:
    """Analyze every finished run of the sweep in ``sweep_dir`` and compare each variant with the
    baseline (JSON-ready; docs/sweep.md)."""
    manifest = read_manifest(sweep_dir)
    figures: dict[str, dict[int, RunFigures]] = {}
    for run in manifest.runs:
        if run.status != STATUS_OK:
            continue
        try:
            figures.setdefault(run.variant, {})[run.repeat] = run_figures(sweep_dir / run.run_dir)
        except DsocrError as exc:
            # A run that captured but cannot be analyzed (removed, damaged) is that run's failure alone.
            run.status, run.reason = STATUS_UNREADABLE, f"analyze: {exc}"
    return {
        "sweep_dir": str(sweep_dir),
        "baseline": manifest.baseline.name,
        "repeats": manifest.repeats,
        "profile": manifest.profile,
        "images": len(manifest.images),
        "order": [f"{run.variant}#{run.repeat}" for run in sorted(manifest.runs, key=lambda run: run.order)],
        "figures": [
            {"name": figure.name, "label": figure.label, "unit": figure.unit, "scope": figure.scope}
            for figure in FIGURES
        ],
        "variants": [_variant_row(variant, manifest, figures) for variant in manifest.variants],
    }
