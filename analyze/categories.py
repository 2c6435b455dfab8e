"""Names the Kineto trace uses (its event categories), as analyze reads them.

dsocr's own words (range and stage names, kernel kinds, clocks, time units) live in
``dsocr.vocab``, shared with capture and emit.
"""

from __future__ import annotations

#: Device activities whose time counts as GPU work (CUPTI activity records).
GPU_OP_CATS = ("kernel", "gpu_memcpy", "gpu_memset")
#: Host API calls whose ``correlation`` links them to the device activity they launched.
LAUNCH_CATS = ("cuda_runtime", "cuda_driver")
CPU_OP_CAT = "cpu_op"
RANGE_CAT = "user_annotation"

#: Name given to GPU work whose launching operator is not in the trace.
NO_OPERATOR = "(no cpu_op)"
