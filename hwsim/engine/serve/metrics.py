"""Serving metrics from what the engine records: per-request latencies, percentiles,
throughput, goodput under an SLO, Little's law, time-weighted iteration means, energy.

Definitions (SERVING.md "say which definition every number uses")
------------------------------------------------------------------
- **queue_s** = first scheduled - arrival (waiting before any of the request ran).
- **ttft_s** = first output token - arrival (queueing + prefill, chunked or not).
- **e2e_s** = last output token (finish) - arrival.
- **tpot_s** = (e2e_s - ttft_s) / (output_len - 1), per request; NaN when output_len is 1
  (no decode step). Its percentiles are over requests (each request weighs one), as
  MLPerf's "time to output token" and vLLM's TPOT are.
- **itl** (inter-token latency) = the gaps between consecutive output tokens of one
  request (the first token's TTFT is not a gap). ``itl_*`` percentiles are over all gaps
  of all requests (each token weighs one), so a long request counts more than in TPOT;
  ``itl_max_s`` in the request frame is each request's worst gap.
- Percentiles are numpy's default (linear interpolation between order statistics),
  over completed requests only; NaN when there is nothing to take them over.
- **duration_s** = last completion - first arrival; ``output_tokens_per_s`` and
  ``total_tokens_per_s`` (prompt + output) and ``requests_per_s`` divide the completed
  requests' totals by it.
- **Goodput** counts the completed requests whose TTFT, TPOT and E2E are each within the
  :class:`SLO`'s limits (a missing limit always holds; TPOT of a one-token request
  holds). ``slo_met`` is the run-level, MLPerf-style test: the SLO's percentile of TTFT,
  of TPOT and of E2E each within its limit.
- **Little's law**: ``mean_in_system`` is the time average, over [first arrival, last
  completion], of the number of requests arrived and not finished (the step function of
  the completed requests' arrivals and finishes); it is compared with the arrival rate
  (``Requests.mean_rate_per_s``, (n - 1) / arrival span) times the mean E2E. They differ
  by the edge effects of a finite run (its drain after the last arrival), so only a long
  steady run makes the relative difference small; NaN for an offline run.
- Iteration means (batch size, queue length, KV blocks) are weighted by each
  iteration's duration and taken over busy time (the time covered by iterations);
  ``busy_fraction`` says how much of the run that is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from hwsim.engine.serve.requests import Requests
from hwsim.engine.serve.validate import config_error

#: Columns the engine gives :attr:`EngineRecord.iterations`, one row per iteration.
ITERATION_COLUMNS = ("start_s", "end_s", "n_prefill_tokens", "n_decode_tokens", "batch_size",
                     "queue_len", "kv_blocks_used", "kv_blocks_total", "energy_j")

PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class SLO:
    """Latency limits a request must meet to count towards goodput.

    Parameters
    ----------
    ttft_s, tpot_s, e2e_s : float, optional
        Limits in seconds; None means no limit.
    percentile : float
        For the run-level test ``slo_met`` (MLPerf Server uses 99).
    """

    ttft_s: float | None = None
    tpot_s: float | None = None
    e2e_s: float | None = None
    percentile: float = 99.0

    def __post_init__(self) -> None:
        for name in ("ttft_s", "tpot_s", "e2e_s"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value) or value <= 0):
                raise config_error("SLO", name, f"must be a finite number of seconds > 0, got {value!r}")
        p = self.percentile
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 100:
            raise config_error("SLO", "percentile", f"must be in (0, 100], got {p!r}")


@dataclass(frozen=True, eq=False)
class EngineRecord:
    """What the engine recorded for a run, indexed like its :class:`Requests`.

    Parameters
    ----------
    first_scheduled_s, first_token_s, finish_s : ndarray of float, shape (n,)
        Per request: when it first entered a batch, when its first output token and its
        last output token were produced (s). NaN for a request that did not complete.
    n_preemptions : ndarray of int, shape (n,)
        Times each request was preempted (recomputed or swapped).
    token_request, token_time_s : ndarray, shape (n_tokens,)
        One entry per output token produced, in time order: the request it belongs to
        and when it was produced (s). A preempted request's tokens count once, when
        first produced.
    iterations : DataFrame, optional
        One row per iteration with :data:`ITERATION_COLUMNS`.
    """

    first_scheduled_s: np.ndarray
    first_token_s: np.ndarray
    finish_s: np.ndarray
    n_preemptions: np.ndarray
    token_request: np.ndarray
    token_time_s: np.ndarray
    iterations: pd.DataFrame | None = field(default=None)

    def __post_init__(self) -> None:
        n = np.shape(self.first_scheduled_s)[0]
        for name in ("first_scheduled_s", "first_token_s", "finish_s", "n_preemptions"):
            if np.shape(getattr(self, name)) != (n,):
                raise ValueError(f"EngineRecord.{name} must have one entry per request ({n})")
        if np.shape(self.token_request) != np.shape(self.token_time_s) or np.ndim(self.token_request) != 1:
            raise ValueError("EngineRecord.token_request and token_time_s must be 1-D and equally long")
        times = np.asarray(self.token_time_s, dtype=np.float64)
        if times.size and np.any(np.diff(times) < 0):
            raise ValueError("EngineRecord.token_time_s must be in time order")
        req = np.asarray(self.token_request)
        if req.size and (req.min() < 0 or req.max() >= n):
            raise ValueError(f"EngineRecord.token_request must index requests 0..{n - 1}")
        if self.iterations is not None:
            missing = [c for c in ITERATION_COLUMNS if c not in self.iterations.columns]
            if missing:
                raise ValueError(f"EngineRecord.iterations lacks column(s) {', '.join(missing)}")

    @classmethod
    def from_tokens(cls, first_scheduled_s: Any, n_preemptions: Any, token_request: Any,
                    token_time_s: Any, iterations: pd.DataFrame | None = None) -> EngineRecord:
        """A record whose first-token and finish times are read off the token events (a
        request with no token gets NaN for both)."""
        first_scheduled = np.asarray(first_scheduled_s, dtype=np.float64)
        n = first_scheduled.shape[0]
        req = np.asarray(token_request, dtype=np.int64)
        times = np.asarray(token_time_s, dtype=np.float64)
        first, last = np.full(n, np.nan), np.full(n, np.nan)
        # Times are ascending, so the first write per request wins in reversed order.
        first[req[::-1]] = times[::-1]
        last[req] = times
        return cls(first_scheduled, first, last, np.asarray(n_preemptions, dtype=np.int64), req,
                   times, iterations)


def _stable_order(keys: np.ndarray, n_keys: int) -> np.ndarray:
    """A stable argsort of non-negative int keys below ``n_keys``. numpy radix-sorts 16-bit
    keys in linear time (several times faster than its int64 timsort on millions of token
    events), so keys are sorted 16 bits at a time, least significant first."""
    if n_keys <= 1 << 16:
        return np.argsort(keys.astype(np.uint16), kind="stable")
    order = np.argsort((keys & 0xFFFF).astype(np.uint16), kind="stable")
    shift = 16
    while n_keys > 1 << shift:
        digit = ((keys[order] >> shift) & 0xFFFF).astype(np.uint16)
        order = order[np.argsort(digit, kind="stable")]
        shift += 16
    return order


def _token_gaps(requests: Requests, record: EngineRecord) -> tuple[np.ndarray, np.ndarray]:
    """All inter-token gaps (s) and each request's largest gap (NaN if it has none)."""
    n = len(requests)
    req = np.asarray(record.token_request, dtype=np.int64)
    times = np.asarray(record.token_time_s, dtype=np.float64)
    # A stable sort by request keeps each request's tokens in time order.
    order = _stable_order(req, n)
    req_sorted, t_sorted = req[order], times[order]
    same = req_sorted[1:] == req_sorted[:-1]
    gaps = np.diff(t_sorted)[same]
    owners = req_sorted[1:][same]
    itl_max = np.full(n, np.nan)
    if gaps.size:
        # Each request's gaps are contiguous: one reduceat over the segment starts.
        starts = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])
        itl_max[owners[starts]] = np.maximum.reduceat(gaps, starts)
    return gaps, itl_max


