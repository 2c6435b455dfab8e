"""The run at a glance, as HTML: model, device, options, images, stop reasons, findings, coverage."""

from __future__ import annotations

import html
import json
from collections import Counter
from pathlib import Path
from typing import Any

from dsocr.report.inputs import RunInputs

from dsocr.options import INF_TOKEN
from dsocr.records import RunRecord
from dsocr.vocab import ImageStatus

DASH = "–"
#: Rows of the per-image table; a larger run shows the first ones and says so.
MAX_IMAGE_ROWS = 500
LATENCY_ROWS = (
    ("TTFT ms", "ttft_ms"),
    ("TPOT p50 ms", "tpot_p50_ms"),
    ("TPOT p90 ms", "tpot_p90_ms"),
    ("decode tokens/s", "decode_tokens_per_s"),
)


def esc(value: Any) -> str:
    """Any value as escaped text: dicts and lists as compact JSON, None as a dash."""
    if value is None:
        return DASH
    if isinstance(value, dict | list):
        return html.escape(json.dumps(value, ensure_ascii=False))
    if isinstance(value, float):
        return f"{value:,.3f}"
    return html.escape(str(value))


def key_values(pairs: list[tuple[str, Any]]) -> str:
    rows = "".join(f"<tr><th>{html.escape(key)}</th><td>{esc(value)}</td></tr>" for key, value in pairs)
    return f'<table class="kv">{rows}</table>'


def table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(name)}</th>" for name in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(value)}</td>" for value in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def not_available(reason: str) -> str:
    return f'<p class="na">not available: {html.escape(reason)}</p>'


def _shown_option(name: str, value: Any, record: RunRecord) -> Any:
    """An option as the run used it: run.json records a default as null (``--max-new-tokens inf``,
    no ``--dtype``), which a reader should see as what ran, not as a dash, ``False`` or ``[]``."""
    model = record.model
    if value is None and name == "max_new_tokens":
        return f"{INF_TOKEN} (until EOS, within the model's context)"
    if value is None and name == "dtype":
        return f"{model.dtype or DASH} (the device's default)"
    if value is None and name == "attn_implementation":
        return f"{model.attn_implementation or DASH} (the model's default)"
    if value is None and name == "model":
        return model.id
    if name == "images" and not value:
        return "the sample pages"
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None:  # an option the run's dsocr version did not record yet
        return "not recorded"
    return value


def config_options(record: RunRecord) -> dict[str, Any]:
    """run.json ``config`` as shown (empty for an import, which records no options): each
    default as what ran (dsocr.report.glance._shown_option)."""
    config = record.to_json()["config"] or {}
    return {name: _shown_option(name, value, record) for name, value in config.items()}


def facts(run: RunInputs) -> list[tuple[str, Any]]:
    """The identifying facts of a run, in display order (also compared side by side)."""
    record, model = run.run, run.run.model
    predictions = run.predictions
    statuses = Counter(predictions["status"].to_pylist())
    ok = statuses.get(ImageStatus.ok, 0)
    stops = Counter(reason for reason in predictions["stop_reason"].to_pylist() if reason)
    trace = run.summary.get("trace", {})
    return [
        ("run", str(run.run_dir)),
        ("kind / status", f"{record.kind} / {record.status}"),
        ("model", model.id),
        ("family / source", f"{model.family or DASH} / {model.source or DASH}"),
        ("parameters", model.parameters),
        ("dtype", model.dtype),
        ("device", model.device_name or model.device),
        ("images", f"{predictions.num_rows} total, {ok} ok, {predictions.num_rows - ok} failed"),
        ("stop reasons", ", ".join(f"{reason} {count}" for reason, count in sorted(stops.items())) or None),
        ("profile mode", ", ".join(trace.get("profile_modes") or []) or None),
        ("reference clock", ", ".join(trace.get("timing_clocks") or []) or None),
        ("trace", "present" if trace.get("present") else f"missing: {trace.get('missing_reason')}"),
        ("images traced", _images_traced(run.summary.get("coverage") or {})),
        ("GPU activity in the trace", trace.get("device_time")),
        ("capture seconds", record.capture_seconds),
        ("started / finished", f"{record.started_at or DASH} / {record.finished_at or DASH}"),
        ("dsocr", record.dsocr_version),
    ]


#: Significant digits of a figure in a finding's evidence.
EVIDENCE_DIGITS = 3
#: From here a figure is shown whole, and from the next in exponent form.
WHOLE_FROM, EXPONENT_FROM = 1_000, 1_000_000
#: Evidence keys by a word of their name (``wall_ms_per_step``: ms), the first match wins.
UNITS = (("share", "%"), ("ms", "ms"), ("us", "µs"), ("flops", "FLOP"), ("bytes", "B"))
PERCENT = 100


def figure_text(key: str, value: Any) -> str:
    """One evidence figure with its unit, 3 significant digits (shares as percent)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        if isinstance(value, list):
            return ", ".join(figure_text(key, item) for item in value[:10]) + (" …" if len(value) > 10 else "")
        if isinstance(value, dict):
            return "; ".join(f"{k} {figure_text(k, v)}" for k, v in value.items())
        return DASH if value is None else str(value)
    words = key.split("_")
    unit = "/s" if key.endswith("_per_s") else next((unit for word, unit in UNITS if word in words), "")
    if unit == "%":
        return f"{_significant(value * PERCENT)}%"
    text = f"{value:,}" if isinstance(value, int) else _significant(value)  # counts stay whole
    return f"{text} {unit}".strip()


def _significant(value: float) -> str:
    """3 significant digits; whole from 1,000 to a million (1,234 ms, not 1.23e+03), in exponent
    form above (FLOP and byte counts: 1.2e+12)."""
    if WHOLE_FROM <= abs(value) < EXPONENT_FROM:
        return f"{value:,.0f}"
    return f"{value:.{EVIDENCE_DIGITS}g}"


def evidence_html(evidence: dict[str, Any]) -> str:
    """A finding's evidence as a short two-column table: figure, value with its unit."""
    rows = "".join(
        f"<tr><th>{html.escape(key.replace('_', ' '))}</th><td>{html.escape(figure_text(key, value))}</td></tr>"
        for key, value in evidence.items()
        if key != "source"
    )
    source = evidence.get("source")
    caption = f"<caption>evidence (source: {html.escape(str(source))})</caption>" if source else ""
    return f'<table class="kv evidence">{caption}{rows}</table>'


