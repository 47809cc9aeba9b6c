"""Checks of config field values, shared by AdapterConfig and the method configs (MethodConfig):
each error names the field and the value it got."""
from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Dict, Mapping


def field_error(cls_name: str, field_name: str, expected: str, value: Any) -> ValueError:
    """``ValueError("<cls_name>.<field_name> must be <expected>, got <value!r>")``."""
    return ValueError(f"{cls_name}.{field_name} must be {expected}, got {value!r}")


def check_number(value: Any, field_name: str, low: float, high: float, low_open: bool, high_open: bool) -> None:
    """`value` is a finite number in the interval from `low` to `high` (open ends where told)."""
    ok_type = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok_type or not math.isfinite(value):
        raise ValueError(f"AdapterConfig.{field_name} must be a finite number, got {value!r}")
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"AdapterConfig.{field_name} must lie in {interval}, got {value!r}")


def check_int(value: Any, field_name: str, minimum: int) -> None:
    """`value` is an integer (not a bool) >= `minimum`."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"AdapterConfig.{field_name} must be an integer >= {minimum}, got {value!r}")


class DictConfig:
    """Mixin of the adapter config dataclasses: from a plain mapping (the `adapter:` section of a
    run's YAML, unknown keys an error naming them), to a dict, to and from JSON (adapter files)."""

    @classmethod
    def from_fields(cls, d: Mapping[str, Any], context: str = ""):
        """``cls(**d)`` after checking that ``d`` is a mapping of ``cls``'s fields; ``context``
        follows the unknown keys in the message."""
        if not isinstance(d, Mapping):
            raise ValueError(f"adapter config must be a mapping, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown adapter config key(s) {unknown}{context}; known keys: {sorted(known)}")
        return cls(**dict(d))

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str):
        return cls.from_dict(json.loads(text))
