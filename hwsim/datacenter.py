"""Loading the datacenter presets: facilities (``arch_configs/datacenter/*.yaml``) and the nodes chips
are housed in (``arch_configs/datacenter/nodes/<chip>.yaml``), with errors that name the file and path.

The formulas are in :mod:`hwsim.cost.datacenter`; this module only reads files.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from hwsim._paths import data_dir
from hwsim._yaml import read_yaml, validation_problems
from hwsim.cost.datacenter import Datacenter, Node
from hwsim.errors import ConfigError


def _folder(sub: str = "") -> Path:
    base = data_dir("arch_configs") / "datacenter"
    return base / sub if sub else base


def _names(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def list_datacenters() -> list[str]:
    """Names of the shipped facility presets (``arch_configs/datacenter/*.yaml``)."""
    return _names(_folder())


def list_nodes() -> list[str]:
    """Chips with a shipped node preset (``arch_configs/datacenter/nodes/<chip>.yaml``)."""
    return _names(_folder("nodes"))


def _validate(model: type[BaseModel], data: Any, source: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError([f"{source}: <root>: expected a mapping of {model.__name__} fields"])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_problems(source, exc)) from None


def load_datacenter(spec: str | Path | dict[str, Any] | Datacenter | None = None) -> Datacenter:
    """A :class:`Datacenter` from a preset name (``"default"``, ``"hyperscale"``...), a YAML
    path, a mapping of fields, or one already built; ``None`` is the ``default`` preset.

    Raises
    ------
    ConfigError
        For an unknown preset (with close matches) or invalid fields (``file: path: message``).
    """
    if isinstance(spec, Datacenter):
        return spec
    if spec is None:
        spec = "default"
    if isinstance(spec, dict):
        return _validate(Datacenter, spec, "datacenter")  # type: ignore[no-any-return]
    path = Path(spec)
    if not path.is_file():
        path = _folder() / f"{spec}.yaml"
    if not path.is_file():
        known = list_datacenters()
        close = difflib.get_close_matches(str(spec), known, n=2)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError([f"{spec}: unknown datacenter preset or file{hint} (known: {', '.join(known)})"])
    return _validate(Datacenter, read_yaml(path), str(path))  # type: ignore[no-any-return]


def load_node(chip: str | Path) -> Node:
    """The node preset housing chips named ``chip`` (``arch_configs/datacenter/nodes/<chip>.yaml``), or
    a node YAML path.

    Raises
    ------
    ConfigError
        If there is none (listing the chips that have one) or the file is invalid.
    """
    path = Path(chip)
    if not path.is_file():
        path = _folder("nodes") / f"{chip}.yaml"
    if not path.is_file():
        raise ConfigError([f"{chip}: no node preset (arch_configs/datacenter/nodes/{chip}.yaml) says how "
                           f"this chip is housed, powered and priced "
                           f"(chips with one: {', '.join(list_nodes())})"])
    return _validate(Node, read_yaml(path), str(path))  # type: ignore[no-any-return]
