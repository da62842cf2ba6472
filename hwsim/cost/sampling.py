"""Token selection as work on the vector units: sampling, top-k/top-p, beam top-k.

After the LM head every sampling row holds ``vocab`` logits. Greedy decoding takes the
argmax inside the head's epilogue (no extra kernel: hwsim has never costed it, and a
beam of width 1 is exactly that). Otherwise each step streams the fp32 logits through
a few kernels, each a pass over ``rows x vocab`` elements (reads, writes and lane
operations per element below are those of the usual GPU kernels: vLLM's sampler,
FlashInfer's sampling, PyTorch's sort):

- temperature scaling (when not 1) and repetition penalty (when not 1, a gather and
  scatter over the tokens seen, here one pass);
- softmax (the vector model's ``softmax``);
- top-k below the vocabulary: a radix select, two read passes;
- top-p below 1: a full sort of (value, index) pairs by 4 radix passes and a prefix sum;
- the draw itself: one read pass;
- beam search (``n_beams > 1``): a log-softmax of every beam's row, then the best
  ``2 n_beams`` of the ``n_beams x vocab`` candidates per request (a radix select).

Pure functions of the chip; every kernel also pays the chip's launch overhead.
"""

from __future__ import annotations

from hwsim.arch.model import Chip
from hwsim.cost.model import OpCost, streaming_traffic
from hwsim.cost.vector import _vector_cost

#: Bytes of one logit as the sampler reads it (vLLM upcasts logits to fp32).
LOGIT_BYTES = 4
#: A (value, index) pair of a sort pass.
PAIR_BYTES = 8

Kernel = tuple[str, float, float, float]
"""``(name, bytes read per element, bytes written per element, lane ops per element)``."""


def sampling_kernels(temperature: float = 1.0, top_k: int | None = None, top_p: float = 1.0,
                     repetition_penalty: float = 1.0, vocab: int = 32000) -> list[Kernel]:
    """The kernels of one sampling step, per row element (module docstring)."""
    b = LOGIT_BYTES
    out: list[Kernel] = []
    if repetition_penalty != 1.0:
        out.append(("repetition_penalty", b, b, 2))
    if temperature != 1.0:
        out.append(("temperature", b, b, 1))
    out.append(("softmax", b, b, 5))
    if top_k is not None and top_k < vocab:
        out.append(("top_k_select", 2 * b, 0, 4))
    if top_p < 1.0:
        out += [("sort_pass", PAIR_BYTES, PAIR_BYTES, 4)] * 4
        out.append(("top_p_prefix_sum", b, 0, 2))
    out.append(("draw", b, 0, 3))
    return out


def beam_kernels() -> list[Kernel]:
    """The kernels of one beam-search step, per element of ``n_beams x vocab``."""
    b = LOGIT_BYTES
    return [("log_softmax", b, b, 6), ("beam_top_k_select", 2 * b, 0, 4)]


def kernels_cost(chip: Chip, kernels: list[Kernel], n_elements: float) -> tuple[float, float]:
    """``(time_s, energy_j)`` of ``kernels`` over ``n_elements`` each, one after another."""
    time_s = energy_j = 0.0
    if n_elements <= 0:
        return 0.0, 0.0
    for name, read, write, ops in kernels:
        cost: OpCost = _vector_cost(chip, ops * n_elements,
                                    streaming_traffic(chip, read * n_elements, write * n_elements), name)
        time_s += cost.latency_s
        energy_j += cost.compute_energy_j + sum(cost.level_energy_j)
    return time_s, energy_j


def sampling_cost(chip: Chip, n_rows: int, vocab: int, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float = 1.0, repetition_penalty: float = 1.0) -> tuple[float, float]:
    """``(time_s, energy_j)`` of sampling one token for each of ``n_rows`` rows."""
    kernels = sampling_kernels(temperature, top_k, top_p, repetition_penalty, vocab)
    return kernels_cost(chip, kernels, float(n_rows) * vocab)


def beam_cost(chip: Chip, n_requests: int, n_beams: int, vocab: int) -> tuple[float, float]:
    """``(time_s, energy_j)`` of choosing the next beams of ``n_requests`` requests;
    zero for one beam (greedy's argmax, in the LM head)."""
    if n_beams <= 1:
        return 0.0, 0.0
    return kernels_cost(chip, beam_kernels(), float(n_requests) * n_beams * vocab)


def beam_reorder_bytes(n_requests: int, n_beams: int, block_tokens: int, kv_bytes_per_token: float) -> float:
    """KV bytes moved (read + write) when beams fork: with paged, copy-on-write blocks a
    forking beam copies its shared last block, on average half full; a step forks up
    to ``n_beams - 1`` beams of each request."""
    if n_beams <= 1:
        return 0.0
    return 2.0 * n_requests * (n_beams - 1) * (block_tokens / 2) * kv_bytes_per_token


__all__ = ["beam_cost", "beam_kernels", "beam_reorder_bytes", "kernels_cost", "sampling_cost",
           "sampling_kernels"]
