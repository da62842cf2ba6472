"""The result of a serving run: per-request and per-iteration frames, and the summary.

Energy is the iterations' dynamic energy (every chip of every replica, interconnect
included), plus idle power of every chip the run uses over its whole duration (first
arrival to last completion), plus the KV transfers between disaggregated pools.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from hwsim.engine.serve.metrics import SLO, EngineRecord, request_frame, summarize
from hwsim.engine.serve.requests import Requests
from hwsim.engine.serve.run import ServeRun

ITERATION_FRAME_COLUMNS = ("server", "start_s", "end_s", "n_prefill_tokens", "n_decode_tokens", "batch_size",
                           "queue_len", "kv_blocks_used", "kv_blocks_total", "energy_j")


def serve_result(run: ServeRun, requests: Requests, scheduler: str, model: str, slo: SLO | None,
                 usd_per_chip_hour: float | None, config: dict[str, Any], warnings: list[str],
                 link_pj_per_bit: float | None = None) -> ServeResult:
    """Assemble the result of ``run`` (energy rules: module docstring); ``link_pj_per_bit``:
    the energy of the link between the pools, where the system names one (a mixed system's
    ``pool_link``)."""
    from hwsim.engine.serve.decoding import decoding_figures

    record = engine_record(run)
    finished = record.finish_s[np.isfinite(record.finish_s)]
    duration = float(finished.max() - requests.arrival_s.min()) if finished.size else 0.0
    dynamic = float(sum(row[-1] for row in run.log))
    idle = sum(p.system.chip.idle_power_w * p.n_chips for p in run.pools) * duration
    transfer = 0.0
    if run.transferred_bytes:
        fabrics = [p.system.fabrics[0] for p in run.pools if p.system.fabrics]
        pj_per_bit = link_pj_per_bit if link_pj_per_bit is not None else max(
            (f.link.energy_pj_per_bit for f in fabrics), default=0.0)
        transfer = run.transferred_bytes * 8 * pj_per_bit * 1e-12
    n_chips = sum(p.n_chips for p in run.pools)
    arch = " + ".join(dict.fromkeys(p.system.name for p in run.pools))
    return ServeResult(arch, model, scheduler, n_chips, requests, record, dynamic + idle + transfer,
                       {"dynamic_j": dynamic, "idle_j": idle, "transfer_j": transfer}, config, slo,
                       usd_per_chip_hour, tuple(warnings), run.table.replica.copy(),
                       run.table.prefix_hits.copy(), decoding_figures(run.servers, run.log))


def engine_record(run: ServeRun) -> EngineRecord:
    """What the engine recorded, in the form :mod:`~hwsim.engine.serve.metrics` reads."""
    t = run.table

    def times(values: np.ndarray) -> np.ndarray:
        return np.where(values >= 0, values, np.nan)

    token_request, token_time = t.token_events()
    iterations = pd.DataFrame(run.log, columns=list(ITERATION_FRAME_COLUMNS))
    return EngineRecord(times(t.first_scheduled_s), times(t.first_token_s), times(t.finish_s),
                        t.n_preemptions.copy(), token_request, token_time, iterations)


@dataclass(frozen=True)
class ServeResult:
    """What :func:`hwsim.serve` produced.

    Attributes
    ----------
    arch, model, scheduler : str
    n_chips : int
        Chips the run's replicas use (idle chips of the system are not counted).
    requests_in : Requests
        The requests served.
    record : EngineRecord
        What the engine recorded (token events, timestamps, iterations).
    energy_j : float
        Dynamic energy of every iteration + idle energy of every used chip over the run
        + KV transfers between pools, in J.
    energy_breakdown_j : dict
        ``dynamic_j``, ``idle_j``, ``transfer_j``.
    config : dict
        Scheduler options, plans, replicas and the KV cache of each pool (blocks, bytes).
    slo : SLO or None
    warnings : tuple of str
        What was assumed or simplified.
    """

    arch: str
    model: str
    scheduler: str
    n_chips: int
    requests_in: Requests = field(repr=False)
    record: EngineRecord = field(repr=False)
    energy_j: float
    energy_breakdown_j: dict[str, float]
    config: dict[str, Any] = field(default_factory=dict)
    slo: SLO | None = None
    usd_per_chip_hour: float | None = None
    warnings: tuple[str, ...] = ()
    replica_of: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64), repr=False)
    prefix_hit_tokens: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64), repr=False)
    decoding: dict[str, float] = field(default_factory=dict)
    """The decoding strategy's figures (``accepted_tokens_per_step``, ``draft_time_share``...)."""

    @cached_property
    def requests(self) -> pd.DataFrame:
        """One row per request: ``arrival_s, prompt_len, output_len, queue_s, ttft_s,
        tpot_s, e2e_s, itl_max_s, n_preemptions, met_slo, completed`` (metrics module),
        plus the ``replica`` (server) that last served it and its ``prefix_hit_tokens``
        (prompt tokens found in a cached prefix)."""
        frame = request_frame(self.requests_in, self.record, self.slo)
        if self.replica_of.size == len(frame):
            frame["replica"] = self.replica_of
        if self.prefix_hit_tokens.size == len(frame):
            frame["prefix_hit_tokens"] = self.prefix_hit_tokens
        return frame

    @property
    def iterations(self) -> pd.DataFrame:
        """One row per iteration of every replica: :data:`ITERATION_FRAME_COLUMNS`."""
        frame = self.record.iterations
        return frame.copy() if frame is not None else pd.DataFrame(columns=list(ITERATION_FRAME_COLUMNS))

    @cached_property
    def metrics(self) -> dict[str, float]:
        """The run summary (units in every key); energy keys count idle and transfers."""
        out = summarize(self.requests_in, self.record, self.slo, n_chips=self.n_chips,
                        usd_per_chip_hour=self.usd_per_chip_hour)
        duration = out.get("duration_s", math.nan)
        tokens = self.requests_in.output_len[np.isfinite(self.record.finish_s)].sum()
        out["energy_j"] = self.energy_j
        out |= {f"energy_{k}": v for k, v in self.energy_breakdown_j.items()}
        out["energy_per_output_token_j"] = self.energy_j / tokens if tokens else math.nan
        out["average_power_w"] = self.energy_j / duration if duration and duration > 0 else math.nan
        out["output_tokens_per_s_per_chip"] = out["output_tokens_per_s"] / self.n_chips
        prompt = float(self.requests_in.prompt_len.sum())
        out["prefix_hit_rate"] = float(self.prefix_hit_tokens.sum()) / prompt if prompt else 0.0
        out |= self.decoding
        return out

    @property
    def output_tokens_per_s(self) -> float:
        """Output tokens per second over the whole run."""
        return float(self.metrics["output_tokens_per_s"])

    def summary(self) -> dict[str, Any]:
        """Names, the metrics and the configuration as one flat-ish dict."""
        return {"arch": self.arch, "model": self.model, "scheduler": self.scheduler,
                "n_chips": self.n_chips, **self.metrics, "config": self.config,
                "warnings": list(self.warnings)}

    def to_json(self, indent: int | None = 2, include_requests: bool = False) -> str:
        """The summary (and, with ``include_requests``, every request row) as JSON; NaN
        (a percentile over nothing, TPOT of one-token requests) is ``null``."""
        data = self.summary()
        if include_requests:
            data["requests"] = json.loads(self.requests.to_json(orient="records"))
        return json.dumps(_finite(data), indent=indent, default=_jsonable)


def _finite(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float | np.floating) and not math.isfinite(value):
        return None
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
