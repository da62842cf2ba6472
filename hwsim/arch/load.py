"""Loading architectures from presets or YAML files, with errors that name the path."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from hwsim._paths import preset_names, resolve
from hwsim._yaml import read_yaml, validation_problems
from hwsim.arch.model import Chip
from hwsim.errors import ConfigError


def list_archs() -> list[str]:
    """Names of the shipped architecture presets (``arch_configs/*.yaml``)."""
    return preset_names("arch_configs")


def arch_from_dict(data: Any, source: str = "<dict>") -> Chip:
    """Validate a mapping (as read from YAML) into a :class:`Chip`.

    Raises
    ------
    ConfigError
        Listing every problem as ``source: dotted.path: message``.
    """
    if not isinstance(data, dict):
        raise ConfigError([f"{source}: <root>: expected a mapping of architecture fields"])
    try:
        return Chip.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_problems(source, exc)) from None


def load_arch(name_or_path: str | Path) -> Chip:
    """Load an architecture by preset name (``"h100-sxm"``) or YAML path.

    Raises
    ------
    ConfigError
        For an unknown preset (with close matches), an unreadable or malformed file,
        or invalid fields (one line per problem, naming the file and dotted path).
    """
    if isinstance(name_or_path, Chip):
        return name_or_path
    path = resolve(name_or_path, "arch_configs")
    if path is None:
        known = list_archs()
        close = difflib.get_close_matches(str(name_or_path), known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(
            [f"{name_or_path}: unknown architecture preset or file{hint} (known: {', '.join(known)})"]
        )
    return arch_from_dict(read_yaml(path), str(path))


def with_overrides(arch: Chip, overrides: dict[str, Any], data: dict[str, Any] | None = None) -> Chip:
    """Return a copy of ``arch`` with dotted-path fields replaced and re-validated.

    ``data``: ``arch.model_dump()`` when the caller keeps it (a sweep builds thousands of
    variants of one chip); it is not modified (only the mappings along the overridden
    paths are copied).

    Examples
    --------
    ``with_overrides(arch, {"memory.hbm.bandwidth_bytes_per_s": 4.8e12})``
    """
    data = dict(arch.model_dump() if data is None else data)
    copied: set[tuple[str, ...]] = set()
    for dotted, value in overrides.items():
        node = data
        parts = dotted.split(".")
        for depth, part in enumerate(parts[:-1]):
            if not isinstance(node, dict) or part not in node:
                raise ConfigError([f"{arch.name}: {dotted}: no such field"])
            child = node[part]
            prefix = tuple(parts[:depth + 1])
            if isinstance(child, dict) and prefix not in copied:
                child = node[part] = dict(child)  # copy on write: ``data`` is the caller's
                copied.add(prefix)
            node = child
        if not isinstance(node, dict) or parts[-1] not in node:
            raise ConfigError([f"{arch.name}: {dotted}: no such field"])
        node[parts[-1]] = value
    return arch_from_dict(data, f"{arch.name} (overridden)")
