"""FLOPs of a traced operator from the input shapes the profiler records with ``with_flops``.

torch.profiler computes FLOPs for a few operators (``FunctionEvent.flops``) but its chrome-trace
export does not write them; it writes the shapes (``Input Dims``) and scalar arguments
(``Concrete Inputs``) they come from. These are torch's own formulas (torch/csrc/profiler/util.cpp,
``computeFlops``) for the matrix products it covers, applied to those shapes in the converter
worker, off the critical path. Elementwise ``aten::add``/``aten::mul`` (which torch also counts,
one per element) are left out: analyze compares matrix products with the model's.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from typing import Any

#: (operator, index of the first matrix in Input Dims): the others carry a bias or input first.
_PRODUCTS = {"aten::mm": 0, "aten::addmm": 1, "aten::bmm": 0, "aten::baddbmm": 1}
CONV2D = "aten::conv2d"
_CONV_ARGS = slice(3, 7)  # stride, padding, dilation, groups


def _pair(text: str) -> tuple[int, int] | None:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None  # e.g. padding="same": not a shape torch's formula handles either
    if isinstance(value, int):
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return value[0], value[1]
    return None


def _product(dims: Sequence[Sequence[int]], first: int) -> int | None:
    if len(dims) < first + 2:
        return None
    left, right = dims[first], dims[first + 1]
    if len(left) == 2 and len(right) == 2:
        return 2 * left[0] * left[1] * right[1]
    if len(left) == 3 and len(right) == 3:
        return 2 * left[0] * left[1] * left[2] * right[2]
    return None


def _conv2d(dims: Sequence[Sequence[int]], concrete: Sequence[str]) -> int | None:
    if len(dims) < 2 or len(dims[0]) != 4 or len(dims[1]) != 4 or len(concrete) < _CONV_ARGS.stop:
        return None
    batch, _, height, width = dims[0]
    out_channels, in_per_group, kernel_h, kernel_w = dims[1]
    stride, padding, dilation = (_pair(text) for text in concrete[3:6])
    if stride is None or padding is None or dilation is None:
        return None
    out_h = (height + 2 * padding[0] - dilation[0] * (kernel_h - 1) - 1) // stride[0] + 1
    out_w = (width + 2 * padding[1] - dilation[1] * (kernel_w - 1) - 1) // stride[1] + 1
    return 2 * batch * out_h * out_w * out_channels * in_per_group * kernel_h * kernel_w


def op_flops(name: str, args: dict[str, Any]) -> int | None:
    """FLOPs of one cpu_op event, or None (not a covered operator, or no shapes recorded)."""
    dims = args.get("Input Dims")
    if not dims:
        return None
    if name in _PRODUCTS:
        return _product(dims, _PRODUCTS[name])
    if name == CONV2D:
        return _conv2d(dims, args.get("Concrete Inputs") or ())
    return None
