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
    offload : tuple of {"weights", "optimizer", "kv_cache"}
        State kept in host memory and streamed over the host link when used.
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
    offload: tuple[OffloadTarget, ...] = ()
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
            parts.append("recompute")
        parts += [f"offload:{t}" for t in self.offload]
        return " ".join(parts) or "single chip"
