"""Peak dense throughput and memory bandwidth of common GPUs, keyed by the device name capture records.

Figures are the vendors' dense numbers (without structured sparsity: where a datasheet quotes
only the "with sparsity" rate, half of it); fp32 is the non-tensor FP32 rate (TF32 is another
mode); consumer cards' fp16/bf16 are the FP32-accumulate tensor rates. Sources
per row are listed in docs/analysis.md. A name matches a row when every token of the row's key
is among the name's tokens (lower case, split on anything but letters and digits), first row
first: so "NVIDIA A100-SXM4-80GB" is the A100 80GB SXM and "NVIDIA A10" is not an A100.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from dsocr.errors import BadInputError

BF16, FP16, FP32 = "bfloat16", "float16", "float32"
SOURCE_TABLE = "table"
SOURCE_OVERRIDE = "override"


@dataclass(frozen=True)
class Peak:
    """One GPU's peaks: dense TFLOP/s per dtype (None: no tensor-core rate for it) and HBM GB/s."""

    name: str
    tokens: tuple[str, ...]
    tflops: dict[str, float | None]
    gbps: float


def _peak(name: str, key: str, bf16: float | None, fp16: float, fp32: float, gbps: float) -> Peak:
    return Peak(name=name, tokens=tuple(key.split()), tflops={BF16: bf16, FP16: fp16, FP32: fp32}, gbps=gbps)


#: Ordered: more specific keys before the keys they contain.
PEAKS: tuple[Peak, ...] = (
    _peak("NVIDIA H200 NVL", "h200 nvl", 835.5, 835.5, 60.0, 4800.0),
    _peak("NVIDIA H200 SXM", "h200", 989.5, 989.5, 67.0, 4800.0),
    _peak("NVIDIA H100 NVL", "h100 nvl", 835.5, 835.5, 60.0, 3900.0),
    _peak("NVIDIA H100 PCIe", "h100 pcie", 756.5, 756.5, 51.0, 2000.0),
    _peak("NVIDIA H100 SXM", "h100", 989.5, 989.5, 67.0, 3350.0),
    _peak("NVIDIA A100 80GB PCIe", "a100 80gb pcie", 312.0, 312.0, 19.5, 1935.0),
    _peak("NVIDIA A100 80GB SXM", "a100 80gb", 312.0, 312.0, 19.5, 2039.0),
    _peak("NVIDIA A100 40GB", "a100", 312.0, 312.0, 19.5, 1555.0),
    _peak("NVIDIA L40S", "l40s", 362.05, 362.05, 91.6, 864.0),
    _peak("NVIDIA L40", "l40", 181.05, 181.05, 90.5, 864.0),
    _peak("NVIDIA L4", "l4", 121.0, 121.0, 30.3, 300.0),
    _peak("NVIDIA A10", "a10", 125.0, 125.0, 31.2, 600.0),
    _peak("NVIDIA GeForce RTX 4090", "rtx 4090", 165.2, 165.2, 82.6, 1008.0),
    _peak("NVIDIA GeForce RTX 3090", "rtx 3090", 71.0, 71.0, 35.6, 936.0),
    _peak("NVIDIA V100 SXM2", "v100", None, 125.0, 15.7, 900.0),
    _peak("NVIDIA T4", "t4", None, 65.0, 8.1, 320.0),
    _peak("AMD Instinct MI300X", "mi300x", 1307.4, 1307.4, 163.4, 5300.0),
)


@dataclass(frozen=True)
class DevicePeak:
    """The peaks analyze uses for one run, and where each came from (None: unknown, with the reason)."""

    device_name: str | None
    dtype: str | None
    tflops: float | None
    gbps: float | None
    matched: str | None
    source: str | None
    reason: str | None

    def to_dict(self) -> dict[str, object]:
        return {
            "device_name": self.device_name,
            "dtype": self.dtype,
            "peak_tflops": self.tflops,
            "peak_gbps": self.gbps,
            "matched": self.matched,
            "source": self.source,
            "reason": self.reason,
        }


def _tokens(name: str) -> set[str]:
    return set(re.split(r"[^a-z0-9]+", name.lower())) - {""}


def find_peak(device_name: str | None) -> Peak | None:
    """The table row for a device name, or None."""
    if not device_name:
        return None
    tokens = _tokens(device_name)
    return next((peak for peak in PEAKS if set(peak.tokens) <= tokens), None)


def check_override(value: float | None, option: str) -> None:
    # Not `value > 0` alone: 1e400 parses as inf, which would make every MFU and MBU 0.
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise BadInputError(f"{option} {value}: must be a positive number")


def device_peak(
    device_name: str | None, dtype: str | None, *, peak_tflops: float | None = None, peak_gbps: float | None = None
) -> DevicePeak:
    """Peaks for a run: the table's row for ``device_name`` at ``dtype``, each replaced by an override."""
    check_override(peak_tflops, "--peak-tflops")
    check_override(peak_gbps, "--peak-gbps")
    row = find_peak(device_name)
    tflops = row.tflops.get(dtype or "") if row is not None else None
    gbps = row.gbps if row is not None else None
    reason = None
    if row is None:
        reason = f"device {device_name!r} is not in the peaks table" if device_name else "no device name recorded"
    elif tflops is None:
        reason = f"no dense {dtype or 'unknown dtype'} rate for {row.name} in the peaks table"
    overridden = peak_tflops is not None or peak_gbps is not None
    tflops = peak_tflops if peak_tflops is not None else tflops
    gbps = peak_gbps if peak_gbps is not None else gbps
    if tflops is not None and gbps is not None:
        reason = None
    elif overridden and reason is None:
        reason = "only one peak given"
    return DevicePeak(
        device_name=device_name,
        dtype=dtype,
        tflops=tflops,
        gbps=gbps,
        matched=row.name if row is not None else None,
        source=SOURCE_OVERRIDE if overridden else (SOURCE_TABLE if row is not None else None),
        reason=reason,
    )
