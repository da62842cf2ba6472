"""What one chip holds, by item (:class:`ChipMemory`), and how a plan's placement moves
shares of it to off-chip tiers (:func:`placed_memory`; rules in :mod:`hwsim.workload.memory`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from hwsim.workload.plan import Plan

_ITEMS = {"weights_bytes": "weights", "kv_cache_bytes": "KV cache", "activations_bytes": "activations",
          "gradients_bytes": "gradients", "optimizer_state_bytes": "optimizer state",
          "workspace_bytes": "workspace"}


@dataclass(frozen=True)
class ChipMemory:
    """Bytes one chip holds, by item; ``offloaded_bytes`` lie in host memory instead."""

    weights_bytes: float = 0.0
    kv_cache_bytes: float = 0.0
    activations_bytes: float = 0.0
    gradients_bytes: float = 0.0
    optimizer_state_bytes: float = 0.0
    workspace_bytes: float = 0.0
    offloaded_bytes: float = 0.0
    tier_bytes: tuple[tuple[str, float], ...] = ()
    """Bytes a placement puts in each off-chip tier, ``((tier, bytes), ...)`` sorted."""

    @property
    def total_bytes(self) -> float:
        """On-chip bytes (everything but ``offloaded_bytes``)."""
        return sum(getattr(self, key) for key in _ITEMS)

    def as_dict(self) -> dict[str, float]:
        """Every byte count and ``total_bytes``, in bytes (a placement's tiers as
        ``<tier>_tier_bytes``)."""
        out = asdict(self)
        out.pop("tier_bytes")
        return out | {f"{t}_tier_bytes": b for t, b in self.tier_bytes} | {"total_bytes": self.total_bytes}


def placed_memory(mem: ChipMemory, plan: Plan, layers: int, layer_weights: float) -> ChipMemory:
    """``mem`` with the placement's off-chip shares moved to their tiers (the rules:
    :mod:`hwsim.workload.memory`, **placement**)."""
    items = {"weights": ("weights_bytes", "gradients_bytes"), "kv_cache": ("kv_cache_bytes",),
             "activations": ("activations_bytes",), "optimizer": ("optimizer_state_bytes",)}
    fields = mem.as_dict()
    tiers: dict[str, float] = {}
    workspace = mem.workspace_bytes
    for item, keys in items.items():
        shares = plan.off_chip_shares(item)
        if not shares:
            continue
        off = sum(shares.values())
        for key in keys:
            for tier, share in shares.items():
                tiers[tier] = tiers.get(tier, 0.0) + fields[key] * share
            fields[key] *= 1.0 - off
        if item == "weights":  # double buffers of the streamed share (and its gradients)
            workspace += 2 * layer_weights * off * (2 if mem.gradients_bytes else 1)
        elif item != "optimizer":  # the optimizer state is used where it lies
            workspace += 2 * off * sum(getattr(mem, k) for k in keys) / layers
    moved = sum(tiers.values())
    return ChipMemory(fields["weights_bytes"], fields["kv_cache_bytes"], fields["activations_bytes"],
                      fields["gradients_bytes"], fields["optimizer_state_bytes"], workspace,
                      mem.offloaded_bytes + moved, tuple(sorted(tiers.items())))
