"""Parallelism plans: how a workload is split over the chips of a system.

A :class:`Plan` is independent of any architecture: it names group sizes (tensor,
pipeline, data, expert and context parallel) and the memory-saving options. Lowering a
model with a plan (:func:`hwsim.workload.lower`) produces the graph *one chip* runs,
with its share of every operator and the collectives that join the shares.

Rank order (Megatron-LM's): tensor parallel innermost (stride 1), then context, then
data (expert parallel is carved from the data-parallel ranks), then pipeline outermost,
so tensor-parallel groups sit on the fastest, innermost links.
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, model_validator

from hwsim._yaml import validation_problems
from hwsim.errors import ConfigError
from hwsim.quantities import CapacityBytes, Flag, SmallCount, exact_int

OffloadTarget = Literal["weights", "optimizer", "kv_cache"]

PLACED_ITEMS = ("weights", "kv_cache", "activations", "optimizer")
"""State a :attr:`Plan.placement` may split over memory tiers."""

DEVICE_TIER = "device"
"""The tier name of the chip's own (home) memory in a placement; ``hbm`` is an alias."""
_DEVICE_ALIASES = frozenset({"device", "hbm"})
_SHARE_TOLERANCE = 1e-9

Placement = tuple[tuple[str, tuple[tuple[str, float], ...]], ...]
"""``((item, ((tier, share), ...)), ...)``, items and tiers sorted (hashable)."""


def _placement(value: Any) -> Any:
    """Turn ``{weights: {hbm: 0.7, host: 0.3}}`` into sorted tuples, checking each item's
    shares (in [0, 1], summing to 1); the tier names are checked against a system later."""
    if isinstance(value, tuple | list) and all(isinstance(v, tuple | list) and len(v) == 2 for v in value):
        value = {k: dict(v) for k, v in value}
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping of item to {{tier: share}}, got {type(value).__name__}")
    out = []
    for item, shares in value.items():
        if item not in PLACED_ITEMS:
            raise ValueError(f"{item!r}: unknown item; expected one of {', '.join(PLACED_ITEMS)}")
        if not isinstance(shares, dict) or not shares:
            raise ValueError(f"{item}: expected a non-empty mapping of tier to share")
        clean: dict[str, float] = {}
        for tier, share in shares.items():
            if isinstance(share, bool) or not isinstance(share, int | float) or not 0.0 <= share <= 1.0:
                raise ValueError(f"{item}.{tier}: a share must be a number in [0, 1], got {share!r}")
            name = DEVICE_TIER if tier in _DEVICE_ALIASES else str(tier)
            clean[name] = clean.get(name, 0.0) + float(share)
        total = sum(clean.values())
        if abs(total - 1.0) > _SHARE_TOLERANCE:
            terms = " + ".join(f"{t} {v:g}" for t, v in shares.items())
            raise ValueError(f"{item}: shares sum to {total:g} ({terms}), not 1")
        out.append((item, tuple(sorted((t, v) for t, v in clean.items() if v > 0.0))))
    return tuple(sorted(out))

PHASES = ("prefill", "decode", "request", "train")
"""Phases a model is lowered for (see :func:`hwsim.workload.lower`)."""


