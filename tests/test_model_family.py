"""The model-family seam: a second family, registered here (not in the product), captured end to end.

The fake family is a real tiny LLaVA (CLIP vision tower, Llama decoder) built by transformers
in well under a second, speaking dsocr's byte-level tokenizer. Its capture goes through the
real CLI, profiler and Parquet; emit reads its run by its family's plain-text grammar.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from capture_helpers import run_capture
from dsocr.capture import families
from dsocr.capture.families import LoadOptions, ModelFamily, family_for, register, unregister
from dsocr.capture.models import EMBEDDED_CONFIG, load_random_weights
from dsocr.capture.tokenizer import EOS_TOKEN, IMAGE_TOKEN, build_tokenizer
from emit_helpers import read_info, run_cli
from transformers import AutoProcessor, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
from transformers.models.clip import CLIPImageProcessorPil

from dsocr.errors import ModelLoadError
from dsocr.families import FamilyFacts, OutputGrammar, facts_for
from dsocr.records import ModelRecord
from dsocr.rundir import read_predictions, read_run_json, trace_files

IMAGE_SIZE = 32
PATCH_SIZE = 8
CONTEXT = 256
TINY_LLAVA_ARCHITECTURE = {
    "model_type": "llava",
    "vision_config": {
        "model_type": "clip_vision_model",
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "image_size": IMAGE_SIZE,
        "patch_size": PATCH_SIZE,
        "projection_dim": 32,
    },
    "text_config": {
        "model_type": "llama",
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": CONTEXT,
    },
}
TINY_LLAVA_FACTS = FamilyFacts(
    name="tiny_llava",
    model_types=("llava",),
    default_prompt=f"{IMAGE_TOKEN}\nDescribe the page.",
    image_placeholder=IMAGE_TOKEN,
    grammar=OutputGrammar.plain,
    coordinate_scale=None,
    eos_text=EOS_TOKEN,
)


def _processor(tokenizer: Any) -> LlavaProcessor:
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )
    # "default" drops CLIP's class token: one image token per patch.
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )


def _llava_random_weights(config_dict: dict[str, Any], options: LoadOptions) -> tuple[torch.nn.Module, Any]:
    tokenizer = build_tokenizer()
    text = {
        **config_dict["text_config"],
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    config = LlavaConfig(
        vision_config=config_dict["vision_config"],
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    return LlavaForConditionalGeneration._from_config(config, **options.transformers_kwargs()), _processor(tokenizer)


def _llava_checkpoint(folder: Path, options: LoadOptions) -> tuple[torch.nn.Module, Any]:
    model = LlavaForConditionalGeneration.from_pretrained(folder, **options.transformers_kwargs())
    return model, AutoProcessor.from_pretrained(folder)


TINY_LLAVA = ModelFamily(
    facts=TINY_LLAVA_FACTS,
    random_weights=_llava_random_weights,
    checkpoint=_llava_checkpoint,
    vision_module=lambda model: model.model.vision_tower,
    text_module=lambda model: model.model.language_model,
)


@pytest.fixture(scope="module")
def tiny_llava() -> Iterator[ModelFamily]:
    register(TINY_LLAVA)
    yield TINY_LLAVA
    unregister(TINY_LLAVA)


@pytest.fixture(scope="module")
def llava_run(tiny_llava: ModelFamily, tmp_path_factory: pytest.TempPathFactory, sample_pages: list[Path]) -> Path:
    """One sample page through `dsocr capture --model tiny-llava.json`, every step traced."""
    folder = tmp_path_factory.mktemp("llava")
    architecture = folder / "tiny-llava.json"
    architecture.write_text(json.dumps(TINY_LLAVA_ARCHITECTURE))
    run_dir = folder / "run"
    result = run_capture(
        sample_pages[0], "--out", run_dir, "--model", architecture, "--max-new-tokens", "5", "--profile", "full"
    )
    assert result.exit_code == 0, result.output
    return run_dir


def test_a_registered_family_captures_with_its_own_model_prompt_and_image_tokens(llava_run: Path) -> None:
    model = read_run_json(llava_run).model
    assert model.family == "tiny_llava"
    assert model.id == "random-weights:tiny-llava.json"
    assert model.architecture is not None and model.architecture["model_type"] == "llava"
    assert model.architecture["text_config"]["hidden_size"] == TINY_LLAVA_ARCHITECTURE["text_config"]["hidden_size"]
    assert model.context_limit == CONTEXT
    (row,) = read_predictions(llava_run).to_pylist()
    assert row["status"] == "ok", row["error"]
    assert row["prompt"] == TINY_LLAVA_FACTS.default_prompt
    assert row["image_tokens"] == (IMAGE_SIZE // PATCH_SIZE) ** 2
    assert row["prompt_tokens"] > row["image_tokens"]
    assert 1 <= row["generated_tokens"] <= 5
    assert row["vision_ms"] > 0 and row["prefill_ms"] > row["vision_ms"]


def test_a_registered_family_gets_every_range_in_its_trace(llava_run: Path) -> None:
    trace = pa.concat_tables(
        pq.read_table(path, columns=["range_stage", "range_step"]) for path in trace_files(llava_run)
    )
    ranges = trace.filter(trace["range_stage"].is_valid()).to_pylist()
    generated = read_predictions(llava_run).column("generated_tokens")[0].as_py()
    assert {event["range_stage"] for event in ranges} >= {"vision", "prefill"}
    decode_steps = {event["range_step"] for event in ranges if event["range_stage"] == "decode_step"}
    assert decode_steps == set(range(1, generated))


def test_emit_reads_a_family_run_by_its_grammar(llava_run: Path, sample_pages: list[Path]) -> None:
    result = run_cli("emit", llava_run, "--jobs", "1")
    assert result.exit_code == 0, result.output
    info = read_info(llava_run, sample_pages[0])
    text_raw = read_predictions(llava_run).column("text_raw")[0].as_py()
    # Plain grammar: no boxes; the text up to the end-of-sentence token, blank-line runs collapsed.
    assert info["boxes"] == []
    assert info["text_clean"] == re.sub(r"\n{3,}", "\n\n", text_raw.partition(EOS_TOKEN)[0]).strip()


def test_an_unregistered_family_is_refused_by_emit_with_one_line(llava_run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    copy.mkdir()
    for name in ("run.json", "predictions.parquet"):
        (copy / name).write_bytes((llava_run / name).read_bytes())
    unregister(TINY_LLAVA)
    try:
        result = run_cli("emit", copy, "--jobs", "1")
    finally:
        register(TINY_LLAVA)
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"Error: {copy / 'run.json'} model.family: unknown model family 'tiny_llava' (known: deepseek_ocr2)"
    )
    assert sorted(path.name for path in copy.iterdir()) == ["predictions.parquet", "run.json"]


def test_registering_adds_the_family_to_the_model_type_registry_and_emits_facts(tiny_llava: ModelFamily) -> None:
    assert family_for("llava", where="x") is tiny_llava
    assert facts_for("tiny_llava", where="x") is TINY_LLAVA_FACTS
    assert families.registered_model_types() == ["deepseek_ocr2", "llava"]
    with pytest.raises(ValueError, match="model_type 'llava' is already registered"):
        register(ModelFamily(TINY_LLAVA_FACTS, _llava_random_weights, _llava_checkpoint, id, id))


def test_an_unknown_model_type_names_every_registered_family() -> None:
    with pytest.raises(ModelLoadError) as raised:
        family_for("qwen2_vl", where="--model q")
    assert str(raised.value) == (
        "--model q: model_type 'qwen2_vl' is not a registered model family "
        f"(registered: {', '.join(families.registered_model_types())})"
    )


def test_describe_records_the_architecture_and_the_device_name() -> None:
    loaded = load_random_weights(EMBEDDED_CONFIG, device="cpu", dtype=torch.float32, seed=0)
    described = json.loads(json.dumps(loaded.describe()))  # JSON-safe as it is
    embedded = json.loads(EMBEDDED_CONFIG.read_text())
    architecture = described["architecture"]
    assert described["family"] == "deepseek_ocr2"
    assert architecture["model_type"] == "deepseek_ocr2"
    assert architecture["text_config"]["hidden_size"] == embedded["text_config"]["hidden_size"]
    sam, encoder = architecture["vision_config"]["sam_config"], architecture["vision_config"]["encoder_config"]
    assert sam["hidden_size"] == embedded["vision_config"]["sam_config"]["hidden_size"]
    assert encoder["hidden_size"] == embedded["vision_config"]["encoder_config"]["hidden_size"]
    assert loaded.image_token_id == build_tokenizer().convert_tokens_to_ids(IMAGE_TOKEN)
    cpu_names = re.findall(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
    assert described["device_name"] == cpu_names[0].strip()
    # run.json's model record takes describe() whole: every key it gives is a ModelRecord field.
    assert asdict(ModelRecord.from_describe(loaded.describe())) == described


def test_a_registered_family_loads_its_checkpoint_folders(
    tiny_llava: ModelFamily, tmp_path: Path, sample_pages: list[Path]
) -> None:
    """save_pretrained of the random-weight model is a real LLaVA folder: the family's checkpoint loader."""
    architecture = tmp_path / "tiny-llava.json"
    architecture.write_text(json.dumps(TINY_LLAVA_ARCHITECTURE))
    built = load_random_weights(architecture, device="cpu", dtype=torch.float32, seed=0)
    folder = tmp_path / "tiny-llava"
    built.model.save_pretrained(folder)
    built.processor.save_pretrained(folder)
    rows = {}
    for name, model in (("checkpoint", folder), ("architecture", architecture)):
        result = run_capture(sample_pages[1], "--out", tmp_path / name, "--model", model, "--max-new-tokens", "4",
                             "--profile", "off")  # fmt: skip
        assert result.exit_code == 0, result.output
        rows[name] = read_predictions(tmp_path / name).to_pylist()[0]
    model = read_run_json(tmp_path / "checkpoint").model
    assert (model.source, model.family) == ("checkpoint", "tiny_llava")
    for column in ("text_raw", "prompt_tokens", "image_tokens", "generated_tokens"):
        assert rows["checkpoint"][column] == rows["architecture"][column]
