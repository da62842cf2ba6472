"""Loading the technology table of the area and cost model (the edge that reads it).

:mod:`hwsim.cost.area` reads no files; its callers load the table here once and pass it
in. The shipped table is ``hwsim/data/technology.yaml``; a user may pass their own.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import ValidationError

from hwsim._yaml import read_yaml, validation_problems
from hwsim.cost.technology import Technology
from hwsim.errors import ConfigError

SHIPPED_TECHNOLOGY = Path(__file__).resolve().parent / "data" / "technology.yaml"


def load_technology(path: str | Path | None = None) -> Technology:
    """The technology table at ``path`` (default: the shipped one, read once).

    Raises
    ------
    ConfigError
        For an unreadable or malformed file, or an invalid table (one line per problem,
        naming the file and dotted path).
    """
    if path is None:
        return _shipped()
    return _read(Path(path))


@lru_cache(maxsize=1)
def _shipped() -> Technology:
    return _read(SHIPPED_TECHNOLOGY)


def _read(path: Path) -> Technology:
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: <root>: expected a mapping of technology constants"])
    try:
        return Technology.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_problems(str(path), exc)) from None
