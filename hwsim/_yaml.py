"""YAML reading shared by the architecture and workload loaders (a leaf module).

PyYAML follows YAML 1.1, which reads ``940e6`` or ``1e9`` (no dot) as *strings*; this
loader resolves them as floats, so numbers in configs read the way people write them.
Parse errors become :class:`~hwsim.errors.ConfigError` naming the file and line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from hwsim.errors import ConfigError


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e9``-style numbers as floats."""


_FLOAT_RE = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_RE, list("-+0123456789."))


def read_yaml(path: Path) -> Any:
    """Read and parse a YAML (or JSON) file.

    Raises
    ------
    ConfigError
        If the file cannot be read or is not valid YAML; the message names the file and
        the line.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "<root>"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{path}: {where}: malformed YAML: {problem}"]) from None


def validation_problems(source: str, exc: Any) -> list[str]:
    """Turn a pydantic ``ValidationError`` into ``source: dotted.path: message`` lines."""
    from hwsim.errors import join_path

    lines = []
    for err in exc.errors():
        loc = tuple(p for p in err.get("loc", ()) if p not in ("function-after",))
        msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        lines.append(f"{source}: {join_path(loc)}: {msg}")
    return lines
