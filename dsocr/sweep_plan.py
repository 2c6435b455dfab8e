"""What a ``dsocr sweep`` runs: its variants, the order of their runs, and sweep.json.

A sweep varies capture options (``--vary cache=dynamic,static``). The first value of every
``--vary`` is the baseline's; a grid takes every combination, ``--one-at-a-time`` changes one
option at a time from the baseline. Each variant runs ``repeats`` times, each run one ``dsocr
capture`` process. The order alternates (ABBA: forward, then backward, ...), so no variant,
the baseline included, always runs first or last, where a drift of the machine (warming disk
caches, clocks, a neighbour's load) would favour or penalise it.
"""

from __future__ import annotations

import itertools
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dsocr import rundir
from dsocr.errors import BadInputError, RunDirError, SchemaMismatchError
from dsocr.options import DEFAULT_PROMPT, CacheKind, CompileMode, SdpaBackend
from dsocr.options import SWEEP_OWNED as SWEEP_OWNED
from dsocr.options import VARY_CANDIDATES as VARY_CANDIDATES
from dsocr.schema import SCHEMA_VERSION

SWEEP_JSON = "sweep.json"
RUNS_DIR = "runs"
SWEEP_KIND = "sweep"
BASELINE = "baseline"
#: Capture defaults a proposed command leaves out (run.json records every value, defaults too).
CAPTURE_DEFAULTS = {
    "prompt": DEFAULT_PROMPT,
    "sdpa_backend": SdpaBackend.auto.value,
    "cache": CacheKind.dynamic.value,
    "compile": CompileMode.auto.value,
}
STATUS_OK, STATUS_FAILED, STATUS_PENDING = "ok", "failed", "pending"


@dataclass(frozen=True)
class Variant:
    """One set of varied options; ``name`` reads ``cache=static,sdpa-backend=math``."""

    options: tuple[tuple[str, str], ...]
    baseline: bool = False

    @property
    def name(self) -> str:
        return ",".join(f"{key}={value}" for key, value in self.options)

    @property
    def slug(self) -> str:
        """The variant's name as a folder name."""
        return "_".join(f"{key}-{value}" for key, value in self.options).replace("/", "-") or BASELINE

    def flags(self) -> list[str]:
        """The capture options of this variant, as command-line arguments."""
        return [token for key, value in self.options for token in (f"--{key}", value)]


@dataclass
class PlannedRun:
    """One capture of a sweep: a variant's n-th repeat (1-based) at its place in the order."""

    variant: str
    repeat: int
    order: int
    run_dir: str  # relative to the sweep directory
    status: str = STATUS_PENDING
    exit_code: int | None = None
    #: Why the run failed: the capture's ``Error:`` line, or its exit status and log.
    reason: str | None = None
    seconds: float | None = None