def _check_tokens(requests: Requests, record: EngineRecord) -> None:
    """Every completed request has exactly ``output_len`` token events."""
    if np.shape(record.first_scheduled_s) != (len(requests),):
        raise ValueError(f"the record has {np.shape(record.first_scheduled_s)[0]} requests, "
                         f"the stream {len(requests)}")
    counts = np.bincount(np.asarray(record.token_request, dtype=np.int64), minlength=len(requests))
    done = np.isfinite(np.asarray(record.finish_s, dtype=np.float64))
    wrong = np.flatnonzero(done & (counts != requests.output_len))
    if wrong.size:
        i = int(wrong[0])
        raise ValueError(f"request {i} completed with {counts[i]} token events for output_len "
                         f"{requests.output_len[i]} ({wrong.size} requests disagree)")


def request_frame(requests: Requests, record: EngineRecord, slo: SLO | None = None) -> pd.DataFrame:
    """One row per request: ``request, arrival_s, prompt_len, output_len, queue_s, ttft_s,
    tpot_s, e2e_s, itl_max_s, n_preemptions, completed, met_slo`` (see the module
    docstring for each definition). Without an SLO, ``met_slo`` is ``completed``."""
    return _build(requests, record, slo)[0]


def _build(requests: Requests, record: EngineRecord, slo: SLO | None) -> tuple[pd.DataFrame, np.ndarray]:
    """The request frame and all inter-token gaps."""
    _check_tokens(requests, record)
    arrival = requests.arrival_s
    ttft = np.asarray(record.first_token_s, dtype=np.float64) - arrival
    e2e = np.asarray(record.finish_s, dtype=np.float64) - arrival
    decode_steps = (requests.output_len - 1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(decode_steps > 0, (e2e - ttft) / decode_steps, np.nan)
    gaps, itl_max = _token_gaps(requests, record)
    completed = np.isfinite(e2e)
    frame = pd.DataFrame({
        "request": np.arange(len(requests)), "arrival_s": arrival,
        "prompt_len": requests.prompt_len, "output_len": requests.output_len,
        "queue_s": np.asarray(record.first_scheduled_s, dtype=np.float64) - arrival,
        "ttft_s": ttft, "tpot_s": tpot, "e2e_s": e2e, "itl_max_s": itl_max,
        "n_preemptions": np.asarray(record.n_preemptions, dtype=np.int64), "completed": completed,
    })
    frame["met_slo"] = completed & _meets(frame, slo)
    return frame, gaps


def _meets(frame: pd.DataFrame, slo: SLO | None) -> np.ndarray:
    ok = np.ones(len(frame), dtype=bool)
    if slo is None:
        return ok
    for column, limit in (("ttft_s", slo.ttft_s), ("tpot_s", slo.tpot_s), ("e2e_s", slo.e2e_s)):
        if limit is not None:
            values = frame[column].to_numpy()
            # A one-token request has no TPOT (NaN) and so cannot break a TPOT limit.
            ok &= (values <= limit) | (np.isnan(values) & (column == "tpot_s"))
    return ok


def _stats(prefix: str, values: np.ndarray) -> dict[str, float]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {f"{prefix}_mean_s": math.nan, **{f"{prefix}_p{p}_s": math.nan for p in PERCENTILES}}
    pct = np.percentile(values, PERCENTILES)
    return {f"{prefix}_mean_s": float(values.mean()),
            **{f"{prefix}_p{p}_s": float(v) for p, v in zip(PERCENTILES, pct, strict=True)}}


def littles_law(arrival_s: np.ndarray, finish_s: np.ndarray, arrival_rate_per_s: float) -> dict[str, float]:
    """Little's law on a finite trace (completed requests only).

    Returns ``mean_in_system`` (time average of the arrived-minus-finished step function
    over [first arrival, last finish]), ``arrival_rate_x_mean_e2e`` and
    ``littles_law_rel_diff`` = (first - second) / second.
    """
    start, end = float(arrival_s.min()), float(finish_s.max())
    times = np.concatenate([arrival_s, finish_s])
    steps = np.concatenate([np.ones(arrival_s.size), -np.ones(finish_s.size)])
    order = np.argsort(times, kind="stable")
    times, level = times[order], np.cumsum(steps[order])
    area = float(np.sum(level[:-1] * np.diff(times)))
    mean_in_system = area / (end - start) if end > start else math.nan
    lam_w = arrival_rate_per_s * float(np.mean(finish_s - arrival_s))
    rel = (mean_in_system - lam_w) / lam_w if lam_w > 0 and math.isfinite(lam_w) else math.nan
    return {"mean_in_system": mean_in_system, "arrival_rate_x_mean_e2e": lam_w,
            "littles_law_rel_diff": rel}


def iteration_means(iterations: pd.DataFrame) -> dict[str, float]:
    """Duration-weighted means over busy time of an iterations frame
    (:data:`ITERATION_COLUMNS`): ``batch_size_mean``, ``queue_len_mean``,
    ``kv_blocks_used_mean``, ``kv_usage_mean`` and ``kv_usage_max`` (fractions of the
    blocks), ``busy_s`` and ``energy_j`` (sums), ``n_iterations``."""
    dur = (iterations["end_s"] - iterations["start_s"]).to_numpy(dtype=np.float64)
    if np.any(dur < 0):
        raise ValueError("iterations: end_s before start_s")
    busy = float(dur.sum())
    usage = (iterations["kv_blocks_used"] / iterations["kv_blocks_total"]).to_numpy(dtype=np.float64)

    def mean(x: Any) -> float:
        return float(np.dot(np.asarray(x, dtype=np.float64), dur) / busy) if busy > 0 else math.nan

    return {"n_iterations": float(len(iterations)), "busy_s": busy,
            "batch_size_mean": mean(iterations["batch_size"]),
            "queue_len_mean": mean(iterations["queue_len"]),
            "kv_blocks_used_mean": mean(iterations["kv_blocks_used"]),
            "kv_usage_mean": mean(usage), "kv_usage_max": float(usage.max()) if usage.size else math.nan,
            "energy_j": float(iterations["energy_j"].sum())}


def energy_per_output_token_j(energy_j: float, n_output_tokens: int) -> float:
    """Energy per output token (J): the run's energy over its output tokens."""
    return energy_j / n_output_tokens if n_output_tokens > 0 else math.nan


def average_power_w(energy_j: float, duration_s: float) -> float:
    """Average power (W) over the run: energy / duration."""
    return energy_j / duration_s if duration_s > 0 else math.nan


def usd_per_million_tokens(duration_s: float, n_tokens: int, usd_per_chip_hour: float,
                           n_chips: int) -> float:
    """Cost of a million tokens when ``n_chips`` rented at ``usd_per_chip_hour`` produce
    ``n_tokens`` in ``duration_s``: chips x price x hours / tokens x 1e6."""
    return n_chips * usd_per_chip_hour * duration_s / 3600.0 / n_tokens * 1e6 if n_tokens > 0 else math.nan


def summarize(requests: Requests, record: EngineRecord, slo: SLO | None = None, *,
              n_chips: int | None = None, usd_per_chip_hour: float | None = None) -> dict[str, float]:
    """The run summary; every key carries its unit (definitions in the module docstring).

    Energy keys appear when the record has iterations; cost keys when ``n_chips`` and
    ``usd_per_chip_hour`` are given; goodput and ``slo_met`` when an SLO is.
    """
    frame, gaps = _build(requests, record, slo)
    done = frame[frame["completed"]]
    out: dict[str, float] = {"n_requests": float(len(frame)), "n_completed": float(len(done)),
                             "n_preemptions": float(frame["n_preemptions"].sum())}
    for prefix in ("ttft", "tpot", "e2e", "queue"):
        out.update(_stats(prefix, done[f"{prefix}_s"].to_numpy()))
    out.update(_stats("itl", gaps))
    duration = float((done["arrival_s"] + done["e2e_s"]).max() - frame["arrival_s"].min()) \
        if len(done) else math.nan
    out_tokens = int(done["output_len"].sum())
    total_tokens = out_tokens + int(done["prompt_len"].sum())
    rate = 1.0 / duration if duration > 0 else math.nan
    out.update({"duration_s": duration, "output_tokens_per_s": out_tokens * rate,
                "total_tokens_per_s": total_tokens * rate, "requests_per_s": len(done) * rate})
    if slo is not None:
        good = done[done["met_slo"]]
        out.update({"goodput_requests_per_s": len(good) * rate,
                    "goodput_output_tokens_per_s": float(good["output_len"].sum()) * rate,
                    "slo_attainment": len(good) / len(frame),
                    "slo_met": float(_run_meets(done, slo))})
    if len(done):
        arrivals = done["arrival_s"].to_numpy()
        span = float(arrivals.max() - arrivals.min())
        # Requests.mean_rate_per_s over the completed requests: (n - 1) / arrival span.
        arrival_rate = (arrivals.size - 1) / span if span > 0 else math.nan
        out.update(littles_law(arrivals, arrivals + done["e2e_s"].to_numpy(), arrival_rate))
    if record.iterations is not None and len(record.iterations):
        means = iteration_means(record.iterations)
        out.update(means)
        out["busy_fraction"] = means["busy_s"] / duration if duration > 0 else math.nan
        out["energy_per_output_token_j"] = energy_per_output_token_j(means["energy_j"], out_tokens)
        out["average_power_w"] = average_power_w(means["energy_j"], duration)
    if n_chips is not None and usd_per_chip_hour is not None:
        out["usd_per_million_output_tokens"] = usd_per_million_tokens(duration, out_tokens,
                                                                      usd_per_chip_hour, n_chips)
        out["usd_per_million_total_tokens"] = usd_per_million_tokens(duration, total_tokens,
                                                                     usd_per_chip_hour, n_chips)
    return out


def _run_meets(done: pd.DataFrame, slo: SLO) -> bool:
    """MLPerf-style: the SLO's percentile of each limited metric within its limit."""
    for column, limit in (("ttft_s", slo.ttft_s), ("tpot_s", slo.tpot_s), ("e2e_s", slo.e2e_s)):
        values = done[column].to_numpy()
        values = values[np.isfinite(values)]
        if limit is not None and values.size and np.percentile(values, slo.percentile) > limit:
            return False
    return len(done) > 0
