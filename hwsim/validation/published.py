"""Published measurements of other chips, recorded as validation cases (issue #3, item 2).

Each group reads one CSV under ``data/published``. Every row carries the key of its
source in the project's reference table (``source``), where that key resolves
(``reference``) and the assumptions needed to turn it into an hwsim workload (``note``).
These rows are *recorded, not fitted*: no preset number was tuned to them (role ``check``)
and none has a threshold in :data:`hwsim.validation.run.THRESHOLDS`, so their groups
read "recorded", not "passes".

Only single-chip comparisons are made. Published figures that need several chips wait
for the multi-chip issue:

- the AllReduce rows of LLMCompass' 4xA100 GPT-3 layer (kept in its CSV, kind
  ``allreduce``, and skipped here);
- Cerebras Inference tokens/s: measured on CS-3 (WSE-3), not the ``wse2`` preset, and
  over a cluster with MemoryX weight streaming for the larger models;
- Groq LPU tokens/s: racks of chips (an LLM does not fit one chip's 230 MB of SRAM);
- TPU v5e MLPerf GPT-J: a 4-chip TPU-v5e-4 slice; TPU v4 has no per-benchmark figure in
  the reference table;
- MLPerf results on H100/H200: 8-GPU systems.

Not multi-chip but also left out: the single-GPU MLPerf rows (1xH100 GPT-J and BERT,
1xA100-PCIe BERT) are offline throughputs over variable-length samples with the
harness's batching and INT8/FP8 choices, and A100-PCIe is not a preset. The TP1
peak-throughput rows of TensorRT-LLM (H100, A100, and H200, the only H200 single-chip
figures) are whole requests at batch 32-1024; simulating their 2048-token outputs takes
tens of seconds, too slow for ``hwsim validate``. The GPT-3 decode step's attention,
softmax, LayerNorm and GeLU rows are left out: tens of microseconds, mostly launch, and
the script behind them passes a 3072-token cache where the table says 2048.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import hwsim
from hwsim.arch.model import Chip
from hwsim.validation.cases import DATA, Case, _ms, _role, _rows
from hwsim.workload.graph import Workload
from hwsim.workload.lower import lower
from hwsim.workload.spec import ModelSpec, spec_from_dict

FOLDER = DATA / "published"

#: EleutherAI/gpt-j-6b config.json, the fields hwsim reads. GPT-J is not a shipped model:
#: its layer runs attention and FFN in parallel off one LayerNorm, which hwsim lowers as a
#: sequential pre-norm layer (same GEMMs and attention, one extra norm per layer).
GPTJ_6B: dict[str, object] = {
    "model_type": "gptj", "n_embd": 4096, "n_head": 16, "n_layer": 28, "n_inner": None,
    "vocab_size": 50400, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
    "tie_word_embeddings": False, "n_positions": 2048,
}

GPT3_GROUP = "a100 gpt3 layer (published)"
FA2_GROUP = "h100 flash attention (published)"
FA3_GROUP = "h100 flash attention 3 (published)"
LLM_GROUP = "single-gpu llm latency (published)"
QUANT_GROUP = "quantized decode speedup (published)"


def _source(row: dict[str, str]) -> str:
    return f"[{row['source']}] {row['reference']}"


def _dims(row: dict[str, str]) -> list[int]:
    return [int(v) for v in row["dims"].split("x")]


def a100_gemm_cases() -> Iterator[Case]:
    """FP16 GEMMs on a real A100-80GB, from LLMCompass (``a100_gemm_fp16.csv``)."""
    for r in _rows(FOLDER / "a100_gemm_fp16.csv"):
        m, k, n = int(r["M"]), int(r["K"]), int(r["N"])
        yield Case("a100 gemm fp16 (published)", f"{m}x{k}x{n}", "a100-sxm", float(r["ms"]), "ms",
                   _ms(hwsim.ops.gemm(m, k, n, "fp16")), r["source"], _role(r))


def _layer_op(row: dict[str, str]) -> Workload:
    """The hwsim workload for one row of ``a100_gpt3_layer.csv``."""
    kind, dims = row["kind"], _dims(row)
    if kind == "gemm":
        m, k, n = dims
        return hwsim.ops.gemm(m, k, n, "fp16")
    if kind == "attention_naive":
        # LLMCompass times torch.bmm, torch.softmax and torch.bmm separately, with no
        # mask; hwsim's naive attention is the same three kernels with the score matrix
        # written to and read back from HBM.
        b, h, q_len, kv_len, hd = dims
        return hwsim.ops.attention(b, h, h, q_len, kv_len, hd, is_causal=False, dtype="fp16",
                                   impl="naive")
    rows, cols = dims
    return hwsim.ops.elementwise(kind, (rows, cols), "fp16")


def _repeated_ms(workload: Workload, repeat: int) -> Callable[[Chip], float]:
    one = _ms(workload)
    return lambda chip: repeat * one(chip)


def a100_gpt3_layer_cases() -> Iterator[Case]:
    """One GPT-3 175B layer (d 12288, 96 heads, batch 8, sequence 2048) measured op by op
    on 4x A100-80GB with tensor parallel 4 (``a100_gpt3_layer.csv``, published.md C6).

    Each case is the per-GPU shard (24 heads, a quarter of the FFN) on one ``a100-sxm``
    in fp16. The real timings are the median wall clock of one PyTorch call, launch
    included, and the ops are unfused, so attention is compared with naive attention.
    """
    for r in _rows(FOLDER / "a100_gpt3_layer.csv"):
        if r["kind"] == "allreduce":
            continue  # a 4-GPU collective: needs the multi-chip issue
        repeat = int(r["repeat"])
        shape = f"{repeat}x {r['dims']}" if repeat > 1 else r["dims"]
        yield Case(GPT3_GROUP, f"{r['phase']} {r['op']} {shape} (TP4 shard)", "a100-sxm",
                   float(r["ms"]), "ms", _repeated_ms(_layer_op(r), repeat), _source(r), _role(r))


def flash_flops(batch: int, heads: int, seq: int, head_dim: int, causal: bool) -> float:
    """FLOPs of one attention forward as FlashAttention and tritonbench count them:
    two (seq x seq x head_dim) products per head, halved under a causal mask."""
    return 4.0 * batch * heads * seq * seq * head_dim * (0.5 if causal else 1.0)


def _flash_cases(csv_name: str, group: str) -> Iterator[Case]:
    """Forward attention on H100 SXM5 published in TFLOP/s, recorded in ms: the time is
    the source's own FLOP count divided by its rate, so both sides use one convention."""
    for r in _rows(FOLDER / csv_name):
        b, h, s, d = (int(r[c]) for c in ("batch", "heads", "seq", "head_dim"))
        causal = r["causal"] == "True"
        ms = flash_flops(b, h, s, d, causal) / (float(r["tflops"]) * 1e12) * 1e3
        w = hwsim.ops.attention(b, h, h, s, s, d, is_causal=causal, dtype=r["dtype"])
        name = f"{r['kernel']} {r['dtype']} B{b} H{h} S{s} d{d}{' causal' if causal else ''}"
        yield Case(group, name, "h100-sxm", ms, "ms", _ms(w), _source(r), _role(r))