@dataclass
class SweepManifest:
    """sweep.json: the plan, the runs and how each ended (docs/sweep.md)."""

    images: list[str]
    capture_args: list[str]
    profile: str
    repeats: int
    one_at_a_time: bool
    vary: dict[str, list[str]]
    variants: list[Variant]
    runs: list[PlannedRun] = field(default_factory=list)
    argv: list[str] = field(default_factory=list)

    def variant(self, name: str) -> Variant:
        return next(variant for variant in self.variants if variant.name == name)

    @property
    def baseline(self) -> Variant:
        return next(variant for variant in self.variants if variant.baseline)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": SWEEP_KIND,
            "argv": self.argv,
            "images": self.images,
            "capture_args": self.capture_args,
            "profile": self.profile,
            "repeats": self.repeats,
            "one_at_a_time": self.one_at_a_time,
            "vary": self.vary,
            "variants": [
                {"name": variant.name, "options": dict(variant.options), "baseline": variant.baseline}
                for variant in self.variants
            ],
            "runs": [vars(run) for run in self.runs],
        }

    @classmethod
    def from_json(cls, payload: Any, source: str) -> SweepManifest:
        if not isinstance(payload, dict) or payload.get("kind") != SWEEP_KIND:
            raise RunDirError(f"{source} is not a dsocr sweep manifest")
        if payload.get("schema_version") != SCHEMA_VERSION:
            raise SchemaMismatchError(
                f"{source}: schema version {payload.get('schema_version')!r}, this dsocr reads version {SCHEMA_VERSION}"
            )
        try:
            return cls(
                images=list(payload["images"]),
                capture_args=list(payload["capture_args"]),
                profile=str(payload["profile"]),
                repeats=int(payload["repeats"]),
                one_at_a_time=bool(payload["one_at_a_time"]),
                vary={str(key): list(values) for key, values in payload["vary"].items()},
                variants=[
                    Variant(tuple((str(k), str(v)) for k, v in item["options"].items()), bool(item["baseline"]))
                    for item in payload["variants"]
                ],
                runs=[PlannedRun(**run) for run in payload["runs"]],
                argv=list(payload.get("argv") or []),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RunDirError(f"{source}: malformed sweep manifest ({exc})") from None


def parse_vary(texts: Sequence[str], allowed: Sequence[str]) -> dict[str, list[str]]:
    """``["cache=dynamic,static", ...]`` -> ``{"cache": ["dynamic", "static"]}`` (order kept)."""
    vary: dict[str, list[str]] = {}
    for text in texts:
        key, sep, values_text = text.partition("=")
        key = key.strip().removeprefix("--")
        values = [value.strip() for value in values_text.split(",")]
        if not sep or not key or any(not value for value in values):
            raise BadInputError(f"--vary {text!r}: expected OPTION=VALUE,VALUE,... (e.g. cache=dynamic,static)")
        if key not in allowed:
            raise BadInputError(f"--vary {key}: not an option a sweep varies; one of {', '.join(allowed)}")
        if key in vary:
            raise BadInputError(f"--vary {key} is given twice: list every value in one --vary")
        if len(set(values)) != len(values):
            raise BadInputError(f"--vary {text!r}: a value is listed twice")
        vary[key] = values
    if not vary:
        raise BadInputError("nothing to sweep: give at least one --vary OPTION=A,B")
    if all(len(values) < 2 for values in vary.values()):
        raise BadInputError("nothing to compare: a --vary needs at least two values (the first is the baseline's)")
    return vary


def plan_variants(vary: Mapping[str, Sequence[str]], *, one_at_a_time: bool) -> list[Variant]:
    """The baseline (every first value) first, then the grid or the one-option changes."""
    keys = list(vary)
    baseline = Variant(tuple((key, vary[key][0]) for key in keys), baseline=True)
    if one_at_a_time:
        changed = [
            Variant(tuple((other, value if other == key else vary[other][0]) for other in keys))
            for key in keys
            for value in vary[key][1:]
        ]
    else:
        changed = [Variant(tuple(zip(keys, values, strict=True))) for values in itertools.product(*vary.values())][1:]
    return [baseline, *changed]


def plan_runs(variants: Sequence[Variant], repeats: int) -> list[PlannedRun]:
    """Every run in the order they run: repeat 1 forward, repeat 2 backward, and so on."""
    if repeats < 1:
        raise BadInputError(f"--repeats must be at least 1, got {repeats}")
    runs = []
    for repeat in range(1, repeats + 1):
        ordered = variants if repeat % 2 else list(reversed(variants))
        for variant in ordered:
            runs.append(
                PlannedRun(
                    variant=variant.name,
                    repeat=repeat,
                    order=len(runs),
                    run_dir=f"{RUNS_DIR}/{variant.slug}.r{repeat}",
                )
            )
    return runs


def read_manifest(sweep_dir: Path) -> SweepManifest:
    """The sweep.json of ``sweep_dir`` (RunDirError when it holds none)."""
    path = sweep_dir / SWEEP_JSON
    if not path.is_file():
        raise RunDirError(f"{sweep_dir} holds no {SWEEP_JSON}: not a sweep directory")
    return SweepManifest.from_json(rundir.read_json(path), str(path))


def is_sweep_dir(path: Path) -> bool:
    return (path / SWEEP_JSON).is_file()


def write_manifest(sweep_dir: Path, manifest: SweepManifest) -> None:
    rundir.write_json_atomic(sweep_dir / SWEEP_JSON, manifest.to_json())


# -- the command a finding proposes -------------------------------------------------------------


def sweep_command(
    run_dir: Path,
    *,
    images: Sequence[str],
    config: Mapping[str, Any] | None,
    vary: Mapping[str, Sequence[str]],
    out_suffix: str,
) -> str:
    """The ``dsocr sweep`` command that reruns a run's own pages with its own capture options and
    varies ``vary`` (each first value should be the run's own, so that the baseline is the run).

    ``config``: run.json ``config``. The sweep's directory sits beside the run: ``RUN.sweep-SUFFIX``.
    """
    config = config or {}
    args = ["dsocr", "sweep", *images, "--out", f"{run_dir}.sweep-{out_suffix}"]
    for key in ("model", "device", "dtype", "prompt", "attn_implementation", "sdpa_backend", "cache", "compile"):
        flag = key.replace("_", "-")
        value = config.get(key)
        if value is not None and flag not in vary and value != CAPTURE_DEFAULTS.get(key):
            args += [f"--{flag}", str(value)]
    if "max-new-tokens" not in vary:
        tokens = config.get("max_new_tokens")
        args += ["--max-new-tokens", "inf" if tokens is None else str(tokens)]
    for key in ("seed", "warmup_tokens"):
        if config.get(key):
            args += [f"--{key.replace('_', '-')}", str(config[key])]
    for key, values in vary.items():
        args += ["--vary", f"{key}={','.join(values)}"]
    return shlex.join(args)
