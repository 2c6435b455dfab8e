"""Per stage, what the GPU work is made of: kernels shorter than their launch, copy and cast kernels."""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from dsocr.analyze.stages import stage_masks

from dsocr.vocab import NS_PER_MS

#: Kernels that only move or convert data: dtype casts and layout copies run as PyTorch's
#: ``direct_copy_kernel_cuda`` elementwise kernels, concatenation as ``CatArrayBatchedCopy``
#: (CUTLASS GEMMs mention copy atoms in their mangled names: a bare "copy" would match them).
COPY_PATTERN = re.compile(r"direct_copy_kernel|CatArray\w*Copy|copy_kernel|^Memcpy|^Memset")
MEMCPY_CATS = ("gpu_memcpy", "gpu_memset")
TOP_NAMES = 3


def launch_figures(work: pa.Table) -> dict[str, dict[str, float | int]]:
    """Per stage: kernels, how many ran shorter than the runtime call that launched them, and
    the host time spent in those launches (ms). ``work``: attributed GPU work (launch_dur_ns)."""
    launched = work["launch_dur_ns"].is_valid().to_numpy(zero_copy_only=False)
    launch_ns = work["launch_dur_ns"].fill_null(0).to_numpy()
    is_kernel = pc.equal(work["cat"], "kernel").to_numpy(zero_copy_only=False) & launched
    durations = work["dur_ns"].to_numpy()
    shorter = is_kernel & (durations < launch_ns)
    result = {}
    for stage, mask in stage_masks(work).items():
        kernels = int(np.count_nonzero(mask & is_kernel))
        short = mask & shorter
        result[stage] = {
            "kernels": kernels,
            "shorter_than_launch": int(np.count_nonzero(short)),
            "share": float(np.count_nonzero(short) / kernels) if kernels else None,
            "launch_ms": float(launch_ns[short].sum()) / NS_PER_MS,
            "kernel_ms": float(durations[short].sum()) / NS_PER_MS,
        }
    return result


def copy_figures(work: pa.Table) -> dict[str, dict[str, object]]:
    """Per stage: GPU time of copy/cast kernels and memcpy/memset, its share of all GPU activity
    time of the stage, and the largest such kernels by name."""
    names = work["name"].combine_chunks()
    if pa.types.is_dictionary(names.type):
        dictionary = names.dictionary.to_pylist()
        codes = names.indices.fill_null(0).to_numpy(zero_copy_only=False)
    else:
        dictionary, codes = pc.unique(names).to_pylist(), None
        codes = np.searchsorted(np.array(dictionary, dtype=object), np.array(names.to_pylist(), dtype=object))
    is_copy_name = np.array([bool(COPY_PATTERN.search(name or "")) for name in dictionary], dtype=bool)
    is_copy = is_copy_name[codes] if codes.size else np.zeros(0, dtype=bool)
    is_copy |= pc.is_in(work["cat"], value_set=pa.array(MEMCPY_CATS)).to_numpy(zero_copy_only=False)
    durations = work["dur_ns"].to_numpy()
    result: dict[str, dict[str, object]] = {}
    for stage, mask in stage_masks(work).items():
        total = int(durations[mask].sum())
        copy_mask = mask & is_copy
        copy_ns = int(durations[copy_mask].sum())
        per_name = np.bincount(codes[copy_mask], weights=durations[copy_mask], minlength=len(dictionary))
        top = np.argsort(per_name)[::-1][:TOP_NAMES]
        result[stage] = {
            "copy_ms": copy_ns / NS_PER_MS,
            "gpu_ms": total / NS_PER_MS,
            "share": copy_ns / total if total else None,
            "count": int(np.count_nonzero(copy_mask)),
            "top": [{"name": dictionary[i], "ms": float(per_name[i]) / NS_PER_MS} for i in top if per_name[i] > 0],
        }
    return result
