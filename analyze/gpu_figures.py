"""What counts as a copy kernel, for the per-stage copy figures (computed as sums in analyze/partials.py)."""

from __future__ import annotations

import re

#: Kernels that only move or convert data: dtype casts and layout copies run as PyTorch's
#: ``direct_copy_kernel_cuda`` elementwise kernels, concatenation as ``CatArrayBatchedCopy``
#: (CUTLASS GEMMs mention copy atoms in their mangled names: a bare "copy" would match them).
COPY_PATTERN = re.compile(r"direct_copy_kernel|CatArray\w*Copy|copy_kernel|^Memcpy|^Memset")
MEMCPY_CATS = ("gpu_memcpy", "gpu_memset")
TOP_NAMES = 3