def findings_html(summary: dict[str, Any]) -> str:
    findings = summary.get("findings")
    if findings is None:
        return not_available("this analysis has no findings section (written by a newer `dsocr analyze`)")
    if not findings:
        return "<p>analyze found nothing to flag.</p>"
    items = []
    for finding in findings:
        evidence = finding.get("evidence")
        items.append(
            f'<li class="sev-{esc(finding.get("severity"))}"><b>{esc(finding.get("severity"))}</b> '
            f"<code>{esc(finding.get('id'))}</code> {esc(finding.get('message'))}"
            + (f"<div>try: <code>{esc(finding['try'])}</code></div>" if finding.get("try") else "")
            + (f'<div class="evidence">{evidence_html(evidence)}</div>' if evidence else "")
            + "</li>"
        )
    return f'<ul class="findings">{"".join(items)}</ul>'


COLD_FIGURES = (
    ("cold steps (a decode length new to the process)", "cold_steps"),
    ("warm steps", "warm_steps"),
    ("warm step p50 ms", "warm_step_p50_ms"),
    ("time cold steps add over the warm median, ms (per image: cold steps x their median's excess)", "cold_added_ms"),
    ("upper bound, ms (each cold step's own excess, summed)", "cold_added_upper_ms"),
)


def cold_html(summary: dict[str, Any]) -> str:
    """analyze's cold-step impact (summary.json ``cold``), with the images it flags."""
    cold = summary.get("cold")
    if not isinstance(cold, dict):
        return not_available("the capture recorded no cold-step flags (decode_step_cold)")
    rows = [(label, cold.get(key)) for label, key in COLD_FIGURES]
    flagged = cold.get("flagged_images") or []
    rows.append(
        (
            "images whose TPOT cold steps raise noticeably",
            ", ".join(f"img {i.get('image_index')}" for i in flagged) or None,
        )
    )
    return key_values(rows)


def glance_html(run: RunInputs) -> str:
    """Facts and latency beside the options; warnings; coverage folded away (the findings have
    their own section, before this one)."""
    record, summary = run.run, run.summary
    latency = summary.get("latency", {})
    latency_rows = [[label, (latency.get(key) or {}).get("median"), (latency.get(key) or {}).get("p90")]
                    for label, key in LATENCY_ROWS]  # fmt: skip
    config = config_options(record)
    options = (
        key_values(sorted(config.items())) if config else not_available("run.json records no options (an imported run)")
    )
    left = key_values(facts(run)) + "<h3>Latency across images</h3>" + table(["figure", "median", "p90"], latency_rows)
    parts = [f'<div class="cols"><div>{left}</div><div><h3>Options</h3>{options}</div></div>']
    parts.append("<h3>Cold decode steps</h3>" + cold_html(summary))
    warnings = record.warnings
    if warnings:
        parts.append("<h3>Capture warnings</h3><ul>" + "".join(f"<li>{esc(w)}</li>" for w in warnings) + "</ul>")
    coverage = summary.get("coverage")
    body = key_values(sorted(coverage.items())) if coverage else not_available("no coverage in summary.json")
    parts.append(f"<details><summary>Coverage of the trace (what it could not see)</summary>{body}</details>")
    return "".join(parts)


def images_html(run: RunInputs) -> str:
    """One row per image: status, tokens, stop reason, TTFT and TPOT (from summary.json images[])."""
    latency = {row.get("image_index"): row for row in run.summary.get("images") or []}
    columns = ["image_index", "image_path", "status", "stop_reason", "prompt_tokens", "generated_tokens", "error"]
    rows = []
    for row in run.predictions.select(columns).to_pylist()[:MAX_IMAGE_ROWS]:
        figures = latency.get(row["image_index"], {})
        rows.append(
            [
                row["image_index"],
                Path(row["image_path"]).name,
                row["status"],
                row["stop_reason"],
                row["prompt_tokens"],
                row["generated_tokens"],
                figures.get("ttft_ms"),
                figures.get("tpot_p50_ms"),
                figures.get("tpot_warm_p50_ms"),
                figures.get("cold_steps"),
                row["error"],
            ]
        )
    header = [
        "image",
        "file",
        "status",
        "stop",
        "prompt tok",
        "generated",
        "TTFT ms",
        "TPOT p50 ms",
        "TPOT warm p50 ms",
        "cold steps",
        "error",
    ]
    note = (
        f"<p>first {MAX_IMAGE_ROWS} of {run.predictions.num_rows} images</p>"
        if run.predictions.num_rows > MAX_IMAGE_ROWS
        else ""
    )
    return table(header, rows) + note


def _images_traced(coverage: dict) -> str | None:
    """``X of Y (--trace-images N)`` when capture traced every Nth image only (None otherwise)."""
    every = coverage.get("trace_images_every") or 1
    if every <= 1:
        return None
    return f"{coverage.get('images_with_trace')} of {coverage.get('images_ok')} (--trace-images {every})"
