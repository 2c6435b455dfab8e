"""summary.json ``roofline`` and ``findings``: glue from what analyze measured to the two analyses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from dsocr.analyze.attribution import GpuWork
from dsocr.analyze.findings import FindingInputs, findings
from dsocr.analyze.flops import DTYPE_BYTES, architecture
from dsocr.analyze.gpu_figures import copy_figures, launch_figures
from dsocr.analyze.peaks import DevicePeak, device_peak
from dsocr.analyze.profiler_flops import profiler_check
from dsocr.analyze.ranges import Ranges
from dsocr.analyze.roofline import roofline_summary, roofline_table
from dsocr.analyze.steps import decode_steps, reference_steps, traced_steps

DEVICE_CPU = "cpu"


@dataclass(frozen=True)
class InsightInputs:
    run: dict[str, Any]
    predictions: pa.Table
    ranges: Ranges
    gpu: GpuWork | None
    timings: pa.Table
    profiler_flops: dict[str, list[float]]


def _model(run: dict[str, Any]) -> dict[str, Any]:
    return run.get("model") or {}


def run_peak(run: dict[str, Any], *, peak_tflops: float | None, peak_gbps: float | None) -> DevicePeak:
    """The peaks for a run: its recorded device name and dtype, then the overrides."""
    model = _model(run)
    name = model.get("device_name") or run.get("device_name")
    peak = device_peak(name, model.get("dtype"), peak_tflops=peak_tflops, peak_gbps=peak_gbps)
    if model.get("device") == DEVICE_CPU and peak.reason is not None:
        reason = "CPU run: the peaks table holds GPUs; pass --peak-tflops and --peak-gbps for this CPU"
        return DevicePeak(**{**peak.__dict__, "reason": reason})
    return peak


def _reason(run: dict[str, Any], peak: DevicePeak) -> str | None:
    """Why roofline figures are missing (None when everything could be computed)."""
    model = _model(run)
    if architecture(model.get("architecture")) is None:
        return "run.json records no model architecture (captured before dsocr recorded it): FLOPs and bytes unknown"
    if model.get("dtype") not in DTYPE_BYTES:
        return f"model dtype {model.get('dtype')!r} has no known width: bytes unknown"
    return peak.reason


def add_insights(
    summary: dict[str, Any], inputs: InsightInputs, *, peak_tflops: float | None, peak_gbps: float | None
) -> pa.Table:
    """Add ``roofline`` and ``findings`` to ``summary``; return the ROOFLINE table."""
    run = inputs.run
    peak = run_peak(run, peak_tflops=peak_tflops, peak_gbps=peak_gbps)
    work = inputs.gpu.table if inputs.gpu is not None else None
    traced = traced_steps(inputs.ranges.table, work)
    reference = reference_steps(inputs.predictions)
    steps = decode_steps(traced, reference)
    arch = architecture(_model(run).get("architecture"))
    table = roofline_table(arch, _model(run).get("dtype"), peak, inputs.predictions, inputs.timings, steps)
    summary["roofline"] = roofline_summary(
        table, peak, reason=_reason(run, peak), profiler=profiler_check(inputs.profiler_flops, table)
    )
    has_device = work is not None and work.num_rows > 0
    finding_inputs = FindingInputs(
        predictions=inputs.predictions,
        timings=inputs.timings,
        steps=steps,
        top=summary["top"],
        roofline=summary["roofline"],
        launch=launch_figures(work) if has_device else None,
        copies=copy_figures(work) if has_device else None,
        reference_steps=reference,
        traced_steps=traced,
    )
    summary["findings"] = findings(finding_inputs)
    return table
