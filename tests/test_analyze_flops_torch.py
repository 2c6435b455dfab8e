"""The FLOP model and the trace's FLOP column against torch itself, on the embedded tiny model (CPU)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from analyze_helpers import cpu_full_run, invoke  # noqa: F401  (fixture)
from trace_helpers import read_trace

from dsocr import rundir

torch = pytest.importorskip("torch", reason="needs the [capture] extra")

from dsocr.analyze.flops import (  # noqa: E402
    architecture,
    decode_step_cost,
    prefill_cost,
    tiles_from_image_tokens,
    vision_cost,
)
from dsocr.capture.op_flops import op_flops  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

FLOAT32_BYTES = 4
PROMPT = "<image>\nFree OCR."


def _routed_flops(text: dict, tokens: int) -> float:
    """Routed experts of every MoE layer: tokens x experts per token x a gated MLP (gate, up, down)."""
    moe_layers = sum(kind != "dense" for kind in text["mlp_layer_types"])
    return (
        2.0
        * tokens
        * text["num_experts_per_tok"]
        * 3
        * text["hidden_size"]
        * text["moe_intermediate_size"]
        * (moe_layers)
    )


@pytest.mark.slow
def test_flop_model_matches_torchs_flop_counter(sample_pages: list[Path]) -> None:
    """torch's FlopCounterMode counts every product but, here, neither CPU SDPA nor the routed experts'
    grouped GEMM (no formula for either); SAM's relative-position einsums (batched products inside its
    layers) are left out of the model by design. With those set aside the counts agree exactly."""
    from dsocr.capture.models import EMBEDDED_CONFIG, encode, load_random_weights
    from PIL import Image

    loaded = load_random_weights(EMBEDDED_CONFIG, device="cpu", dtype=torch.float32, seed=0)
    inputs = encode(loaded, Image.open(sample_pages[0]).convert("RGB"), PROMPT)
    config = loaded.model.config.to_dict()
    arch = architecture(config)
    image_tokens = int((inputs["input_ids"] == loaded.model.config.image_token_id).sum())
    tiles = tiles_from_image_tokens(arch, image_tokens)
    assert tiles == inputs["pixel_values_local"].shape[0]

    vision_inputs = {k: v for k, v in inputs.items() if k.startswith("pixel") or k == "num_local_patches"}
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        loaded.model.model.get_image_features(**vision_inputs)
    counts = counter.get_flop_counts()
    rel_pos = sum(
        ops.get(torch.ops.aten.bmm, 0)
        for module, ops in counts.items()
        if module.endswith(tuple(f"sam_encoder.layers.{i}" for i in range(arch.sam["num_hidden_layers"])))
    )
    vision = vision_cost(arch, tiles, FLOAT32_BYTES)
    assert counter.get_total_flops() - rel_pos == pytest.approx(vision.flops - vision.attention_flops, rel=1e-12)

    prompt = inputs["input_ids"].shape[1]
    text = config["text_config"]
    with torch.inference_mode():
        output = loaded.model(**inputs, logits_to_keep=1)
        with FlopCounterMode(display=False) as counter:
            loaded.model.model.language_model(inputs_embeds=torch.zeros(1, prompt, text["hidden_size"]))
        prefill = prefill_cost(arch, prompt, FLOAT32_BYTES)
        lm_head = 2.0 * text["hidden_size"] * text["vocab_size"]
        expected = prefill.flops - prefill.attention_flops - _routed_flops(text, prompt) - lm_head
        assert counter.get_total_flops() == pytest.approx(expected, rel=1e-12)
        next_token = output.logits[:, -1:].argmax(-1)
        with FlopCounterMode(display=False) as counter:
            loaded.model(input_ids=next_token, cache=output.past_key_values, logits_to_keep=1)
        step = decode_step_cost(arch, prompt + 1, FLOAT32_BYTES)
        expected = step.flops - step.attention_flops - _routed_flops(text, 1)
        assert counter.get_total_flops() == pytest.approx(expected, rel=1e-12)


def test_op_flops_are_torchs_own_estimates(tmp_path: Path) -> None:
    """The converter's FLOPs from recorded shapes equal FunctionEvent.flops, for every covered operator."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        torch.mm(torch.randn(7, 5), torch.randn(5, 3))
        torch.addmm(torch.randn(7, 3), torch.randn(7, 5), torch.randn(5, 3))
        torch.bmm(torch.randn(2, 7, 5), torch.randn(2, 5, 3))
        torch.baddbmm(torch.randn(2, 7, 3), torch.randn(2, 7, 5), torch.randn(2, 5, 3))
        torch.nn.functional.conv2d(torch.randn(2, 3, 9, 11), torch.randn(4, 3, 3, 2), stride=(2, 1), padding=1)
        torch.nn.functional.conv2d(torch.randn(1, 4, 8, 8), torch.randn(4, 2, 3, 3), groups=2, dilation=2)
        torch.nn.functional.linear(torch.randn(7, 5), torch.randn(3, 5), torch.randn(3))
    expected = [event.flops for event in prof.events() if event.flops]
    path = tmp_path / "trace.json"
    prof.export_chrome_trace(str(path))
    events = [event for event in json.loads(path.read_text())["traceEvents"] if event.get("cat") == "cpu_op"]
    found = [op_flops(event["name"], event.get("args") or {}) for event in events]
    assert [value for value in found if value] == expected
    assert len(expected) == 7  # conv2d twice, addmm twice (linear calls it)


