"""Attention fields of a Hugging Face ``config.json``: KV heads, projection biases, soft
caps, MLA latent ranks and per-layer attention kinds (full, sliding window, chunked).

Split from :mod:`hwsim.workload.hf`, which calls :func:`attention_fields` once per config.
"""

from __future__ import annotations

from typing import Any

from hwsim.workload.hf_keys import ALIBI_TYPES, PARALLEL_TYPES
from hwsim.workload.hf_reader import ConfigReader as _Reader


def _kv_heads(r: _Reader, mt: str, heads: int | None) -> int | None:
    if mt in ("falcon", "refinedweb", "refinedwebmodel"):
        new = r.flag("new_decoder_architecture", mt == "refinedweb")
        if new:
            return r.integer("num_kv_heads", "n_head_kv", "num_key_value_heads", default=heads,
                         field="num_key_value_heads")
        return 1 if r.flag("multi_query", mt == "falcon") else heads
    if mt == "gpt_bigcode":
        return 1 if r.flag("multi_query", True) else heads
    return r.integer("num_key_value_heads", "num_kv_heads", "n_head_kv", field="num_key_value_heads")


def attention_fields(r: _Reader, f: dict[str, Any], mt: str, notes: list[str]) -> None:
    """Attention fields of a Hugging Face config: KV heads, biases, norms, soft caps, MLA
    ranks, per-layer attention kinds and the parallel block."""
    f["num_key_value_heads"] = _kv_heads(r, mt, f["num_attention_heads"])
    falcon = mt in ("falcon", "refinedweb", "refinedwebmodel")
    bias_all = {"gpt2", "opt", "bloom", "bert", "roberta", "albert", "gpt_neo", "gpt_bigcode", "electra",
                "xlm-roberta", "camembert", "distilbert", "biogpt", "codegen", "phi", "starcoder2"}
    if falcon:
        qkv = out = r.flag("bias", False)
    elif mt == "gpt_neox":
        qkv = out = r.flag("attention_bias", True)
    elif mt == "opt":
        qkv = out = r.flag("enable_bias", True)
    elif mt in ("qwen2", "qwen2_moe"):
        qkv, out = True, False  # Qwen2's q/k/v projections carry biases, o_proj none
    elif mt in bias_all:
        qkv = out = True
    elif mt == "gptj":
        qkv = out = False
    else:
        qkv = out = r.flag("attention_bias", mt == "gpt_oss")
    f["attention_bias"], f["attention_out_bias"] = qkv, out
    if mt == "gpt_neo":
        f["attention_bias"] = False  # GPT-Neo: q/k/v without bias, out_proj with
    f["qk_norm"] = mt in ("qwen3", "qwen3_moe", "gemma3", "gemma3_text")
    f["attention_sinks"] = mt == "gpt_oss"
    f["alibi"] = mt in ALIBI_TYPES or (falcon and r.flag("alibi", False))
    cap = r.number("attn_logit_softcapping")
    f["attn_softcap"] = cap is not None and mt in ("gemma2", "gemma3", "gemma3_text")
    final_cap = r.number("final_logit_softcapping")
    f["final_softcap"] = final_cap is not None
    if f["attention_sinks"]:
        notes.append("attention sinks: one extra logit per query row and head, below 0.1 % of the "
                     "attention's vector work; ignored")
    if f["alibi"]:
        notes.append("ALiBi position bias: one add per score, fused into the attention kernel's "
                     "scaling; not costed apart")
    _mla(r, f)
    _layer_kinds(r, f, mt, notes)
    parallel = mt in PARALLEL_TYPES
    n_parallel_norms = 1
    if mt == "gpt_neox":
        parallel = r.flag("use_parallel_residual", True)
        n_parallel_norms = 2
    elif falcon:
        parallel = r.flag("parallel_attn", True)
        if r.flag("new_decoder_architecture", mt == "refinedweb"):
            n_parallel_norms = r.integer("num_ln_in_parallel_attn", default=2) or 2
    f["parallel_block"] = parallel
    if parallel:
        f["norms_per_layer"] = n_parallel_norms


def _mla(r: _Reader, f: dict[str, Any]) -> None:
    if not r.has("kv_lora_rank"):
        return
    f["kv_lora_rank"] = r.integer("kv_lora_rank", field="kv_lora_rank")
    f["q_lora_rank"] = r.integer("q_lora_rank", field="q_lora_rank")
    f["qk_nope_head_dim"] = r.integer("qk_nope_head_dim", default=128, field="qk_nope_head_dim")
    f["qk_rope_head_dim"] = r.integer("qk_rope_head_dim", default=64, field="qk_rope_head_dim")
    f["v_head_dim"] = r.integer("v_head_dim", default=128, field="v_head_dim")
    f["head_dim"] = None  # DeepSeek configs repeat qk_rope_head_dim as head_dim
    f["num_key_value_heads"] = f["num_attention_heads"]


def _layer_kinds(r: _Reader, f: dict[str, Any], mt: str, notes: list[str]) -> None:
    """Per-layer attention kinds (``full``, ``sliding``, ``chunked``) and the window."""
    n = f["num_hidden_layers"] or 0
    window = r.integer("sliding_window", field="sliding_window")
    chunk = r.integer("attention_chunk_size", field="attention_chunk_size")
    names = {"full_attention": "full", "attention": "full", "sliding_attention": "sliding",
             "chunked_attention": "chunked"}
    kinds: list[str] | None = None
    declared = r.raw("layer_types")
    if isinstance(declared, list) and declared:
        kinds = [names.get(str(k), "full") for k in declared]
    elif mt == "gemma2":
        kinds = ["sliding" if i % 2 == 0 else "full" for i in range(n)]
    elif mt in ("gemma3", "gemma3_text", "cohere2"):
        period = r.integer("sliding_window_pattern", default=6 if mt != "cohere2" else 4) or 6
        kinds = ["sliding" if (i + 1) % period else "full" for i in range(n)]
    elif mt in ("qwen2", "qwen2_moe", "qwen3", "qwen3_moe"):
        if r.flag("use_sliding_window", False) and window:
            first = r.integer("max_window_layers", default=n) or 0
            kinds = ["sliding" if i >= first else "full" for i in range(n)]
    elif mt == "llama4_text" or (mt == "llama4" and chunk):
        if chunk:
            uses_rope = r.int_list("no_rope_layers")
            interval = r.integer("no_rope_layer_interval", default=4) or 4
            rope = uses_rope if uses_rope else [int((i + 1) % interval != 0) for i in range(n)]
            kinds = ["chunked" if rope[i % len(rope)] else "full" for i in range(n)]
    elif window:
        kinds = ["sliding"] * max(n, 1)
        if mt not in ("mistral", "mixtral", "phi3", "phimoe", "starcoder2"):
            notes.append(f"sliding_window {window} applied to every layer "
                         "(no per-layer pattern in the config)")
    if kinds and "sliding" in kinds and not window:
        r.problems.append(f"{r.prefix}sliding_window: sliding layers need a window size")
    if kinds and "chunked" in kinds and not chunk:
        r.problems.append(f"{r.prefix}attention_chunk_size: chunked layers need a chunk size")
    f["sliding_window"] = window if kinds and "sliding" in kinds else None
    f["attention_chunk_size"] = chunk if kinds and "chunked" in kinds else None
    f["layer_attention"] = tuple(kinds) if kinds and set(kinds) != {"full"} else ()
