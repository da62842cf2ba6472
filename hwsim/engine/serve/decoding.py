"""Decoding strategies and KV policies inside a serving run.

- :class:`ServeDecoding` reshapes each iteration a scheduler composes: every decode row
  becomes the target's verify rows (speculation, trees) or ``n`` sequence rows (beams,
  parallel samples), the side work (draft passes, heads, selection kernels) runs on the
  replica before the target pass, and each speculative decode step yields ``L`` tokens
  drawn (seeded) from the acceptance distribution. It keeps the run's figures:
  accepted tokens per decode step and the draft's share of the replica's busy time.
- :class:`SharedPromptKV` counts a request's ``n`` sequences in paged blocks: the
  prompt's full blocks once, per sequence its copy-on-write copy of the prompt's partial
  last block and its own generated tokens (vLLM's sharing for beam search and parallel
  sampling, Kwon et al. 2023 section 4.4).
- :func:`decoding_capacity`: a KV policy's cap bounds what a request holds (like a
  sliding window over every layer), ``compression_ratio`` shrinks each block, and a
  time-shared draft's weights and own KV cache take their part of the memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from hwsim.dtypes import dtype_bytes
from hwsim.engine.decoding import DecodingModel, model_kv_bytes_per_token
from hwsim.engine.serve.kv import KVBlocks, KVLayout
from hwsim.workload.decoding import Speculative, TreeHeads, draft_head_params, shared_prompt_tokens


@dataclass
class SharedPromptKV(KVBlocks):
    """Paged blocks of requests that decode ``n_sequences`` sequences over one prompt.

    ``prompt`` holds each request's prompt length (by request id).
    """

    n_sequences: int = 1
    prompt: np.ndarray | None = None

    def blocks_of(self, ids: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """Blocks requests ``ids`` hold with ``tokens`` tokens each (prompt + generated)."""
        assert self.prompt is not None
        prompt = np.minimum(self.prompt[ids], tokens)
        slots = shared_prompt_tokens(prompt, tokens - prompt, self.n_sequences, self.block_tokens)
        return np.asarray(self.blocks(np.asarray(slots)))

    def _wanted(self, ids: np.ndarray, tokens: np.ndarray, shared_tokens: np.ndarray | None) -> np.ndarray:
        want = self.blocks_of(np.asarray(ids, dtype=np.int64), np.asarray(tokens, dtype=np.int64))
        if shared_tokens is not None:
            want = want - np.asarray(self.blocks(np.asarray(shared_tokens)))
        return want


class ServeDecoding:
    """One pool's strategy over its iterations, and the run's figures of it."""

    def __init__(self, model: DecodingModel) -> None:
        self.model = model
        self.decode_steps = 0  # decode rows stepped (one per request per iteration)
        self.decode_tokens = 0  # tokens those steps yielded
        self.side_s = 0.0
        self.draft_s = 0.0
        self.side_j = 0.0

    def iteration(self, q: np.ndarray, k: np.ndarray, n_logits: int,
                  decode: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, float, float]:
        """The target pass ``(q, k, n_logits)`` and the side work ``(time_s, energy_j)``
        of a composed batch whose ``decode`` rows are decode steps."""
        tq, tk, logits = self.model.target_rows(q, k, n_logits, decode)
        side = self.model.side_cost(q, k, decode, n_logits)
        self.side_s += side.time_s
        self.draft_s += side.draft_s
        self.side_j += side.energy_j
        return tq, tk, logits, side.time_s, side.energy_j

    def tokens(self, n_steps: int) -> np.ndarray:
        """Tokens each of ``n_steps`` decode steps yields (before the output-length cap)."""
        return self.model.draw_tokens(n_steps)

    def record(self, n_steps: int, n_tokens: int) -> None:
        self.decode_steps += n_steps
        self.decode_tokens += n_tokens


def decoding_capacity(kv: Any, decoding: DecodingModel, memory_fraction: float) -> Any:
    """``kv`` (a :class:`~hwsim.engine.serve.run.KVCapacity`) under the strategy's KV
    policy and a time-shared draft (module docstring)."""
    d, policy = decoding.decoding, decoding.kv_policy
    layout: KVLayout = kv.layout
    if policy.cap_tokens is not None:
        # Every growing layer then holds at most the cap: a window over the whole model.
        windows = {w: b for w, b in layout.windows}
        windows[policy.cap_tokens] = windows.get(policy.cap_tokens, 0.0) + layout.growing_bytes_per_token
        layout = KVLayout(layout.block_tokens, 0.0,
                          tuple(sorted((min(w, policy.cap_tokens), b) for w, b in windows.items())))
    ratio = policy.compression_ratio
    per_token = layout.block_bytes / layout.block_tokens
    left = kv.usable_bytes - kv.weights_bytes - kv.activations_bytes - kv.workspace_bytes
    draft_weights = 0.0
    if isinstance(d, Speculative) and d.placement == "shared" and decoding.draft is not None:
        draft = decoding.draft
        plan = draft.plan
        if d.draft is not None:
            draft_weights = draft.spec.param_count() * dtype_bytes(draft.dtype) / (plan.tp * plan.pp)
        # The draft's own cache grows with the target's (self-speculation reuses the
        # target's cache of its layers: nothing extra).
        draft_kv = model_kv_bytes_per_token(draft) if d.draft is not None else 0.0
        per_token += draft_kv
    if isinstance(d, TreeHeads):
        plan = decoding.target.plan
        draft_weights = draft_head_params(d, decoding.target.spec) * dtype_bytes(decoding.target.dtype) / (
            plan.tp * plan.pp)
    block = layout.block_tokens * per_token * ratio
    n_blocks = max(0, math.floor((left - draft_weights) / block)) if block > 0 else 0
    scale = block / layout.block_bytes if layout.block_bytes else 1.0
    layout = KVLayout(layout.block_tokens, layout.growing_bytes_per_token * scale,
                      tuple((w, b * scale) for w, b in layout.windows))
    return replace(kv, n_blocks=n_blocks, block_bytes=block, layout=layout,
                   weights_bytes=kv.weights_bytes + draft_weights)


def make_kv(kv_blocks: KVBlocks, decoding: DecodingModel | None, prompt: np.ndarray) -> KVBlocks:
    """The pool's block manager: shared-prompt accounting for beams and samples."""
    if decoding is None or decoding.n_sequences == 1:
        return kv_blocks
    return SharedPromptKV(kv_blocks.n_blocks, kv_blocks.block_tokens, kv_blocks.n_requests,
                          kv_blocks.watermark_blocks, kv_blocks.layout, n_sequences=decoding.n_sequences,
                          prompt=prompt)


