"""Published serving results (``data/published/serving.csv``, issue 14) as validation cases.

Every row of the file's ``check`` split becomes a case whose prediction is an
:func:`hwsim.serve` run of the row's configuration; no parameter was fitted on any of
them (role ``check``). The ``heldout`` rows are left for the larger held-out judgement
the issue names and are not in :func:`serving_cases` (``serving_cases("heldout")``
builds them). The file's README states the sources and their assumptions; the mapping
from a row to a run is:

- **Scheduler**: TensorRT-LLM's in-flight batching with its default ``GUARANTEED_NO_EVICT``
  policy admits a request with its whole prompt beside the running decodes and reserves
  its prompt and output up front: hwsim's ``orca`` scheduler, with trtllm-bench's example
  limits (4,096 sequences, 8,192 tokens per iteration) where the row states none, the
  row's ``max_batch`` where it does (MLPerf). ``static_batch`` rows run ``static`` (one
  batch of ``max_batch`` identical requests), ``batch1`` rows one request.
- **KV memory**: TensorRT-LLM sizes its KV cache as a fraction of the memory left
  *free* after the engine is loaded (``kv_cache_free_gpu_mem_fraction``; vLLM and hwsim
  take a fraction of the whole memory): the row's ``kv_mem_fraction`` (0.95 for the
  v0.20 rows, 0.90 for MLPerf), else TensorRT-LLM's default 0.9, converted to hwsim's
  ``memory_fraction`` for the row's model, dtype and plan.
- **Lengths**: fixed, as every TensorRT-LLM row states. MLPerf Llama-2-70B: 295 prompt
  tokens (the OpenOrca subset's mean, an assumption shared with
  :mod:`hwsim.validation.multichip`) and the log's own mean output length (from the
  row's note; 294, the dataset's, for the one row whose log was not read). MLPerf
  Mixtral rows are left out: their dataset's input lengths are in no source read.
- **Precision**: an ``fp8`` row runs the ``fp8-kv`` scheme: FP8 weights and GEMM inputs
  and an FP8 KV cache over a 16-bit model dtype, which the residual stream, norms,
  tensor-parallel all-reduces, embedding and LM head keep. That is what TensorRT-LLM's
  FP8 engines are: v0.14's perf-overview (the rows' source) prints such an engine as
  "Dtype: float16, KV Cache Dtype: FP8, Quantization: FP8" and says FP8 quantization
  sets the KV cache to FP8; its FP8 GEMMs write 16-bit outputs, which the all-reduce
  sums; and ModelOpt's FP8 checkpoints exclude the LM head (``exclude_modules:
  ["lm_head"]``, NVIDIA/TensorRT-Model-Optimizer ``modelopt/torch/export/
  unified_export_hf.py``, commit 04a3a994f13087413f05e0c7c222d28263eb5378). Any other
  dtype is every tensor's.
- **Plan**: the row's ``tp`` and ``replicas``; MLPerf rows that do not state them use
  NVIDIA's own configuration for the GPU (H100: TP2 x 4, H200: TP1 x 8), as the notes say.
- **Arrivals**: ``offline`` rows (and QPS = INF) all at t = 0; ``server_rate`` and
  ``mlperf_server`` rows Poisson at the row's rate with seed 0 (the TensorRT-LLM table
  does not state its arrival process).

Speed (deterministic, each cap stated in the case's name): every :data:`RUN_STRIDE`-th
run configuration of the split in file order is a case (``every_run=True``: all); an
offline run simulates at most :data:`OFFLINE_WAVES` times the requests its replicas hold
at once (the batch the KV cache and ``max_num_seqs`` allow) instead of the run's tens of
thousands: equal-length requests run in lockstep waves, so the first wave is the steady
state; a server run simulates its first :data:`SERVER_REQUESTS` arrivals (an MLPerf
Server run those of :data:`SERVER_WINDOW_S` seconds if more), and its throughput is that
of the steady part of the run (:func:`steady_rates`), as a run of hours measures it.
Rows of one run configuration share one simulation, and runs share op costs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import hwsim
from hwsim.arch.model import Chip
from hwsim.engine.serve.deploy import build_pools
from hwsim.engine.serve.options import serve_options
from hwsim.engine.serve.result import ServeResult
from hwsim.validation.cases import Case, _rows
from hwsim.validation.multichip import MLPERF_INPUT_TOKENS
from hwsim.validation.published import FOLDER, gptj_spec
from hwsim.workload.precision import resolve_precision
from hwsim.workload.spec import ModelSpec

SERVING_CSV = FOLDER / "serving.csv"
#: Throughput groups (output tokens/s, per GPU or whole run; requests/s) by the chips a
#: run used, and the latency group (TTFT, ITL, TPOT), which has no target.
GROUP_ONE_GPU = "serving throughput 1 gpu"
GROUP_MULTI_GPU = "serving throughput multi-gpu node"
GROUP_LATENCY = "serving latency (published)"
THROUGHPUT_METRICS = ("output_tokens_per_s", "output_tokens_per_s_per_gpu", "requests_per_s")

#: Offline runs simulate at most this many waves of the batch their replicas hold.
OFFLINE_WAVES = 1
#: Every RUN_STRIDE-th run configuration of the split (in file order, all its rows) is a
#: case: simulating all of them takes minutes (a wave of a memory-filling batch with 2,048
#: output tokens is thousands of iterations).
RUN_STRIDE = 4
#: Server runs simulate at most this many arrivals; MLPerf Server runs (hours of
#: arrivals) the arrivals of SERVER_WINDOW_S seconds if that is more.
SERVER_REQUESTS = 120
SERVER_WINDOW_S = 15.0
#: Requests of a run whose size is not stated (an MLPerf run of at least 10 minutes): the
#: caps above always apply.
UNSTATED_REQUESTS = 10**7
#: TensorRT-LLM's default ``kv_cache_free_gpu_mem_fraction``: the KV cache takes this
#: share of the memory left free after the engine is loaded.
TRT_FREE_MEMORY_FRACTION = 0.9
#: TensorRT-LLM's runtime limits where a row states none (trtllm-bench's example run).
TRT_MAX_SEQS = 4096
TRT_MAX_TOKENS = 8192
#: Mean output tokens per sample of MLPerf's Llama-2-70B dataset (the FP16 reference run,
#: ``data/published/README.md``), for a row whose log's own mean was not read.
MLPERF_DATASET_OUTPUT_TOKENS = 294
#: The scheme of an FP8 row: FP8 GEMMs and KV cache over a 16-bit model dtype (module docstring).
FP8_SCHEME = "fp8-kv"
#: NVIDIA's MLPerf v4.1 Llama-2-70B configurations, (tp, replicas) by GPU preset.
MLPERF_PLANS = {"dgx-h100": (2, 4), "dgx-h200": (1, 8)}


def steady_rates(result: ServeResult) -> tuple[float, float]:
    """Output tokens/s of a server run between the arrival of its first quarter's last
    request and its last arrival: a long run's steady state, without the warm-up of an
    empty server nor the drain after the last arrival (which a run of hours, as MLPerf's,
    does not see); and completed requests/s, that rate over the mean output length (in a
    steady state every request completes with its output; counting completions in the
    window would miss those that end one end-to-end latency after it)."""
    arrivals = result.requests_in.arrival_s
    start, end = float(arrivals[len(arrivals) // 4]), float(arrivals[-1])
    if end <= start:
        return result.output_tokens_per_s, result.metrics["requests_per_s"]
    tokens = result.record.token_time_s
    rate = int(((tokens > start) & (tokens <= end)).sum()) / (end - start)
    return rate, rate / float(result.requests_in.output_len.mean())


def _throughput(result: ServeResult, run: ServingRun) -> tuple[float, float]:
    if run.rate_per_s > 0:
        return steady_rates(result)
    return result.output_tokens_per_s, result.metrics["requests_per_s"]


_PREDICT: dict[str, Callable[[ServeResult, ServingRun], float]] = {
    "output_tokens_per_s": lambda r, run: _throughput(r, run)[0],
    "output_tokens_per_s_per_gpu": lambda r, run: _throughput(r, run)[0] / run.n_chips,
    "requests_per_s": lambda r, run: _throughput(r, run)[1],
    "ttft_ms": lambda r, run: r.metrics["ttft_mean_s"] * 1e3,
    "ttft_mean_ms": lambda r, run: r.metrics["ttft_mean_s"] * 1e3,
    "ttft_p99_ms": lambda r, run: r.metrics["ttft_p99_s"] * 1e3,
    "itl_mean_ms": lambda r, run: r.metrics["itl_mean_s"] * 1e3,
    "tpot_mean_ms": lambda r, run: r.metrics["tpot_mean_s"] * 1e3,
    "tpot_p99_ms": lambda r, run: r.metrics["tpot_p99_s"] * 1e3,
}


@dataclass(frozen=True)
class ServingRun:
    """One run configuration of ``serving.csv``, as an :func:`hwsim.serve` call."""

    system: str
    model: str
    dtype: str
    tp: int
    replicas: int
    scenario: str
    prompt_len: int
    output_len: int
    n_requests: int
    rate_per_s: float
    max_num_seqs: int
    free_memory_fraction: float

    @property
    def n_chips(self) -> int:
        return self.tp * self.replicas

    def spec(self) -> ModelSpec:
        return gptj_spec() if self.model == "gpt-j-6b" else hwsim.load_model_spec(self.model)

    def precision(self) -> str:
        """The precision scheme of the row's dtype: an FP8 TensorRT-LLM engine quantizes
        the layers' GEMMs (weights and inputs) and the KV cache to FP8 and keeps the rest
        (residual stream, norms, all-reduces, embedding, LM head) in the model's 16-bit
        dtype (module docstring); any other dtype is every tensor's."""
        return FP8_SCHEME if self.dtype == "fp8" else self.dtype

    @property
    def is_static(self) -> bool:
        return self.scenario in ("static_batch", "batch1")

    def _options(self, memory_fraction: float) -> dict[str, Any]:
        options: dict[str, Any] = {"max_num_seqs": self.max_num_seqs, "memory_fraction": memory_fraction,
                                   "replicas": self.replicas}
        if not self.is_static:
            options["max_num_batched_tokens"] = max(TRT_MAX_TOKENS, self.prompt_len + self.output_len)
        return options

    def _pool_kv(self, system: hwsim.System, cache: hwsim.ServeCache, memory_fraction: float) -> Any:
        opts = serve_options("orca", self._options(memory_fraction))
        precision = resolve_precision("serving validation", self.precision())
        pools, _ = build_pools(system, self.spec(), hwsim.Plan(tp=self.tp), precision, opts, cache)
        return pools[0].kv

    def memory_fraction(self, system: hwsim.System, cache: hwsim.ServeCache) -> float:
        """hwsim's ``memory_fraction`` (of the whole memory) that gives the KV cache
        TensorRT-LLM's ``free_memory_fraction`` of the memory left after the weights,
        activations and workspace: ``1 - (1 - f) * free / memory``."""
        kv = self._pool_kv(system, cache, 1.0)
        free = kv.memory_bytes - kv.weights_bytes - kv.activations_bytes - kv.workspace_bytes
        return min(1.0, 1.0 - (1.0 - self.free_memory_fraction) * max(free, 0.0) / kv.memory_bytes)

    def serve(self, system: hwsim.System, cache: hwsim.ServeCache) -> ServeResult:
        """Serve the run's simulated requests (the caps of the module docstring) on ``system``."""
        fraction = self.memory_fraction(system, cache)
        n = self.simulated_requests(system, cache, fraction)
        if self.rate_per_s > 0:
            reqs = hwsim.Requests.poisson(n, self.rate_per_s, self.prompt_len, self.output_len, seed=0)
        else:
            reqs = hwsim.Requests.offline(n, self.prompt_len, self.output_len)
        return hwsim.serve(reqs, system, model=self.spec(), plan=hwsim.Plan(tp=self.tp),
                           precision=self.precision(),
                           scheduler="static" if self.is_static else "orca", cache=cache,
                           **self._options(fraction))

    def server_requests(self) -> int:
        """Arrivals a server run simulates (module docstring)."""
        window = math.ceil(self.rate_per_s * SERVER_WINDOW_S) if self.scenario == "mlperf_server" else 0
        return min(self.n_requests, max(SERVER_REQUESTS, window))

    def simulated_requests(self, system: hwsim.System, cache: hwsim.ServeCache,
                           memory_fraction: float) -> int:
        """The requests simulated (the caps of the module docstring)."""
        if self.is_static:
            return self.n_requests
        if self.rate_per_s > 0:
            return self.server_requests()
        # The batch one replica holds: its KV blocks over a request's, within max_num_seqs.
        kv = self._pool_kv(system, cache, memory_fraction)
        blocks = int(kv.layout.blocks(self.prompt_len + self.output_len))
        held = min(self.max_num_seqs, max(1, kv.n_blocks // blocks))
        return min(self.n_requests, OFFLINE_WAVES * held * self.replicas)


def _mean_output(note: str) -> int:
    """The log's mean output length from a row's note, else the dataset's (README)."""
    m = re.search(r"mean output tokens per sample ([0-9.]+)", note)
    return round(float(m.group(1))) if m else MLPERF_DATASET_OUTPUT_TOKENS


def _number(text: str, default: float) -> float:
    m = re.match(r"\s*([0-9.]+)", text)
    return float(m.group(1)) if m else default


def serving_run(row: dict[str, str]) -> ServingRun | None:
    """The run of a row, or None for a row left out (module docstring)."""
    model = "gpt-j-6b" if row["model"] == "gptj-6b" else row["model"]
    if row["model_status"].startswith("not shipped") and model != "gpt-j-6b":
        return None
    mlperf = row["scenario"].startswith("mlperf")
    if mlperf and model != "llama2-70b":
        return None  # input lengths of the Mixtral dataset are in no source read
    if not mlperf and not row["output_len"].isdigit():
        return None  # a generation rate whose output length the source does not give
    if row["tp"].isdigit():
        tp, replicas = int(row["tp"]), int(row["replicas"])
    elif mlperf:
        tp, replicas = MLPERF_PLANS[row["system"]]
    else:
        return None
    prompt = MLPERF_INPUT_TOKENS if mlperf else int(row["input_len"])
    output = _mean_output(row["note"]) if mlperf else int(row["output_len"])
    static = row["scenario"] in ("static_batch", "batch1")
    seqs = int(row["max_batch"]) if row["max_batch"].isdigit() else (1 if static else TRT_MAX_SEQS)
    server = row["scenario"] in ("server_rate", "mlperf_server")
    if server and not row["rate_per_s"]:
        return None  # a server run whose arrival rate was not read
    rate = float(row["rate_per_s"]) if server else 0.0
    # Unstated run sizes: MLPerf runs last >= 2,400 s (offline: capped at the batch anyway).
    n = seqs if static else int(row["n_requests"]) if row["n_requests"].isdigit() else UNSTATED_REQUESTS
    dtype = "fp8" if mlperf and row["dtype"] == "not stated" else row["dtype"]  # NVIDIA's config
    return ServingRun(row["system"], model, dtype, tp, replicas, row["scenario"], prompt, output, n,
                      rate, seqs, _number(row["kv_mem_fraction"], TRT_FREE_MEMORY_FRACTION))


def _group(row: dict[str, str], run: ServingRun) -> str:
    if row["metric"] not in THROUGHPUT_METRICS:
        return GROUP_LATENCY
    return GROUP_ONE_GPU if run.n_chips == 1 else GROUP_MULTI_GPU


def _size(run: ServingRun) -> str:
    return str(run.n_requests) if run.n_requests < UNSTATED_REQUESTS else "an MLPerf run"


def _name(row: dict[str, str], run: ServingRun) -> str:
    """The case's name: the run, and how much of it is simulated (module docstring)."""
    if run.scenario == "batch1":
        what = "batch 1" if run.max_num_seqs == 1 else f"batch {run.max_num_seqs}"
    elif run.scenario == "static_batch":
        what = f"static batch {run.max_num_seqs}"
    elif run.rate_per_s > 0:
        first = run.server_requests()
        what = f"Poisson {run.rate_per_s:g}/s, first {first} of {_size(run)}"
    else:
        what = f"offline, <= {OFFLINE_WAVES} batches of {_size(run)}"
    plan = f"tp{run.tp}" + (f"x{run.replicas}" if run.replicas > 1 else "")
    lengths = f"{run.prompt_len}/{run.output_len}"
    head = f"{row['source_key']} {run.model} {run.system} {run.dtype} {plan} {lengths}"
    return f"{head} {what}: {row['metric']}"


class _Runs:
    """Each run configuration simulated once, its rows sharing the result; one
    :class:`hwsim.ServeCache` for all of them."""

    def __init__(self) -> None:
        self.cache = hwsim.ServeCache()
        self.systems: dict[str, hwsim.System] = {}
        self.results: dict[ServingRun, ServeResult] = {}

    def result(self, run: ServingRun) -> ServeResult:
        if run not in self.results:
            if run.system not in self.systems:
                self.systems[run.system] = hwsim.load_system(run.system)
            system = self.systems[run.system]
            self.results[run] = run.serve(system, self.cache)
        return self.results[run]

    def predict(self, run: ServingRun, metric: str) -> Callable[[Chip], float]:
        return lambda _: float(_PREDICT[metric](self.result(run), run))


def serving_cases(split: str = "check", every_run: bool = False) -> Iterator[Case]:
    """One case per row of ``serving.csv`` in ``split`` (see the module docstring), for
    every :data:`RUN_STRIDE`-th run configuration, or for all with ``every_run``."""
    runs = _Runs()
    seen: list[ServingRun] = []
    for row in _rows(SERVING_CSV):
        if row["split"] != split:
            continue
        run = serving_run(row)
        if run is None:
            continue
        if run not in seen:
            seen.append(run)
        if not every_run and seen.index(run) % RUN_STRIDE:
            continue
        source = f"[{row['source_key']}] {row['reference']}"
        yield Case(_group(row, run), _name(row, run), run.system, float(row["value"]), row["unit"],
                   runs.predict(run, row["metric"]), source, "check")