def h100_flash_attention_cases() -> Iterator[Case]:
    """FlashAttention-2 and -3 forward rates on H100 (published.md C4).

    hwsim's ``h100-sxm`` attention is calibrated on PyTorch SDPA's flash backend; FA3
    uses Hopper-only asynchrony (warp specialisation, TMA, wgmma), so its rows form a
    group of their own.
    """
    yield from _flash_cases("h100_flash_attention2.csv", FA2_GROUP)
    yield from _flash_cases("h100_flash_attention3.csv", FA3_GROUP)


def gptj_spec() -> ModelSpec:
    """GPT-J 6B as a :class:`ModelSpec` (see :data:`GPTJ_6B`)."""
    return spec_from_dict(GPTJ_6B, "EleutherAI/gpt-j-6b config.json", name="gpt-j-6b")


def llm_workload(model: str, phase: str, tokens: int, dtype: str, batch: int = 1) -> Workload:
    """A prefill of ``tokens`` prompt tokens, or one decode step against a ``tokens``-long
    cache, for a shipped model or ``"gpt-j-6b"``."""
    spec = gptj_spec() if model == "gpt-j-6b" else hwsim.load_model_spec(model)
    if phase == "prefill":
        return lower(spec, "prefill", batch=batch, prompt_len=tokens, dtype=dtype)
    return lower(spec, "decode", batch=batch, context_len=tokens, dtype=dtype)


