"""Sparsity patterns a workload's weight GEMMs are pruned to: N:M (``"2:4"``),
unstructured or block densities (``"unstructured:0.3"``, ``"block4x4:0.5"``), one for
every weight GEMM or one per part (``{"attention": ..., "ffn": ...}``). What a chip makes
of them is :mod:`hwsim.mapping.sparsity`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SparsitySpec:
    """A parsed sparsity pattern: ``kind`` ``"nm"`` (``key`` ``"2:4"``), ``"unstructured"``
    or ``"block"`` (``key`` the block shape ``"4x4"``), and the density kept (N/M for N:M)."""

    kind: str
    key: str
    density: float


def parse_sparsity(pattern: str) -> SparsitySpec:
    """Parse ``"2:4"``, ``"unstructured:0.3"`` or ``"block4x4:0.5"`` (densities in (0, 1]).

    Raises
    ------
    ValueError
        With what a valid pattern looks like.
    """
    text = str(pattern).strip().lower()
    head, sep, tail = text.partition(":")
    if head.isdigit() and tail.isdigit():
        n_kept, m_group = int(head), int(tail)
        if not 0 < n_kept < m_group:
            raise ValueError(f"pattern {pattern!r} needs 0 < N < M")
        return SparsitySpec("nm", text, n_kept / m_group)
    if not sep:
        raise ValueError(f"expected an N:M pattern such as '2:4', 'unstructured:<density>' or "
                         f"'block<R>x<C>:<density>', got {pattern!r}")
    try:
        density = float(tail)
    except ValueError:
        raise ValueError(f"{pattern!r}: density {tail!r} is not a number") from None
    if not 0 < density <= 1:
        raise ValueError(f"{pattern!r}: density must be in (0, 1], got {density:g}")
    if head == "unstructured":
        return SparsitySpec("unstructured", "unstructured", density)
    shape = head.removeprefix("block").split("x")
    if head.startswith("block") and len(shape) == 2 and all(p.isdigit() and int(p) > 0 for p in shape):
        return SparsitySpec("block", head.removeprefix("block"), density)
    raise ValueError(f"expected an N:M pattern such as '2:4', 'unstructured:<density>' or "
                     f"'block<R>x<C>:<density>', got {pattern!r}")


#: The tensor classes a sparsity mapping may name: attention projections, FFN (dense
#: MLPs, routed and shared experts).
SPARSITY_PARTS = ("attention", "ffn")
Sparsity = str | tuple[tuple[str, str], ...] | None
"""One pattern for every weight GEMM, or (part, pattern) pairs, or none."""


def normalize_sparsity(value: object) -> Sparsity:
    """``value`` (a pattern, a ``{part: pattern}`` mapping, or None) in hashable form.

    Raises
    ------
    ValueError
        For an unknown part or an invalid pattern.
    """
    if value is None:
        return None
    if isinstance(value, dict):
        unknown = [k for k in value if k not in SPARSITY_PARTS]
        if unknown:
            raise ValueError(f"unknown part {unknown[0]!r}; expected {' or '.join(SPARSITY_PARTS)}")
        for pattern in value.values():
            if pattern is not None:
                parse_sparsity(pattern)
        return tuple(sorted((k, str(v)) for k, v in value.items() if v is not None)) or None
    if isinstance(value, tuple):
        return normalize_sparsity(dict(value))
    parse_sparsity(str(value))
    return str(value)


def sparsity_for(sparsity: Sparsity, part: str) -> str | None:
    """The pattern of ``part``'s weight GEMMs under ``sparsity``."""
    if sparsity is None or isinstance(sparsity, str):
        return sparsity
    return dict(sparsity).get(part)


def sparsity_problem(pattern: object) -> str | None:
    """Why ``pattern`` is not a valid sparsity (``None`` if it is, or is ``None``)."""
    try:
        normalize_sparsity(pattern)
    except ValueError as exc:
        return str(exc)
    return None
