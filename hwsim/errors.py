"""Errors raised by hwsim.

Every problem a user can cause (a malformed file, an unknown preset, a model that does
not fit) is reported as an :class:`HwsimError` subclass whose message names the file,
the dotted path and the problem, one line per problem, so the CLI can print it and exit
2 without a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable


class HwsimError(Exception):
    """Base class of every error hwsim reports to its users."""


class ConfigError(HwsimError):
    """One or more problems in a configuration (architecture, workload, options).

    Parameters
    ----------
    problems : iterable of str
        One line per problem, each already formatted as ``source: dotted.path: message``.
    """

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems) or ["unknown configuration problem"]
        super().__init__("\n".join(self.problems))


class MappingError(HwsimError):
    """An operator or model cannot be placed on an architecture (does not fit, dtype
    unsupported); the message says what does not fit where."""


class SimulationError(HwsimError):
    """A simulation produced a value no real run can: a time, energy, byte or FLOP count
    that is infinite, NaN or negative. The message names the op (or result field) and the
    values. Inputs are bounded so that this does not happen; if it does, an input
    outside what the bounds foresee (or a bug) reached the cost model, and hwsim says so
    rather than report the number."""


def join_path(parts: Iterable[object]) -> str:
    """Join a location tuple (as pydantic reports it) into a dotted path.

    Examples
    --------
    >>> join_path(("memory", "hbm", "bandwidth_bytes_per_s"))
    'memory.hbm.bandwidth_bytes_per_s'
    >>> join_path(("x", 0, "y"))
    'x[0].y'
    """
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "<root>"