__all__ = ["ServeDecoding", "SharedPromptKV", "decoding_capacity", "make_kv"]


def decoding_figures(servers: list[Any], log: list[Any]) -> dict[str, float]:
    """The run's strategy figures: ``accepted_tokens_per_step`` (tokens per decode step
    of a request), ``draft_time_share`` (draft passes over the replicas' busy time),
    ``side_time_s`` and ``side_energy_j`` (all side work). Empty for plain greedy."""
    parts = [s.decoding for s in servers if getattr(s, "decoding", None) is not None]
    if not parts:
        return {}
    steps = sum(p.decode_steps for p in parts)
    tokens = sum(p.decode_tokens for p in parts)
    side = sum(p.side_s for p in parts)
    busy = sum(end - start for _, start, end, *_ in log) + side
    model = parts[0].model
    return {"accepted_tokens_per_step": tokens / steps if steps else math.nan,
            "expected_tokens_per_step": model.mean_tokens_per_step,
            "var_tokens_per_step": model.var_tokens_per_step,
            "draft_time_share": sum(p.draft_s for p in parts) / busy if busy > 0 else 0.0,
            "side_time_s": side, "side_energy_j": sum(p.side_j for p in parts),
            "sequences_per_request": float(model.n_sequences)}


def decoding_notes(model: DecodingModel | None) -> list[str]:
    """What a serving run's strategy simplified, one line each."""
    if model is None:
        return []
    d, policy = model.decoding, model.kv_policy
    notes = [f"decoding {d.label()}, kv_policy {policy.label()}: side work (draft passes, heads, selection "
             "kernels) runs before each target pass, at full clock, outside the power limit"]
    if isinstance(d, Speculative) and d.placement == "separate":
        notes.append("speculative, placement='separate': the draft's own chips are not counted in n_chips "
                     "or idle energy (its passes' dynamic energy is)")
    if isinstance(d, Speculative):
        notes.append("speculative: KV slots of a step's accepted drafts are allocated after the verify "
                     "(vLLM reserves k lookahead slots before it); a step that finds no block accepts fewer")
    if model.n_sequences > 1:
        notes.append(f"{model.n_sequences} sequences per request share the prompt's full blocks; output "
                     "throughput counts one sequence per request")
    if policy.cap_tokens is not None:
        notes.append(f"kv_policy: a request holds and attends at most {policy.cap_tokens} tokens of every "
                     "layer; eviction bookkeeping is not costed")
    if policy.compression_ratio < 1:
        notes.append("kv_policy: compression shrinks the blocks; attention still reads uncompressed bytes")
    return notes
