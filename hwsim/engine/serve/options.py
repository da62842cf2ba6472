"""The options of a serving run, validated once (frozen pydantic; unknown or ill-typed
options are a :class:`~hwsim.errors.ConfigError` naming the option).

Defaults follow the servers the schedulers model: vLLM's 256 sequences, 16-token
blocks, ``gpu_memory_utilization = 0.9`` and 1 % watermark; ``max_model_len`` the
model's context (``max_position_embeddings``, extended by rope scaling), else the
longest request; its token budget of ``max(max_model_len, 2048)`` without chunking,
2048 with chunked prefill (Sarathi-Serve's budgets are 512-2048).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, ValidationError

from hwsim._yaml import validation_problems
from hwsim.engine.serve.loop import RoutePolicy
from hwsim.engine.serve.scheduler import Policy, SchedulerConfig
from hwsim.errors import ConfigError
from hwsim.workload.decoding import parse_decoding, parse_kv_policy

#: ``max_num_batched_tokens`` when not given, per scheduler.
DEFAULT_TOKEN_BUDGET = {"static": 1 << 62, "orca": 8192, "vllm": 8192, "sarathi": 2048}


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class PoolOptions(_Options):
    """One pool of a disaggregated deployment (Splitwise, DistServe).

    Attributes
    ----------
    role : {"prefill", "decode"}
    replicas : int
    arch : str or None
        Chip or system preset (or YAML path) of this pool; None: the run's ``arch``.
    plan : Plan or None
        Parallelism of each replica of the pool (``tp``, ``pp``).
    """

    role: Literal["prefill", "decode"]
    replicas: StrictInt = Field(default=1, ge=1)
    arch: Any = None
    plan: Any = None


class ServeOptions(_Options):
    """Keyword options of :func:`hwsim.serve` (see its docstring)."""

    max_num_seqs: StrictInt = Field(default=256, ge=1, le=1 << 20)
    max_num_batched_tokens: StrictInt | None = Field(default=None, ge=1)
    block_tokens: StrictInt = Field(default=16, ge=1, le=1 << 16)
    memory_fraction: StrictFloat = Field(default=0.9, gt=0, le=1)
    watermark: StrictFloat = Field(default=0.01, ge=0, lt=1)
    preemption: Literal["recompute", "swap"] = "recompute"
    priority: Literal["prefill", "decode"] | None = None
    prefix_caching: StrictBool = False
    replicas: StrictInt | None = Field(default=None, ge=1)
    router: RoutePolicy = "round_robin"
    host_overhead_s: StrictFloat = Field(default=0.0, ge=0, le=10)
    attention_impl: Literal["flash", "naive"] = "flash"
    n_layers: StrictInt | None = Field(default=None, ge=1)
    pools: tuple[PoolOptions, ...] = ()
    transfer_bytes_per_s: StrictFloat | None = Field(default=None, gt=0, le=1e16)
    usd_per_chip_hour: StrictFloat | None = Field(default=None, gt=0, le=1e6)
    max_model_len: StrictInt | None = Field(default=None, ge=1, le=10**8)
    decoding: Any = None
    kv_policy: Any = None

    def scheduler_config(self, policy: str, max_model_len: int | None = None) -> SchedulerConfig:
        """The scheduler's options; without a token budget, a scheduler that runs whole
        prompts gets vLLM's ``max(max_model_len, 2048)``, so any admissible request (and
        its recomputation after a preemption) fits one iteration."""
        budget = self.max_num_batched_tokens or DEFAULT_TOKEN_BUDGET[policy]
        if self.max_num_batched_tokens is None and policy in ("vllm", "orca") and max_model_len:
            budget = max(max_model_len, 2048)
        return SchedulerConfig(policy=policy, max_num_seqs=self.max_num_seqs,  # type: ignore[arg-type]
                               max_num_batched_tokens=budget, block_tokens=self.block_tokens,
                               watermark=self.watermark, preemption=self.preemption, priority=self.priority,
                               prefix_caching=self.prefix_caching)


def serve_options(scheduler: str, options: dict[str, Any]) -> ServeOptions:
    """Validate ``options`` (and the scheduler's name) into :class:`ServeOptions`."""
    problems = []
    if scheduler not in DEFAULT_TOKEN_BUDGET:
        problems.append(f"serve: scheduler: unknown scheduler {scheduler!r}; expected one of "
                        f"{', '.join(DEFAULT_TOKEN_BUDGET)}")
    try:
        opts = ServeOptions(**options)
    except ValidationError as exc:
        problems += validation_problems("serve", exc)
        raise ConfigError(problems) from None
    except TypeError as exc:
        raise ConfigError([*problems, f"serve: {exc}"]) from None
    if problems:
        raise ConfigError(problems)
    opts = opts.model_copy(update={"decoding": parse_decoding(opts.decoding, "serve: decoding"),
                                   "kv_policy": parse_kv_policy(opts.kv_policy, "serve: kv_policy")})
    roles = sorted(p.role for p in opts.pools)
    if opts.pools and roles != ["decode", "prefill"]:
        raise ConfigError([f"serve: pools: a disaggregated run needs one 'prefill' and one 'decode' pool, "
                           f"got {roles}"])
    return opts


__all__ = ["DEFAULT_TOKEN_BUDGET", "Policy", "PoolOptions", "ServeOptions", "serve_options"]