def single_gpu_llm_cases() -> Iterator[Case]:
    """TensorRT-LLM batch-1 latencies on one GPU (``single_gpu_llm_latency.csv``,
    published.md C3): first-token latency (a prefill) and time per output token (one
    decode step). The published times include the runtime's host work and sampling,
    which hwsim does not model, so hwsim is expected to be faster, most at short prompts.
    """
    for r in _rows(FOLDER / "single_gpu_llm_latency.csv"):
        batch, tokens = int(r["batch"]), int(r["tokens"])
        w = llm_workload(r["model"], r["phase"], tokens, r["dtype"], batch)
        what = f"prompt {tokens}" if r["phase"] == "prefill" else f"context {tokens}"
        name = f"{r['model']} {r['phase']} B{batch} {what} {r['dtype']} {r['arch']}"
        yield Case(LLM_GROUP, name, r["arch"], float(r["ms"]), "ms", _ms(w), _source(r), _role(r))


def _speedup(model: str, batch: int, context_len: int, precision: str,
             output_len: int = 0) -> Callable[[Chip], float]:
    """hwsim's speed-up under ``precision`` over bf16: of one decode step against a
    ``context_len`` cache, or (``output_len`` > 0) of one static batch of requests, a
    prefill of ``context_len``-token prompts then ``output_len`` decode steps at the mean
    context."""
    def predict(chip: Chip) -> float:
        def step_s(prec: str | None, context: int) -> float:
            w = hwsim.load_workload(model, batch=batch, context_len=context, precision=prec)
            return hwsim.simulate(w, chip).latency_s

        def time_s(prec: str | None) -> float:
            if not output_len:
                return step_s(prec, context_len)
            prefill = hwsim.load_workload(model, phase="prefill", batch=batch, prompt_len=context_len,
                                          precision=prec)
            decode_s = step_s(prec, context_len + output_len // 2)
            return hwsim.simulate(prefill, chip).latency_s + output_len * decode_s
        return time_s(None) / time_s(precision)
    return predict


def quantized_speedup_cases() -> Iterator[Case]:
    """Published speed-ups of quantized LLM inference over FP16 (``quantized_speedup.csv``):
    NVIDIA's Model Optimizer benchmarks (FP8, INT4 AWQ, W4A8 AWQ Llama-3-8B on one H100
    and one H200 with TensorRT-LLM) and TinyChat's AWQ W4A16 decode latencies (Jetson Orin,
    A100). A ``decode`` row compares one decode step at its cache length; a ``request`` row
    a static batch of whole requests (each row's ``note`` gives the assumptions)."""
    for r in _rows(FOLDER / "quantized_speedup.csv"):
        if r["phase"] not in ("decode", "request"):
            raise ValueError(f"quantized_speedup.csv: phase: expected decode or request, got {r['phase']!r}")
        batch, ctx = int(r["batch"]), int(r["context_len"])
        out = int(r["output_len"]) if r["phase"] == "request" else 0
        what = f"request B{batch} in {ctx} out {out}" if out else f"decode B{batch} context {ctx}"
        name = f"{r['model']} {what} {r['precision']} vs bf16 {r['arch']}"
        yield Case(QUANT_GROUP, name, r["arch"], float(r["speedup"]), "x",
                   _speedup(r["model"], batch, ctx, r["precision"], out), _source(r), _role(r))


def published_cases() -> Iterator[Case]:
    """Every published-figure case, group by group."""
    yield from a100_gemm_cases()
    yield from a100_gpt3_layer_cases()
    yield from h100_flash_attention_cases()
    yield from single_gpu_llm_cases()
    yield from quantized_speedup_cases()
