"""Named offload schedules as plans: ZeRO-Offload, ZeRO-Infinity and FlexGen.

Each returns a :class:`~hwsim.workload.plan.Plan` whose :attr:`~Plan.placement` says
where each piece of state lies; the streams and the host CPU's work follow from it
(:mod:`hwsim.workload.parallel`, :mod:`hwsim.workload.train`, :mod:`hwsim.cost.host`).

- **ZeRO-Offload** (Ren et al., USENIX ATC 2021): fp32 optimizer state in host memory;
  the fp16/bf16 gradients go to the host after the backward, the host CPU runs Adam
  (their CPU-Adam) and the updated weights come back; weights and activations stay on
  the GPU. Used with ZeRO-2 over data parallel in the paper (pass ``zero_stage=2``).
- **ZeRO-Infinity** (Rajbhandari et al., SC 2021): ZeRO-3 with the parameters and the
  optimizer state in NVMe (or host) memory; each layer's parameters stream in before its
  forward and again before its backward, its gradients stream out, and the optimizer
  runs on the host CPU over the NVMe-resident state. Activation checkpoints may go to
  host memory too (``activations_tier``).
- **FlexGen** (Sheng et al., ICML 2023): inference with weights (and KV cache) split in
  given shares over GPU, CPU and disk, streamed layer by layer; its zig-zag block
  schedule loads each layer's weights once for a *block* of ``gpu_batch_size *
  num_gpu_batches`` sequences, so the stream is amortised over the block. Here the
  workload's ``batch`` is that block: a decode step streams every off-GPU weight share
  once per layer for the whole batch, overlapped with its compute. (FlexGen also places
  activations; they are one layer's at a time in inference here and stay on the chip.)
"""

from __future__ import annotations

from typing import Any

from hwsim.errors import ConfigError
from hwsim.workload.plan import Plan


def _with(placement: dict[str, dict[str, float]], fields: dict[str, Any], who: str) -> Plan:
    if "placement" in fields:
        raise ConfigError([f"plan: placement: {who} sets the placement itself; change its arguments instead"])
    return Plan(placement=placement, **fields)


def zero_offload_plan(**fields: Any) -> Plan:
    """ZeRO-Offload: the optimizer state in host memory, Adam on the host CPU (module
    docstring); ``fields`` are other :class:`Plan` fields (``dp``, ``zero_stage``...)."""
    return _with({"optimizer": {"host": 1.0}}, fields, "zero_offload_plan")


def zero_infinity_plan(tier: str = "nvme", activations_tier: str | None = None, **fields: Any) -> Plan:
    """ZeRO-Infinity: ZeRO-3 with parameters and optimizer state in ``tier`` (default
    NVMe), optionally the activation checkpoints in ``activations_tier`` (e.g. ``host``),
    with recompute on as the paper runs it (module docstring)."""
    placement = {"weights": {tier: 1.0}, "optimizer": {tier: 1.0}}
    if activations_tier is not None:
        placement["activations"] = {activations_tier: 1.0}
    fields = {"zero_stage": 3, "recompute": True} | fields
    return _with(placement, fields, "zero_infinity_plan")


def flexgen_plan(weights: dict[str, float], kv_cache: dict[str, float] | None = None, **fields: Any) -> Plan:
    """FlexGen: ``weights`` (and ``kv_cache``) as shares per tier, e.g. ``{"device": 0.2,
    "host": 0.8}`` (FlexGen's ``--percent``: GPU, CPU, disk); the workload's batch is the
    block of ``gpu_batch_size * num_gpu_batches`` sequences each layer load serves."""
    placement = {"weights": dict(weights)}
    if kv_cache is not None:
        placement["kv_cache"] = dict(kv_cache)
    return _with(placement, fields, "flexgen_plan")