class Plan(BaseModel):
    """A parallelism plan.

    Attributes
    ----------
    tp, pp, dp, ep, cp : int
        Tensor-, pipeline-, data-, expert- and context-parallel group sizes. Chips used:
        ``tp * cp * dp * pp``; ``ep`` must divide ``dp`` (experts are spread over
        data-parallel ranks, each holding ``num_experts / ep`` of them).
    sequence_parallel : bool
        Megatron sequence parallelism: norms and residuals run on ``1/tp`` of the tokens
        and each all-reduce becomes a reduce-scatter plus an all-gather.
    microbatches : int
        Micro-batches per pipeline (the per-replica batch is split into this many).
    pipeline_schedule : {"1f1b", "gpipe"}
        Order of forward and backward micro-batches on each stage (training).
    zero_stage : {0, 1, 2, 3}
        ZeRO: shard optimizer state (1), plus gradients (2), plus weights (3) over dp.
    recompute : bool
        Activation checkpointing: keep only each layer's input and recompute its
        forward during the backward pass.
    recompute_granularity : {"full", "selective"}
        With ``recompute``: ``full`` recomputes whole layers; ``selective`` (Megatron-LM,
        Korthikanti et al. 2022) keeps every activation but the attention core's (scores,
        softmax, dropout) and recomputes only that.
    recompute_every : int
        Full recompute: keep the input of every n-th layer only, and recompute n layers
        at a time (Chen et al. 2016's checkpoint spacing; sqrt(layers) minimises memory).
    offload : tuple of {"weights", "optimizer", "kv_cache"}
        State kept in host memory and streamed over the host link when used.
    placement : mapping of item to {tier: share}
        A share of ``weights``, ``kv_cache``, ``activations`` or ``optimizer`` state in
        each memory tier (``device``/``hbm``: the chip's own memory; ``host``; or a
        system tier such as ``nvme`` or ``cxl``), e.g. ``{"weights": {"hbm": 0.7,
        "host": 0.3}}``; shares sum to 1. Off-chip shares stream over their tier's link
        (:mod:`hwsim.workload.tiers`, ``docs/memory_tiers.md``).
    grad_bucket_bytes : float
        Gradient all-reduce bucket size (B); buckets overlap the backward pass.

    Raises
    ------
    ConfigError
        For a value that is not what its field says (``tp="2"``, ``tp=True``,
        ``grad_bucket_bytes=inf``), one ``plan: field: problem`` line each.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    tp: SmallCount = 1
    pp: SmallCount = 1
    dp: SmallCount = 1
    ep: SmallCount = 1
    cp: SmallCount = 1
    sequence_parallel: Flag = False
    microbatches: SmallCount = 1
    pipeline_schedule: Literal["1f1b", "gpipe"] = "1f1b"
    zero_stage: Annotated[Literal[0, 1, 2, 3], BeforeValidator(exact_int)] = 0
    recompute: Flag = False
    recompute_granularity: Literal["full", "selective"] = "full"
    recompute_every: SmallCount = 1
    offload: tuple[OffloadTarget, ...] = ()
    placement: Annotated[Placement, BeforeValidator(_placement)] = ()
    grad_bucket_bytes: CapacityBytes = 25e6

    def __init__(self, **data: Any) -> None:
        # Python callers get the loaders' ConfigError, not pydantic's ValidationError.
        # (Plan is never a field of another model: pydantic calls a custom __init__ for
        # nested models too, and this one would hide the outer model's dotted path.)
        try:
            super().__init__(**data)
        except ValidationError as exc:
            problems = validation_problems("plan", exc)
            for key in data:
                close = difflib.get_close_matches(key, type(self).model_fields, n=1)
                if key not in type(self).model_fields and close:
                    problems = [f"{p}; did you mean {close[0]}?" if p.startswith(f"plan: {key}: ") else p
                                for p in problems]
            raise ConfigError(problems) from None

    @model_validator(mode="after")
    def _ep_divides_dp(self) -> Plan:
        if self.dp % self.ep:
            raise ValueError(f"ep={self.ep} must divide dp={self.dp} (experts are spread over "
                             "data-parallel ranks)")
        return self

    @model_validator(mode="after")
    def _placement_apart_from_offload(self) -> Plan:
        both = sorted(set(self.offload) & {item for item, _ in self.placement})
        if both:
            raise ValueError(f"{', '.join(both)}: given both in offload and in placement; use one")
        if self.recompute_every > 1 and self.recompute_granularity == "selective":
            raise ValueError("recompute_every applies to full recompute, not selective")
        return self

    def shares(self, item: str) -> dict[str, float]:
        """Share of ``item`` in each tier, the chip's own (``device``) included; an item
        the placement does not name lies wholly on the chip (or as ``offload`` says)."""
        for name, shares in self.placement:
            if name == item:
                return dict(shares)
        return {DEVICE_TIER: 1.0}

    def off_chip_shares(self, item: str) -> dict[str, float]:
        """The off-chip tiers' shares of ``item`` (empty if it lies wholly on the chip)."""
        return {t: v for t, v in self.shares(item).items() if t != DEVICE_TIER}

    @property
    def full_recompute(self) -> bool:
        """Whole layers are recomputed in the backward pass."""
        return self.recompute and self.recompute_granularity == "full"

    @property
    def n_chips(self) -> int:
        """Chips the plan occupies."""
        return self.tp * self.cp * self.dp * self.pp

    @property
    def strides(self) -> dict[str, int]:
        """Rank distance between consecutive members of each group (Megatron order)."""
        return {"tp": 1, "cp": self.tp, "dp": self.tp * self.cp, "ep": self.tp * self.cp,
                "pp": self.tp * self.cp * self.dp}

    def label(self) -> str:
        """Short description, e.g. ``tp8 pp2 dp4 mb8 1f1b zero1 recompute``."""
        parts = [f"{k}{getattr(self, k)}" for k in ("tp", "pp", "dp", "ep", "cp") if getattr(self, k) > 1]
        if self.sequence_parallel:
            parts.append("sp")
        if self.pp > 1 or self.microbatches > 1:
            parts.append(f"mb{self.microbatches} {self.pipeline_schedule}")
        if self.zero_stage:
            parts.append(f"zero{self.zero_stage}")
        if self.recompute:
            parts.append("recompute" if self.full_recompute else "recompute:selective")
            if self.recompute_every > 1:
                parts.append(f"every{self.recompute_every}")
        parts += [f"offload:{t}" for t in self.offload]
        parts += [f"{item}:" + "+".join(f"{t}{v:g}" for t, v in shares) for item, shares in self.placement
                  if dict(shares) != {DEVICE_TIER: 1.0}]
        return " ".join(parts) or "single chip"
