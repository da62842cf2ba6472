"""Published speculative-decoding speedups as validation cases (issue 15).

**Leviathan et al. 2023, Table 2** (``data/published/speculative_decoding.csv``): T5-XXL
(11B) decoded greedily (temperature 0) at batch 1 on one TPU-v4, with T5-small, -base or
-large drafting ``gamma`` tokens; the table gives the measured per-token acceptance rate
``alpha`` and the walltime speedup. hwsim takes ``alpha`` and ``gamma`` as inputs (the
acceptance rate is a property of the models and the data, not of the hardware) and
predicts the speedup from the hardware: greedy request latency over speculative request
latency, the draft time-sharing the chip.

Assumptions, stated because hwsim cannot run T5 itself (encoder-decoders are not
modelled): every model is its T5 v1.1 *decoder* stack (gated-GELU FFN, the shapes of
google/t5-v1_1-*), lowered as a decoder-only model; the encoder pass (run once per
request, by both the baseline and speculation) and each layer's cross-attention are
left out of both sides of the ratio. Prompt and output lengths per task are assumptions
(EnDe: 64 + 64 tokens; CNNDM: 512 + 128). Table 2's temperature-1 rows are not used.

**Cai et al. 2024 (Medusa), Table 1** (``data/published/tree_decoding.csv``): Medusa-2
on Vicuna-7B/13B/33B and Zephyr-7B, MT-Bench, batch 1 on one A100-80GB; the table gives
the acceleration rate (mean tokens per step), the per-step overhead and the speedup.
hwsim takes the tokens per step as input (as an i.i.d. acceptance rate over 4 heads with
that mean) and predicts the speedup; the tree (63 candidates and the root) is the
repository's default, an assumption, and so are the lengths (128 + 256 tokens).

Not compared: Chen et al. 2023 (Chinchilla 70B with a 4B draft on 16 TPU-v4, Table 1)
reports speedups but not an acceptance rate in the same table; EAGLE's acceptance
lengths were not transcribed in this change. See docs/decoding.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

import hwsim
from hwsim.arch.model import Chip
from hwsim.validation.cases import DATA, Case, _role, _rows
from hwsim.workload.lower import lower
from hwsim.workload.spec import ModelSpec, spec_from_dict

GROUP = "speculative decoding speedup"

#: T5 v1.1 decoder stacks (google/t5-v1_1-* config.json: d_model, num_heads, d_kv,
#: d_ff, num_decoder_layers; vocab 32128, gated-gelu, untied head).
T5_V11: dict[str, tuple[int, int, int, int, int]] = {
    "t5-small": (512, 6, 64, 1024, 8),
    "t5-base": (768, 12, 64, 2048, 12),
    "t5-large": (1024, 16, 64, 2816, 24),
    "t5-xxl": (4096, 64, 64, 10240, 24),
}


@cache
def t5_decoder(name: str) -> ModelSpec:
    """The decoder stack of T5 v1.1 ``name`` as a decoder-only model spec."""
    d_model, heads, d_kv, d_ff, layers = T5_V11[name]
    config: dict[str, Any] = {
        "model_type": "llama", "hidden_size": d_model, "num_attention_heads": heads,
        "num_key_value_heads": heads, "head_dim": d_kv, "intermediate_size": d_ff,
        "num_hidden_layers": layers, "vocab_size": 32128, "hidden_act": "gelu",
        "tie_word_embeddings": False, "max_position_embeddings": 4096,
    }
    return spec_from_dict(config, name=f"{name}-v1.1-decoder")


#: LLaMA-30B (Vicuna-33B's base; huggyllama/llama-30b config.json).
LLAMA_30B: dict[str, Any] = {
    "model_type": "llama", "hidden_size": 6656, "num_attention_heads": 52, "num_key_value_heads": 52,
    "intermediate_size": 17920, "num_hidden_layers": 60, "vocab_size": 32000, "hidden_act": "silu",
    "tie_word_embeddings": False, "max_position_embeddings": 2048,
}


def rate_for_mean(mean_tokens: float, depth: int) -> float:
    """The i.i.d. acceptance rate whose ``E[L] = (1 - a^(depth+1)) / (1 - a)`` is
    ``mean_tokens`` (bisection; ``E[L]`` rises with ``a``)."""
    lo, hi = 0.0, 1.0
    for _ in range(100):
        a = (lo + hi) / 2
        if (1 - a ** (depth + 1)) / (1 - a) < mean_tokens:
            lo = a
        else:
            hi = a
    return (lo + hi) / 2


def tree_speedup(row: dict[str, str]) -> Callable[[Chip], float]:
    """hwsim's Medusa speedup for one row: greedy over Medusa request latency."""
    def predict(chip: Chip) -> float:
        model = spec_from_dict(LLAMA_30B, name="llama-30b") if row["model"] == "llama-30b" else \
            hwsim.load_model_spec(row["model"])
        depth = int(row["depth"])
        spec = {"kind": row["method"], "depth": depth, "tree_tokens": int(row["tree_tokens"]),
                "acceptance_rate": rate_for_mean(float(row["tokens_per_step"]), depth)}
        prompt, new = int(row["prompt_len"]), int(row["output_len"])
        greedy = hwsim.simulate(lower(model, "request", prompt_len=prompt, new_tokens=new), chip)
        fast = hwsim.simulate(lower(model, "request", prompt_len=prompt, new_tokens=new, decoding=spec),
                              chip)
        return greedy.latency_s / fast.latency_s

    return predict


def speedup(row: dict[str, str]) -> Callable[[Chip], float]:
    """hwsim's speedup for one row: greedy over speculative request latency."""
    def predict(chip: Chip) -> float:
        target = t5_decoder(row["target"])
        draft = t5_decoder(row["draft"])
        prompt, new = int(row["prompt_len"]), int(row["output_len"])
        greedy = hwsim.simulate(lower(target, "request", prompt_len=prompt, new_tokens=new), chip)
        spec = {"kind": "speculative", "draft": draft, "k": int(row["gamma"]),
                "acceptance_rate": float(row["alpha"])}
        fast = hwsim.simulate(lower(target, "request", prompt_len=prompt, new_tokens=new, decoding=spec),
                              chip)
        return greedy.latency_s / fast.latency_s

    return predict


def decoding_cases() -> Iterator[Case]:
    """One case per row of ``speculative_decoding.csv`` and ``tree_decoding.csv``."""
    for r in _rows(DATA / "published" / "speculative_decoding.csv"):
        name = (f"{r['task']} {r['target']} <- {r['draft']}, gamma {r['gamma']}, alpha {r['alpha']}, "
                f"temp {r['temperature']}")
        yield Case(GROUP, name, r["arch"], float(r["speedup"]), "x", speedup(r),
                   f"[{r['source']}] {r['reference']}, {r['table']}", _role(r))
    for r in _rows(DATA / "published" / "tree_decoding.csv"):
        name = (f"{r['method']}-2 {r['model_as_published']} ({r['model']}), "
                f"{r['tokens_per_step']} tokens/step, tree {r['tree_tokens']}")
        yield Case(GROUP, name, r["arch"], float(r["speedup"]), "x", tree_speedup(r),
                   f"[{r['source']}] {r['reference']}, {r['table']}", _role(r))