def _with_architecture(run_dir: Path, target: Path) -> Path:
    """A copy of a CPU capture whose run.json gains ``model.architecture`` as capture now records it
    (the embedded config with the vocabulary size dsocr's tokenizer gives it)."""
    from dsocr.capture.models import EMBEDDED_CONFIG
    from dsocr.capture.tokenizer import build_tokenizer

    shutil.copytree(run_dir, target, ignore=shutil.ignore_patterns(rundir.ANALYSIS_DIR))
    config = json.loads(EMBEDDED_CONFIG.read_text())
    config["text_config"]["vocab_size"] = len(build_tokenizer())
    run = json.loads((target / rundir.RUN_JSON).read_text())
    run["model"]["architecture"] = config
    (target / rundir.RUN_JSON).write_text(json.dumps(run))
    return target


def test_cpu_run_roofline_and_profiler_check(cpu_full_run: Path, tmp_path: Path) -> None:  # noqa: F811
    run_dir = _with_architecture(cpu_full_run, tmp_path / "run")
    trace = read_trace(run_dir, columns=["cat", "name", "flops"])
    counted = trace.filter(pc.is_valid(trace["flops"]))
    assert counted.num_rows > 0
    assert set(counted["name"].cast("string").to_pylist()) <= {"aten::mm", "aten::addmm", "aten::bmm",
                                                              "aten::baddbmm", "aten::conv2d"}  # fmt: skip
    result = invoke("analyze", run_dir)
    assert result.exit_code == 0, result.output
    roofline = json.loads((run_dir / "analysis" / "summary.json").read_text())["roofline"]
    assert roofline["reason"].startswith("CPU run")
    for stage in ("vision", "prefill_text", "decode"):
        figures = roofline[stage]
        assert figures["flops"] > 0 and figures["achieved_tflops_wall"] > 0
        assert figures["mfu"] is None and figures["gpu_busy_ms"] is None and figures["bound"] is None
        check = roofline["profiler_flops"][stage]
        assert check["profiler_flops"] > 0 and check["rel_diff"] is not None
    # The decoder's products agree exactly; vision's profiler count adds SAM's relative-position
    # einsums, which the model leaves out (+6.9% on the tiny model).
    assert roofline["profiler_flops"]["prefill_text"]["rel_diff"] == pytest.approx(0, abs=1e-12)
    assert roofline["profiler_flops"]["decode"]["rel_diff"] == pytest.approx(0, abs=1e-12)
    assert 0 < roofline["profiler_flops"]["vision"]["rel_diff"] < 0.15
    assert "profiler FLOPs, vision:" in result.output
    assert "roofline: CPU run: the peaks table holds GPUs" in result.output


def test_products_the_profiler_cannot_count_are_named(cpu_full_run: Path, tmp_path: Path) -> None:  # noqa: F811
    """Each aten::addmm recorded as aten::_grouped_mm with no count (what the H200's MoE prefill
    records: one kernel, no counted aten::mm inside as on CPU): the profiler's sum falls, and
    analyze names the uncounted calls per stage."""
    import pyarrow as pa

    from dsocr import schema

    run_dir = _with_architecture(cpu_full_run, tmp_path / "run")
    before = json.loads(invoke("analyze", run_dir, "--json").output)["roofline"]["profiler_flops"]
    # CPU's own aten::_grouped_mm runs a counted aten::mm per group: not reported as uncounted.
    assert read_trace(run_dir, columns=["name"])["name"].cast("string").to_pylist().count("aten::_grouped_mm") > 0
    assert all(check["uncounted_operators"] == {} for check in before.values())
    renamed = 0
    for path in rundir.trace_files(run_dir):
        table = pq.read_table(path)
        names = table["name"].cast(pa.string())
        is_addmm = pc.equal(names, "aten::addmm")
        renamed += pc.sum(is_addmm.cast("int64")).as_py() or 0
        names = pc.if_else(is_addmm, "aten::_grouped_mm", names)
        flops = pc.if_else(is_addmm, pa.scalar(None, pa.int64()), table["flops"])
        table = table.set_column(table.schema.get_field_index("name"), "name", names)
        table = table.set_column(table.schema.get_field_index("flops"), "flops", flops)
        rundir.write_table_atomic(table.cast(schema.TRACE), path)
    assert renamed > 0
    result = invoke("analyze", run_dir)
    assert result.exit_code == 0, result.output
    after = json.loads((run_dir / "analysis" / "summary.json").read_text())["roofline"]["profiler_flops"]
    stages_with_addmm = [stage for stage in ("vision", "prefill_text", "decode") if after[stage]["uncounted_operators"]]
    assert stages_with_addmm
    for stage in stages_with_addmm:
        calls = after[stage]["uncounted_operators"]["aten::_grouped_mm"]
        assert after[stage]["profiler_flops"] < before[stage]["profiler_flops"]
        assert after[stage]["operators_counted"] == before[stage]["operators_counted"] - calls
        assert f"profiler FLOPs, {stage}:" in result.output
    assert "not counted by the profiler: aten::_grouped_mm x" in " ".join(result.output.split())  # rich wraps
