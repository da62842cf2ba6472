"""Hardware selection for serving: the same model, requests and SLO on several systems,
each costed in a datacenter, ranked, with the constraint that binds each one.

:func:`compare_serving` serves the requests on each system (with the fastest of a few
plans, see :func:`candidate_plans`), puts the throughput into the datacenter model
(:mod:`hwsim.cost.datacenter`: racks, PUE, capex amortised, energy, host and network) and
returns a :class:`ServingComparison`; :func:`rank` orders its rows. The evaluation is a
callable, so a capacity search under an SLO (or measured numbers) can replace the default
single :func:`hwsim.serve` run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from hwsim.arch.system import System
from hwsim.cost.datacenter import Datacenter
from hwsim.datacenter import load_datacenter
from hwsim.engine.serve.metrics import SLO
from hwsim.engine.serve.requests import Requests
from hwsim.errors import ConfigError
from hwsim.ranking_rows import row_for
from hwsim.ranking_search import (
    Evaluator,
    ServingPoint,
    as_point,
    candidate_plans,
    plan_label,
    serve_evaluator,
)
from hwsim.workload.plan import Plan

#: The systems ``hwsim compare --serve`` puts side by side when none is named (issue 17).
DEFAULT_SERVING_ARCHS = ("dgx-b200", "mi300x-8", "hls-gaudi3", "tpu-v6e-8", "cs3-cluster-4", "xeon-8480")
#: Row keys :func:`rank` can order by, and whether larger is better.
RANK_KEYS = {"usd_per_million_tokens": False, "output_tokens_per_s": True, "tokens_per_s_per_chip": True,
             "tokens_per_s_per_rack": True, "tokens_per_s_per_kw": True, "budget_tokens_per_s": True}


@dataclass(frozen=True)
class ServingComparison:
    """Rows of :func:`compare_serving` (one per system, ranked) and how they were made."""

    rows: tuple[dict[str, Any], ...]
    model: str
    requests: str
    datacenter: Datacenter
    rank_by: str
    slo: SLO | None = None
    notes: tuple[str, ...] = ()

    @property
    def recommendation(self) -> str:
        """One sentence: the first fitting row, its cost and why it ranks first."""
        fit = [r for r in self.rows if r.get("fits") and _finite(r.get(self.rank_by))]
        if not fit:
            return "no system could serve the model with a known cost"
        r = fit[0]
        return (f"{r['arch']} ({r['plan']}): {r['usd_per_million_tokens']:.3g} USD per million "
                f"output tokens, "
                f"{r['output_tokens_per_s']:.4g} tok/s on {r['n_chips']} chips; {r['why']}")

    def to_frame(self) -> pd.DataFrame:
        """One row per system, in rank order; units in every column name."""
        return pd.DataFrame([{k: v for k, v in r.items() if k != "plans_tried"} for r in self.rows])

    def to_json(self, indent: int | None = 2) -> str:
        data = {"model": self.model, "requests": self.requests, "rank_by": self.rank_by,
                "datacenter": self.datacenter.model_dump(), "notes": list(self.notes),
                "slo": None if self.slo is None else vars(self.slo), "recommendation": self.recommendation,
                "rows": [_clean(r) for r in self.rows]}
        return json.dumps(data, indent=indent)


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def rank(rows: Iterable[dict[str, Any]], by: str = "usd_per_million_tokens") -> list[dict[str, Any]]:
    """Rows ordered by ``by`` (cheapest or fastest first, :data:`RANK_KEYS`); rows that did
    not fit or lack the figure come last, in their given order. Sets each row's ``rank``."""
    if by not in RANK_KEYS:
        raise ConfigError([f"rank_by: {by!r}: expected one of {', '.join(RANK_KEYS)}"])
    larger = RANK_KEYS[by]
    rows = list(rows)
    good = [r for r in rows if r.get("fits") and _finite(r.get(by))]
    rest = [r for r in rows if r not in good]
    good.sort(key=lambda r: -r[by] if larger else r[by])
    for i, r in enumerate(good + rest, start=1):
        r["rank"] = i if r in good else None
    return good + rest


def compare_serving(archs: Sequence[str | System] = DEFAULT_SERVING_ARCHS, *,
                    model: str | Path = "llama3-70b", requests: Requests | None = None,
                    dtype: str = "bf16", slo: SLO | None = None,
                    datacenter: str | Path | dict[str, Any] | Datacenter | None = None,
                    plan: Plan | None = None,
                    evaluate: Evaluator | None = None, rank_by: str = "usd_per_million_tokens",
                    budget_usd: float | None = None, **serve_options: Any) -> ServingComparison:
    """Serve ``model`` on each of ``archs``, cost each in ``datacenter`` and rank them.

    Parameters
    ----------
    archs : names or Systems
        Chip or system presets; a chip that cannot hold the model is a row saying so.
    requests : Requests, optional
        Default: 128 offline requests of 512 prompt and 128 output tokens (a capped,
        fast run; the comparison's ``requests`` field says so).
    slo : SLO, optional
        With an SLO the throughput used is goodput (tokens of requests meeting it).
    datacenter : preset name, path, mapping or Datacenter
        Default ``"default"`` (``arch_configs/datacenter/default.yaml``).
    plan : Plan, optional
        Use this plan on every system instead of searching :func:`candidate_plans`.
    evaluate : callable(system, plan), optional
        Replaces the default :func:`serve_evaluator` (e.g. a capacity search); returns a
        ServeResult, ServingPoint or a mapping of metrics.
    rank_by : str
        A key of :data:`RANK_KEYS`.
    budget_usd : float, optional
        Capital budget (rented nodes: spend over the lifetime); adds ``budget_tokens_per_s``.
    """

    dc = load_datacenter(datacenter)
    if budget_usd is not None and not (_finite(budget_usd) and budget_usd > 0):
        raise ConfigError([f"budget_usd: must be a number of USD > 0, got {budget_usd!r}"])
    if rank_by not in RANK_KEYS:
        raise ConfigError([f"rank_by: {rank_by!r}: expected one of {', '.join(RANK_KEYS)}"])
    if requests is None:
        requests = Requests.offline(128, 512, 128, 0)
    if evaluate is None:
        evaluate = serve_evaluator(requests, str(model), dtype, slo, **serve_options)
    rows = []
    for arch in archs:
        rows.append(row_for(arch, evaluate, dc, plan, slo is not None, dtype, budget_usd, slo,
                            serve_options.get("weight_dtype")))
    n = len(requests)
    described = f"{n} requests from {requests.source}"
    notes = (f"each system serves the same {n} requests once per plan tried (a capped run: "
             "throughput of a longer steady run may differ)",
             "energy uses the simulated chip power; host and network power are the node presets' nameplate")
    return ServingComparison(tuple(rank(rows, rank_by)), str(model), described, dc, rank_by, slo, notes)


__all__ = ["DEFAULT_SERVING_ARCHS", "RANK_KEYS", "ServingComparison", "ServingPoint", "as_point",
           "candidate_plans", "compare_serving", "plan_label", "rank", "serve_evaluator"]
