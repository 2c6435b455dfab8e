"""Typed reading of parsed JSON objects, every error naming its source and key; dataclasses to JSON."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, TypeVar

from dsocr.errors import RunDirError

_MISSING = object()
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_E = TypeVar("_E", bound=enum.StrEnum)


class JsonReader:
    """Typed access to one JSON object; every error names the source and the key's path."""

    def __init__(self, payload: Any, source: str, path: str = "") -> None:
        if not isinstance(payload, dict):
            where = f"{path} " if path else ""
            raise RunDirError(f"{source}: {where}must be a JSON object, found {_json_type(payload)}")
        self._payload, self._source, self._path = payload, source, path

    def _name(self, key: str) -> str:
        return f"{self._path}.{key}" if self._path else key

    def _get(self, key: str, required: bool) -> Any:
        value = self._payload.get(key, _MISSING)
        if value is _MISSING and required:
            raise RunDirError(f"{self._source}: lacks the key {self._name(key)}")
        return None if value is _MISSING else value

    def _fail(self, key: str, expected: str, value: Any) -> RunDirError:
        return RunDirError(f"{self._source}: {self._name(key)} must be {expected}, found {value!r}")

    def integer(self, key: str, *, required: bool = False, minimum: int | None = None) -> int | None:
        """An integer within int64 (every integer dsocr writes fits one), and >= ``minimum`` when given."""
        value = self._get(key, required)
        if value is None and not required:
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._fail(key, "an integer", value)
        low = INT64_MIN if minimum is None else minimum
        if not low <= value <= INT64_MAX:
            raise self._fail(key, f"an integer from {low} to {INT64_MAX}", value)
        return value

    def fail_whole(self, reason: str) -> RunDirError:
        """An error about this object as a whole (its values disagree), naming its path."""
        return RunDirError(f"{self._source}: {self._path or 'the object'}: {reason}")

    def boolean(self, key: str) -> bool | None:
        value = self._get(key, False)
        if value is None:
            return None
        if not isinstance(value, bool):
            raise self._fail(key, "true or false", value)
        return value

    def number(self, key: str) -> float | None:
        value = self._get(key, False)
        if value is None:
            return None
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise self._fail(key, "a number", value)
        return float(value)

    def text(self, key: str, *, required: bool = False) -> str | None:
        value = self._get(key, required)
        if value is None and not required:
            return None
        if not isinstance(value, str):
            raise self._fail(key, "a string", value)
        if not _is_unicode(value):
            raise self._fail(key, "valid Unicode (no lone surrogate)", value)
        return value

    def choice(self, key: str, enum: type[_E]) -> _E:
        value = self.text(key, required=True)
        try:
            return enum(value)
        except ValueError:
            raise self._fail(key, f"one of {', '.join(enum)}", value) from None

    def strings(self, key: str) -> tuple[str, ...] | None:
        value = self._get(key, False)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self._fail(key, "a list of strings", value)
        if not all(_is_unicode(item) for item in value):
            raise self._fail(key, "valid Unicode (no lone surrogate)", value)
        return tuple(value)

    def mapping(self, key: str) -> dict[str, Any] | None:
        value = self._get(key, False)
        if value is not None and not isinstance(value, dict):
            raise self._fail(key, "an object", value)
        return value

    def child(self, key: str, *, required: bool = False) -> JsonReader | None:
        value = self._get(key, required)
        if value is None and not required:
            return None
        return JsonReader(value, self._source, self._name(key))

    def children(self, key: str) -> list[JsonReader] | None:
        value = self._get(key, False)
        if value is None:
            return None
        if not isinstance(value, list):
            raise self._fail(key, "a list", value)
        return [JsonReader(item, self._source, f"{self._name(key)}[{index}]") for index, item in enumerate(value)]


def _is_unicode(text: str) -> bool:
    """False for a string JSON can hold but UTF-8 cannot (a lone surrogate, "\\ud800"): such a
    value would fail every later write of it (Parquet, JSON, an emit folder's info.json)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def to_json(value: Any) -> Any:
    """Dataclasses to objects, tuples to lists, enum members to their strings."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: to_json(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [to_json(item) for item in value]
    if isinstance(value, dict):
        return {key: to_json(item) for key, item in value.items()}
    return value
