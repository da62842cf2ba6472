"""Published figures of the presets beyond the H100 family, as check rows (issue #17).

Every row of ``data/published/machines.csv`` names its system preset, model, dtype,
parallelism, lengths and batch, the published value with its exact source, and the
assumptions needed to turn it into an hwsim workload (``note``). No preset number was
tuned to any of them (role ``check``). The kinds of row:

- ``static_batch``: vendor throughput tables (Intel's Gaudi 2 and Gaudi 3 pages, Oracle's
  MI300X vLLM runs): one batch of ``batch`` requests of ``input_len`` prompt tokens and
  ``output_len`` output tokens; output tokens/s = ``batch x output_len / (t_prefill +
  output_len x t_decode)``, the decode step taken at the mean context ``input_len +
  output_len / 2``.
- ``mlperf_offline``: MLPerf Offline throughput, as ``multichip.py`` computes it: a
  memory-filling batch per replica, its steady state.
- ``trtllm_offline``: TensorRT-LLM's ``trtllm-bench`` maximum throughput, the same with the
  prompts prefilled in iterations of at most 8,192 tokens (long prompts do not fit at once).
- ``mlperf_offline_beam``: the same with a beam search: each sample decodes ``beams``
  sequences after one prefill of its prompt (GPT-J in MLPerf Inference). ``batch`` is the
  submission's static batch of samples per replica, or 0 for a memory-filling batch;
  ``output_len`` is the decode steps a sample takes: the benchmark's ``max_new_tokens``
  (128) where a static batch runs until its longest sample ends, the mean generated
  length (69, :data:`GPTJ_MEAN_NEW_TOKENS`) where in-flight batching refills a finished
  sample's slots.
- ``mlperf_singlestream_beam``: MLPerf SingleStream (edge): one sample at a time, its
  latency in seconds = one batch-1 prefill of ``input_len`` tokens plus ``output_len``
  decode steps of the ``beams`` sequences at the mean context (the row's value is the
  log's mean latency and a sample alone stops at its own end, so the mean lengths apply).
- ``train_fsdp``: training throughput per chip (MaxText's tiering table): one step of
  ``batch`` sequences of ``input_len`` tokens, fully sharded over ``dp`` chips (ZeRO-3) with
  activation recompute; tokens per step / step time / chips.
- ``per_user``: the rate one user sees from an SRAM-resident deployment (Cerebras, Groq):
  one over a batch-1 decode step at ``input_len`` tokens of context, on the plan
  :func:`hwsim.planner.rank_plans` finds fastest (how such services are deployed).
- ``prefill_batch1``: the time to first token of one request alone, in seconds: one
  batch-1 prefill of ``input_len`` prompt tokens (Qualcomm AI Hub's on-device TTFT).

Weights, activations and KV cache share the row's ``dtype`` unless its ``kv_dtype``
column names the KV cache's own (the TensorRT-LLM FP4 rows: their checkpoints keep an
fp8 KV cache) or its ``weight_dtype`` the weights' (weight-only quantization such as
Qualcomm's w4a16: the GEMMs run at the activation rate on weights read packed;
``docs/precision.md``); where a source's dtypes are unknown, the row's note says what is
assumed. ``weight_dtype`` is read by the ``per_user``, ``prefill_batch1`` and beam kinds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from functools import cache

import hwsim
from hwsim.arch.model import Chip
from hwsim.validation.cases import DATA, Case, _role, _rows
from hwsim.validation.multichip import max_batch_per_replica, offline_tokens_per_s, static_batch_tokens_per_s

FOLDER = DATA / "published"
CSV = FOLDER / "machines.csv"

#: One group per chip family, so each preset's agreement reads on its own line.
GROUPS = {
    "gaudi2": "gaudi2 llm batch throughput (published)",
    "hls-gaudi2": "gaudi2 llm batch throughput (published)",
    "gaudi3": "gaudi3 llm batch throughput (published)",
    "hls-gaudi3": "gaudi3 llm batch throughput (published)",
    "mi300x-8": "mi300x llm batch latency (published)",
    "b200-sxm": "blackwell mlperf offline (published)",
    "dgx-b200": "blackwell mlperf offline (published)",
    "gb200-nvl72": "blackwell mlperf offline (published)",
    "tpu-v5e-4": "tpu-v5e mlperf offline (published)",
    "tpu-v6e-256": "tpu-v6e training throughput (published)",
    "tpu-v5p-512": "tpu-v5p training throughput (published)",
    "wse3": "cerebras per-user decode (published)",
    "cs3-cluster-4": "cerebras per-user decode (published)",
    "groq-rack": "groq per-user decode (published)",
    "groq-576": "groq per-user decode (published)",
    "l4": "l4 mlperf offline (published)",
    "l40s-8": "l40s mlperf offline (published)",
    "xeon-8480-2s": "xeon mlperf offline (published)",
    "jetson-agx-orin": "jetson orin mlperf single-stream (published)",
    "apple-m2-ultra": "apple m2 ultra per-user decode (published)",
    "wormhole-n150": "tenstorrent wormhole per-user decode (published)",
    "trn2-16": "trainium2 per-user decode (published)",
    "mi325x-8": "mi325x mlperf offline (published)",
    "snapdragon-8-gen3": "snapdragon 8 gen 3 on-device llm (published)",
}
#: Rows of these kinds form a group of their own per family (the group name's "mlperf" replaced).
KIND_GROUPS = {"trtllm_offline": "trtllm-bench offline"}
KINDS = ("static_batch", "mlperf_offline", "trtllm_offline", "mlperf_offline_beam",
         "mlperf_singlestream_beam", "per_user", "prefill_batch1", "train_fsdp")


def _plan(row: dict[str, str]) -> hwsim.Plan:
    return hwsim.Plan(tp=int(row["tp"]), pp=int(row["pp"]), dp=int(row["dp"]))


#: MLPerf GPT-J's mean generated tokens per sample (beam search of 4, early stopping,
#: 30 to 128 new tokens): mlcommons/inference loadgen/mlperf.conf
#: ``gptj.*.token_latency_scaling_factor = 69`` (added by commit fb65dde1, PR #1699).
GPTJ_MEAN_NEW_TOKENS = 69
#: Its ``max_new_tokens`` (mlcommons/inference language/gpt-j/backend_PyTorch.py ``gen_kwargs``).
GPTJ_MAX_NEW_TOKENS = 128

#: Prompt tokens per prefill iteration (TensorRT-LLM's default ``max_num_tokens``).
PREFILL_CHUNK_TOKENS = 8192


def chunked_offline_tokens_per_s(system_name: str, model: str, plan: hwsim.Plan, dtype: str, input_len: int,
                                 output_len: int, kv_dtype: str | None = None) -> float:
    """Offline throughput as :func:`offline_tokens_per_s`, but the memory-filling batch's
    prompts are prefilled in iterations of at most :data:`PREFILL_CHUNK_TOKENS` tokens per
    replica (whole prompts; one prompt when a prompt is longer), as an engine schedules them;
    the KV cache in ``kv_dtype`` where the source names one apart from ``dtype``."""
    system = hwsim.load_system(system_name)
    per_replica = max_batch_per_replica(system, plan, model, input_len + output_len, dtype, kv_dtype=kv_dtype)
    per_chunk = min(per_replica, max(1, PREFILL_CHUNK_TOKENS // input_len))
    chunks = math.ceil(per_replica / per_chunk)
    prefill = hwsim.load_workload(model, phase="prefill", batch=plan.dp * per_chunk, prompt_len=input_len,
                                  dtype=dtype, kv_dtype=kv_dtype)
    decode = hwsim.load_workload(model, phase="decode", batch=plan.dp * per_replica,
                                 context_len=input_len + output_len // 2, dtype=dtype, kv_dtype=kv_dtype)
    t_prefill = chunks * hwsim.simulate(prefill, system, plan=plan).latency_s
    t_decode = hwsim.simulate(decode, system, plan=plan).latency_s
    return plan.dp * per_replica * output_len / (t_prefill + output_len * t_decode)


def beam_samples_per_s(system_name: str, model: str, plan: hwsim.Plan, dtype: str, input_len: int,
                       output_len: int, beams: int, samples_per_replica: int = 0,
                       weight_dtype: str | None = None, kv_dtype: str | None = None) -> float:
    """Offline samples/s with a beam search of ``beams``: a batch of ``samples_per_replica``
    samples per replica (``beams`` sequences each), or where 0 a memory-filling batch of
    sequences (a multiple of ``beams``); one prefill per sample, then ``output_len`` decode
    steps of every sequence at the mean context. The weights in ``weight_dtype`` and the
    KV cache in ``kv_dtype`` where given, else in ``dtype``."""
    system = hwsim.load_system(system_name)
    if samples_per_replica > 0:
        per_replica = samples_per_replica * beams
    else:
        per_replica = max_batch_per_replica(system, plan, model, input_len + output_len, dtype, step=beams,
                                            kv_dtype=kv_dtype)
    sequences = plan.dp * per_replica
    samples = sequences // beams
    dtypes = {"dtype": dtype, "weight_dtype": weight_dtype, "kv_dtype": kv_dtype}
    prefill = hwsim.load_workload(model, phase="prefill", batch=samples, prompt_len=input_len, **dtypes)
    decode = hwsim.load_workload(model, phase="decode", batch=sequences,
                                 context_len=input_len + output_len // 2, **dtypes)
    t_prefill = hwsim.simulate(prefill, system, plan=plan).latency_s
    t_decode = hwsim.simulate(decode, system, plan=plan).latency_s
    return samples / (t_prefill + output_len * t_decode)


def singlestream_beam_latency_s(system: str, model: str, dtype: str, input_len: int, output_len: int,
                                beams: int, weight_dtype: str | None = None, kv_dtype: str | None = None
                                ) -> float:
    """Latency (s) of one sample alone: a batch-1 prefill of its prompt, then ``output_len``
    decode steps of its ``beams`` sequences at the mean context ``input_len + output_len / 2``."""
    dtypes = {"dtype": dtype, "weight_dtype": weight_dtype, "kv_dtype": kv_dtype}
    prefill = hwsim.load_workload(model, phase="prefill", batch=1, prompt_len=input_len, **dtypes)
    decode = hwsim.load_workload(model, phase="decode", batch=beams, context_len=input_len + output_len // 2,
                                 **dtypes)
    return hwsim.simulate(prefill, system).latency_s + output_len * hwsim.simulate(decode, system).latency_s


def per_user_tokens_per_s(system: str, model: str, dtype: str, context_len: int,
                          weight_dtype: str | None = None, kv_dtype: str | None = None) -> float:
    """One over the batch-1 decode step on the fastest plan :func:`rank_plans` finds; the
    weights in ``weight_dtype`` and the KV cache in ``kv_dtype`` where a row names them."""
    from hwsim.planner import rank_plans  # the planner imports the API: keep this module light

    decode = hwsim.load_workload(model, phase="decode", batch=1, context_len=context_len, dtype=dtype,
                                 weight_dtype=weight_dtype, kv_dtype=kv_dtype)
    best = rank_plans(decode, system, objective="latency_s").best.result
    assert best is not None  # ranked plans carry their result
    return 1.0 / best.latency_s


def prefill_batch1_latency_s(system: str, model: str, dtype: str, prompt_len: int,
                             weight_dtype: str | None = None, kv_dtype: str | None = None) -> float:
    """Time to first token (s) of one request alone: a batch-1 prefill of ``prompt_len`` tokens
    on one chip, the weights in ``weight_dtype`` and the KV cache in ``kv_dtype`` where given."""
    prefill = hwsim.load_workload(model, phase="prefill", batch=1, prompt_len=prompt_len, dtype=dtype,
                                  weight_dtype=weight_dtype, kv_dtype=kv_dtype)
    return hwsim.simulate(prefill, system).latency_s


def fsdp_train_tokens_per_s_per_chip(system: str, model: str, dtype: str, seq_len: int, batch: int,
                                     dp: int) -> float:
    """Training tokens/s per chip of one ZeRO-3, recomputing step of ``batch`` sequences."""
    train = hwsim.load_workload(model, phase="train", batch=batch, seq_len=seq_len, dtype=dtype)
    plan = hwsim.Plan(dp=dp, zero_stage=3, recompute=True)
    return batch * seq_len / hwsim.simulate(train, system, plan=plan).latency_s / dp


def _predict(row: dict[str, str]) -> Callable[[Chip], float]:
    kind, system, model, dtype = row["kind"], row["system"], row["model"], row["dtype"]
    plan, inp, out = _plan(row), int(row["input_len"]), int(row["output_len"])

    @cache
    def value() -> float:
        if kind == "static_batch":
            return static_batch_tokens_per_s(system, model, plan, dtype, inp, out, int(row["batch"]))
        if kind == "mlperf_offline":
            return offline_tokens_per_s(system, model, plan, dtype, inp, out)
        if kind == "trtllm_offline":
            kv_dtype = row.get("kv_dtype") or None
            return chunked_offline_tokens_per_s(system, model, plan, dtype, inp, out, kv_dtype)
        weights, kv = row.get("weight_dtype") or None, row.get("kv_dtype") or None
        if kind == "mlperf_offline_beam":
            beams, batch = int(row["beams"]), int(row["batch"])
            return beam_samples_per_s(system, model, plan, dtype, inp, out, beams, batch, weights, kv)
        if kind == "mlperf_singlestream_beam":
            return singlestream_beam_latency_s(system, model, dtype, inp, out, int(row["beams"]), weights, kv)
        if kind == "train_fsdp":
            batch, dp = int(row["batch"]), int(row["dp"])
            return fsdp_train_tokens_per_s_per_chip(system, model, dtype, inp, batch, dp)
        if kind == "prefill_batch1":
            return prefill_batch1_latency_s(system, model, dtype, inp, weights, kv)
        return per_user_tokens_per_s(system, model, dtype, inp, weights, kv)

    return lambda _: value()


def _name(row: dict[str, str]) -> str:
    kind, what = row["kind"], f"{row['model']} {row['dtype']}"
    where = f"{row['system']} {_plan(row).label()}"
    if kind == "static_batch":
        return f"{what} {row['input_len']}/{row['output_len']} B{row['batch']}, {where}"
    if row.get("weight_dtype"):
        what = f"{row['model']} w:{row['weight_dtype']} a:{row['dtype']}"
    if kind == "per_user":
        return f"{what} B1 context {row['input_len']}, {row['system']}"
    if kind == "prefill_batch1":
        return f"{what} B1 prefill {row['input_len']} (TTFT), {row['system']}"
    if kind == "train_fsdp":
        return (f"{what} train seq {row['input_len']} batch {row['batch']}, "
                f"{row['system']} dp{row['dp']} zero3 recompute")
    if kind == "mlperf_singlestream_beam":
        return (f"{what} single-stream in {row['input_len']} out {row['output_len']} beam {row['beams']}, "
                f"{row['system']}")
    beams = ""
    if kind == "mlperf_offline_beam":
        static = f" B{row['batch']}" if int(row["batch"]) > 0 else ""
        beams = f" beam {row['beams']}{static}"
    if kind == "trtllm_offline":
        return f"{what} trtllm-bench {row['input_len']}/{row['output_len']}, {where}"
    return f"{what} offline in {row['input_len']} out {row['output_len']}{beams}, {where}"


def machines_cases() -> Iterator[Case]:
    """Every row of ``machines.csv`` as a check case (see the module docstring)."""
    for r in _rows(CSV):
        if r["kind"] not in KINDS or r["system"] not in GROUPS:
            raise ValueError(f"{CSV.name}: a row of kind {r['kind']!r} on {r['system']!r}: expected a kind "
                             f"of {', '.join(KINDS)} on a system of {', '.join(GROUPS)}")
        group = GROUPS[r["system"]]
        if r["kind"] in KIND_GROUPS:
            group = group.replace("mlperf offline", KIND_GROUPS[r["kind"]])
        yield Case(group, _name(r), r["system"], float(r["value"]), r["unit"], _predict(r),
                   f"[{r['source']}] {r['reference']}", _role(r))
