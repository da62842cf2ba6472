"""Typed, strict access to a config mapping that records every problem and every key read."""

from __future__ import annotations

import math
from typing import Any


class ConfigReader:
    """Typed access to a config mapping that records every problem and every key read."""

    def __init__(self, data: dict[str, Any], prefix: str = "") -> None:
        self.data = data
        self.prefix = prefix
        self.problems: list[str] = []
        self.read: set[str] = set()
        self.source: dict[str, str] = {}  # canonical field -> key as the file spells it

    def _path(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def has(self, key: str) -> bool:
        self.read.add(key)
        return self.data.get(key) is not None

    def raw(self, key: str) -> Any:
        self.read.add(key)
        return self.data.get(key)

    def integer(self, *keys: str, default: int | None = None, field: str = "") -> int | None:
        """The first of ``keys`` present (and not null) as an integer."""
        for key in keys:
            self.read.add(key)
            value = self.data.get(key)
            if value is None:
                continue
            if field:
                self.source[field] = self._path(key)
            if isinstance(value, bool) or not isinstance(value, int):
                self.problems.append(f"{self._path(key)}: expected an integer, got {value!r}")
                return default
            return value
        return default

    def number(self, *keys: str, default: float | None = None) -> float | None:
        for key in keys:
            self.read.add(key)
            value = self.data.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                self.problems.append(f"{self._path(key)}: expected a finite number, got {value!r}")
                return default
            return float(value)
        return default

    def flag(self, key: str, default: bool) -> bool:
        self.read.add(key)
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.problems.append(f"{self._path(key)}: expected true or false, got {value!r}")
            return default
        return value

    def text(self, *keys: str, default: str = "") -> str:
        for key in keys:
            self.read.add(key)
            value = self.data.get(key)
            if value is None:
                continue
            if not isinstance(value, str):
                self.problems.append(f"{self._path(key)}: expected a string, got {value!r}")
                return default
            return value
        return default

    def int_list(self, key: str) -> list[int] | None:
        self.read.add(key)
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or any(isinstance(v, bool) or not isinstance(v, int) for v in value):
            self.problems.append(f"{self._path(key)}: expected a list of integers, got {value!r}")
            return None
        return value
