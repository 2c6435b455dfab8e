"""``--resume`` continues a run as recorded: options not given again take the run's own values.

So ``dsocr capture --resume --out runs/x`` alone continues ``runs/x`` with the options it was
started with; an option given again must equal the recorded one (capture.run_record refuses a
difference with one line). Torch-free: the CLI applies it before a rank is launched.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Collection
from pathlib import Path
from typing import Any, get_args, get_type_hints

from dsocr.capture.config import CaptureConfig, SamplingSchedule

from dsocr.records import ConfigRecord
from dsocr.rundir import RUN_JSON, read_run_json
from dsocr.vocab import RunKind

#: Recorded options that a resumed run never takes from run.json: where the run is, and the
#: sampling schedule (rebuilt field by field below, as its three options are given one by one).
_NOT_TAKEN = frozenset({"out", "sampling"})
_SAMPLING_OPTIONS = ("first_steps", "window_steps", "window_every")


def _coerce(hint: Any, value: Any) -> Any:
    """A run.json value as the CaptureConfig field typed ``hint`` holds it (enums, paths)."""
    if value is None:
        return None
    for kind in get_args(hint) or (hint,):
        if isinstance(kind, type) and issubclass(kind, enum.Enum | Path):
            return kind(value)
    return value


def as_recorded(config: CaptureConfig, given: Collection[str]) -> CaptureConfig:
    """``config`` with every option the user did not give (``given``: the option names, as the
    CLI's parameters are named) replaced by the value the run in ``config.out`` recorded.

    Unchanged without ``--resume`` or when ``config.out`` holds no capture run (the resume check
    then says what is wrong).
    """
    if not config.resume or not (config.out / RUN_JSON).is_file():
        return config
    previous = read_run_json(config.out)
    recorded = previous.config
    if previous.kind is not RunKind.capture or recorded is None:
        return config
    hints = get_type_hints(CaptureConfig)
    config_fields = {field.name for field in dataclasses.fields(CaptureConfig)}
    changes: dict[str, Any] = {}
    for field in dataclasses.fields(ConfigRecord):
        name = field.name
        if name in _NOT_TAKEN or name in given or name not in config_fields:
            continue
        value = getattr(recorded, name)
        if value is None and type(None) not in get_args(hints[name]):
            continue  # not recorded (a run made before the option existed): the default applies
        changes[name] = _coerce(hints[name], value)
    sampling = {
        option: getattr(config.sampling if option in given else recorded.sampling, option)
        for option in _SAMPLING_OPTIONS
    }
    return dataclasses.replace(config, **changes, sampling=SamplingSchedule(**sampling))
