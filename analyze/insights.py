"""summary.json ``roofline`` and ``findings``: two metrics over AnalysisInputs, and the ROOFLINE
table and device peaks that the runner computes once for them."""

from __future__ import annotations

from dsocr.analyze.findings import Finding, FindingInputs, typed_findings
from dsocr.analyze.flops import DTYPE_BYTES, architecture
from dsocr.analyze.inputs import AnalysisInputs
from dsocr.analyze.peaks import DevicePeak, device_peak
from dsocr.analyze.profiler_flops import profiler_check
from dsocr.analyze.roofline import Roofline, roofline_summary

from dsocr.records import RunRecord

DEVICE_CPU = "cpu"


def run_peak(run: RunRecord, *, peak_tflops: float | None, peak_gbps: float | None) -> DevicePeak:
    """The peaks for a run: its recorded device name and dtype, then the overrides."""
    model = run.model
    peak = device_peak(model.device_name, model.dtype, peak_tflops=peak_tflops, peak_gbps=peak_gbps)
    if model.device == DEVICE_CPU and peak.reason is not None:
        reason = "CPU run: the peaks table holds GPUs; pass --peak-tflops and --peak-gbps for this CPU"
        return DevicePeak(**{**peak.__dict__, "reason": reason})
    return peak


def _reason(run: RunRecord, peak: DevicePeak) -> str | None:
    """Why roofline figures are missing (None when everything could be computed)."""
    model = run.model
    if not model.architecture:
        return "run.json records no model architecture (captured before dsocr recorded it): FLOPs and bytes unknown"
    if architecture(model.architecture) is None:
        family = model.family or "this model"
        return f"the FLOP and byte model covers DeepSeek-OCR-2 configs only, not {family}'s: FLOPs and bytes unknown"
    if model.dtype not in DTYPE_BYTES:
        return f"model dtype {model.dtype!r} has no known width: bytes unknown"
    return peak.reason


def roofline_figures(inputs: AnalysisInputs) -> Roofline:
    """Per stage over the run, per decode step and per image: FLOPs, bytes, MFU/MBU, bound."""
    return roofline_summary(
        inputs.roofline,
        inputs.peak,
        reason=_reason(inputs.run, inputs.peak),
        profiler=profiler_check(inputs.profiler_flops, inputs.roofline.stages, inputs.steps.roofline),
        decode_steps=inputs.steps.roofline,
    )


def finding_list(inputs: AnalysisInputs) -> list[Finding]:
    """What limits the run, with its evidence, largest time at stake first."""
    return typed_findings(
        FindingInputs(
            predictions=inputs.predictions,
            timings=inputs.timings,
            top=inputs.kernels.to_pylist(),
            # Recomputed rather than read from the summary: metrics only read inputs (small table).
            roofline=roofline_figures(inputs),
            launch=inputs.launch,
            copies=inputs.copies,
            step_figures=inputs.steps,
            images=inputs.latency,
            run_dir=inputs.run_dir,
            run=inputs.run,
            compiled_decode=inputs.run.static_cache is not None and inputs.run.static_cache.compiled,
        )
    )
