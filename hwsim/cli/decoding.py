"""CLI flags for decoding strategies and KV policies (``hwsim simulate``, ``hwsim serve``).

``--decoding KIND`` names the strategy (greedy, sampling, speculative, medusa, eagle,
beam) and ``--decoding-param KEY=VALUE`` (repeatable) sets its fields; ``--kv-policy``
and ``--kv-param`` do the same for the KV policy. Values are read as YAML scalars
(``k=4``, ``acceptance_rate=0.8``, ``draft=llama3.2-1b``); the specs are validated by
:mod:`hwsim.workload.decoding`, so an unknown field or a bad value is a named error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click
import yaml

from hwsim.errors import ConfigError
from hwsim.workload.decoding import DECODING_KINDS, KV_POLICY_KINDS

F = TypeVar("F", bound=Callable[..., Any])


def decoding_options(func: F) -> F:
    """Add the four decoding flags to a command."""
    options = [
        click.option("--decoding", "decoding_kind", type=click.Choice(DECODING_KINDS), default=None,
                     help="Token-generation strategy [default: greedy]."),
        click.option("--decoding-param", "decoding_params", multiple=True, metavar="KEY=VALUE",
                     help="A field of the strategy, e.g. k=4, acceptance_rate=0.8, draft=MODEL, n_beams=4."),
        click.option("--kv-policy", "kv_policy_kind", type=click.Choice(KV_POLICY_KINDS), default=None,
                     help="KV-cache policy [default: full]."),
        click.option("--kv-param", "kv_params", multiple=True, metavar="KEY=VALUE",
                     help="A field of the KV policy, e.g. window_tokens=2044, compression_ratio=0.5."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _params(flag: str, pairs: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError([f"{flag}: expected KEY=VALUE, got {pair!r}"])
        parsed = yaml.safe_load(value) if value.strip() else None
        if isinstance(parsed, list):
            parsed = tuple(parsed)
        out[key.strip()] = parsed
    return out


def pop_decoding(opts: dict[str, Any]) -> dict[str, Any]:
    """Remove the decoding flags from ``opts``; return ``decoding=`` / ``kv_policy=``
    keyword arguments (empty when none was given)."""
    out: dict[str, Any] = {}
    flags = (("decoding_kind", "decoding_params", "decoding", "--decoding-param"),
             ("kv_policy_kind", "kv_params", "kv_policy", "--kv-param"))
    for kind_key, params_key, name, flag in flags:
        kind, params = opts.pop(kind_key, None), opts.pop(params_key, ())
        if kind is None and params:
            raise ConfigError([f"{flag}: give the kind too (--{name.replace('_', '-')} KIND)"])
        if kind is not None:
            out[name] = {"kind": kind, **_params(flag, params)}
    return out


__all__ = ["decoding_options", "pop_decoding"]
