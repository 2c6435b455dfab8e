"""Names the Kineto trace uses, and the names dsocr's own ranges and stages use."""

from __future__ import annotations

#: Device activities whose time counts as GPU work (CUPTI activity records).
GPU_OP_CATS = ("kernel", "gpu_memcpy", "gpu_memset")
#: Host API calls whose ``correlation`` links them to the device activity they launched.
LAUNCH_CATS = ("cuda_runtime", "cuda_driver")
CPU_OP_CAT = "cpu_op"
RANGE_CAT = "user_annotation"

#: ``range_stage`` values of dsocr's own ranges (set by capture's trace converter).
RANGE_VISION = "vision"
RANGE_PREFILL = "prefill"
RANGE_DECODE_STEP = "decode_step"
RANGE_DECODE = "decode"

#: Stages of TIMINGS, in display order (prefill contains vision; prefill_text is the rest).
STAGE_VISION = "vision"
STAGE_PREFILL = "prefill"
STAGE_PREFILL_TEXT = "prefill_text"
STAGE_DECODE = "decode"
STAGES = (STAGE_VISION, STAGE_PREFILL_TEXT, STAGE_PREFILL, STAGE_DECODE)

#: KERNELS ``kind`` values.
KIND_KERNEL = "kernel"
KIND_OPERATOR = "operator"
KIND_CPU_OPERATOR = "cpu_operator"
#: Name given to GPU work whose launching operator is not in the trace.
NO_OPERATOR = "(no cpu_op)"

#: Reference clocks written by capture (PREDICTIONS.timing_clock).
CLOCK_CUDA_EVENT = "cuda_event"
CLOCK_PERF_COUNTER = "perf_counter"

NS_PER_MS = 1_000_000
NS_PER_US = 1_000
MS_PER_S = 1_000
