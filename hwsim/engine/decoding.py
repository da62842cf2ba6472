"""How a decoding strategy and a KV policy change the iterations of a replica.

A greedy decode step is one target pass with ``q_i = 1`` per request. Under a strategy
(:mod:`hwsim.workload.decoding`) the same step becomes:

- **speculative**: ``k`` passes of the draft model (``q = 1``, its own KV cache of the
  request's context), then one target pass verifying ``k + 1`` tokens per request
  (``q_i = k + 1``, logits at every position); the step yields ``L`` tokens, drawn from
  the acceptance distribution (serving) or its mean (a static request). A prefill also
  runs through the draft, to fill the draft's cache.
- **medusa**: the target verifies the ``tree_tokens`` nodes of the candidate tree
  (``q_i = tree_tokens``, dense under the tree mask, as Medusa's kernels run it); the
  ``depth`` heads (a hidden x hidden residual block and a hidden x vocab head each) run
  on every sampling row.
- **eagle**: the draft is one decoder layer of the target's shape with its embedding
  and LM head, run ``depth`` times over one tree level each (``tree_tokens / depth``
  tokens per request); the target verifies the tree as for Medusa.
- **lookahead**: the target's pass carries ``tree_tokens`` tokens per request (the
  Jacobi window and the n-gram guesses), with no side work.
- **beam** / **parallel sampling**: every decode request is ``n`` sequences (rows of
  ``q = 1`` over the same context: each reads the shared prompt's KV), then the beam
  top-k or the sampling kernels (:mod:`hwsim.cost.sampling`) and, for beams, the
  copy-on-write of forking beams' last blocks at the home memory's bandwidth.
- **KV policy**: a decode row attends to at most ``cap_tokens`` cached tokens plus its
  new ones (prefill attends the whole prompt, as StreamingLLM and H2O do).

:class:`DecodingModel` turns a batch (its rows' ``q``, ``k`` and which are decodes) into
the target's rows and the side work's time and energy; it is pure arithmetic over
:class:`~hwsim.engine.iteration.ReplicaModel` costs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from hwsim.cost.model import OpCost, transfer_time_s
from hwsim.cost.sampling import beam_cost, beam_reorder_bytes, sampling_cost
from hwsim.dtypes import dtype_bytes
from hwsim.engine.iteration import ReplicaModel
from hwsim.workload.decoding import (
    Beam,
    FullKV,
    Greedy,
    Sampling,
    Speculative,
    TreeHeads,
    parse_decoding,
    parse_kv_policy,
    sequences_per_request,
)
from hwsim.workload.layers import kv_bytes_per_token
from hwsim.workload.ops import MatMul
from hwsim.workload.spec import ModelSpec, load_model_spec


def draft_spec(decoding: Any, target: ModelSpec) -> ModelSpec | None:
    """The model the draft passes run (None: no draft model, or Medusa's heads)."""
    if isinstance(decoding, Speculative):
        draft = decoding.draft
        spec = target if draft is None else draft if isinstance(draft, ModelSpec) else load_model_spec(draft)
        if decoding.draft_n_layers is not None:
            spec = spec.model_copy(update={"num_hidden_layers": decoding.draft_n_layers})
        return spec
    if isinstance(decoding, TreeHeads) and decoding.kind == "eagle":
        return target.model_copy(update={"num_hidden_layers": 1, "name": f"{target.name}-eagle-head"})
    return None


def draft_model(decoding: Any, target: ReplicaModel, cost_of: Callable[..., OpCost]) -> ReplicaModel | None:
    """The draft's iteration model, on the target's chip and plan."""
    spec = draft_spec(decoding, target.spec)
    if spec is None:
        return None
    return ReplicaModel(spec, target.chip, target.plan, cost_of, dtype=target.dtype,
                        attention_impl=target.attention_impl, token_grid=target.token_grid)


@dataclass
class SideCost:
    """Work of one step beside the target's pass: draft passes, heads, token selection."""

    time_s: float = 0.0
    energy_j: float = 0.0
    draft_s: float = 0.0

    def add(self, time_s: float, energy_j: float, draft: bool = False) -> None:
        self.time_s += time_s
        self.energy_j += energy_j
        if draft:
            self.draft_s += time_s


def model_kv_bytes_per_token(model: ReplicaModel) -> float:
    """KV bytes one cached token of one sequence takes on one chip of ``model``'s replica
    (its layers' share, averaged over pipeline stages), in B."""
    spec, plan = model.spec, model.plan
    width = dtype_bytes(model.dtype)
    total = sum(kv_bytes_per_token(spec.layer(i), plan.tp, width) for i in range(spec.num_hidden_layers))
    return total / plan.pp


class DecodingModel:
    """A strategy's effect on one replica's iterations (module docstring).

    Parameters
    ----------
    decoding, kv_policy : spec, dict, str or None
        :func:`~hwsim.workload.decoding.parse_decoding` / ``parse_kv_policy`` inputs.
    target : ReplicaModel
    cost_of : callable
        Op costs of the target's chip (Medusa's heads).
    block_tokens : int
        KV block size for the copy-on-write of forking beams.
    """

    def __init__(self, decoding: Any, kv_policy: Any, target: ReplicaModel, cost_of: Callable[..., OpCost],
                 block_tokens: int = 16) -> None:
        self.decoding = parse_decoding(decoding)
        self.kv_policy = parse_kv_policy(kv_policy)
        self.target, self.cost_of, self.block_tokens = target, cost_of, block_tokens
        self.draft = draft_model(self.decoding, target, cost_of)
        self.n_sequences = sequences_per_request(self.decoding)
        self.rng = np.random.default_rng(getattr(self.decoding, "seed", 0))
        self.cap = self.kv_policy.cap_tokens

    @property
    def is_greedy(self) -> bool:
        """Nothing changes: greedy decoding over the whole cache."""
        return isinstance(self.decoding, Greedy) and isinstance(self.kv_policy, FullKV) and \
            self.kv_policy.compression_ratio == 1.0

    @property
    def verify_tokens(self) -> int:
        """Tokens the target feeds per decode row per step."""
        d = self.decoding
        if isinstance(d, Speculative):
            return d.k + 1
        if isinstance(d, TreeHeads):
            return d.tree_tokens
        return 1

    def _capped(self, k: np.ndarray, q: np.ndarray) -> np.ndarray:
        if self.cap is None:
            return k
        return np.minimum(k - q, self.cap) + q

    def target_rows(self, q: np.ndarray, k: np.ndarray, n_logits: int,
                    decode: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """The target pass of a batch: ``(q, k, n_logits)`` with each decode row fed
        ``verify_tokens`` tokens (``n_sequences`` rows for beams and samples) over its
        context, capped by the KV policy."""
        v, n = self.verify_tokens, self.n_sequences
        q = np.asarray(q, dtype=np.int64)
        k = np.asarray(k, dtype=np.int64)
        decode = np.asarray(decode, dtype=bool)
        if v == 1 and n == 1 and self.cap is None:
            return q, k, n_logits
        dq = np.full(int(decode.sum()), v, dtype=np.int64)
        dk = self._capped(k[decode] - 1, np.zeros_like(dq)) + v
        if n > 1:
            dq, dk = np.repeat(dq, n), np.repeat(dk, n)
        n_decode = int(decode.sum())
        logits = n_logits - n_decode + n_decode * n * v
        return np.concatenate([q[~decode], dq]), np.concatenate([k[~decode], dk]), logits

    def side_cost(self, q: np.ndarray, k: np.ndarray, decode: np.ndarray, n_sampling: int) -> SideCost:
        """Time and energy of a step's work beside the target pass (s, J): the draft's
        passes, Medusa's heads, beam selection and reordering, sampling kernels."""
        out = SideCost()
        d = self.decoding
        q, k = np.asarray(q, dtype=np.int64), np.asarray(k, dtype=np.int64)
        decode = np.asarray(decode, dtype=bool)
        n_decode = int(decode.sum())
        vocab = self.target.spec.vocab_size
        if isinstance(d, Speculative) and self.draft is not None:
            self._draft_passes(out, q, k, decode, d.k, 1)
        elif isinstance(d, TreeHeads) and d.kind == "eagle" and self.draft is not None:
            self._draft_passes(out, q, k, decode, d.depth, -(-(d.tree_tokens - 1) // d.depth))
        elif isinstance(d, TreeHeads) and d.kind == "medusa":
            out.add(*self._medusa_heads(n_sampling, d.depth), draft=True)
        if isinstance(d, Beam) and n_decode:
            out.add(*beam_cost(self.target.chip, n_decode, d.n_beams, vocab))
            out.add(*self._reorder(n_decode, d.n_beams))
        if isinstance(d, Sampling):
            rows = n_sampling - n_decode + n_decode * d.n
            out.add(*sampling_cost(self.target.chip, rows, vocab, d.temperature, d.top_k, d.top_p,
                                   d.repetition_penalty))
        return out

    def _draft_passes(self, out: SideCost, q: np.ndarray, k: np.ndarray, decode: np.ndarray,
                      n_passes: int, width: int) -> None:
        """``n_passes`` draft passes: the first also prefills the batch's prompt chunks
        into the draft's cache; each then feeds ``width`` tokens per decode row."""
        assert self.draft is not None
        ctx = self._capped(k[decode] - 1, np.zeros(int(decode.sum()), dtype=np.int64))
        for j in range(n_passes):
            dq = np.full(ctx.size, width, dtype=np.int64)
            dk = ctx + (j + 1) * width
            if j == 0 and (~decode).any():
                dq, dk = np.concatenate([q[~decode], dq]), np.concatenate([k[~decode], dk])
            if dq.size == 0:
                return
            cost = self.draft.run(dq, dk, int(dq.size))
            out.add(cost.latency_s, cost.dynamic_j, draft=True)

    def _medusa_heads(self, n_rows: int, n_heads: int) -> tuple[float, float]:
        """Medusa's heads over ``n_rows`` rows: each a residual block (hidden x hidden,
        SiLU) and its own LM head (hidden x vocab), on one chip's share under tp."""
        if n_rows <= 0:
            return 0.0, 0.0
        spec, tp, dtype = self.target.spec, self.target.plan.tp, self.target.dtype
        h, vocab = spec.hidden_size, spec.vocab_size
        ops = [MatMul(n_rows, h, -(-h // tp), dtype), MatMul(n_rows, h, -(-vocab // tp), dtype)]
        time_s = energy_j = 0.0
        for op in ops:
            cost = self.cost_of(op)
            time_s += cost.latency_s
            energy_j += (cost.compute_energy_j + sum(cost.level_energy_j)) * tp
        return n_heads * time_s, n_heads * energy_j

    def _reorder(self, n_requests: int, n_beams: int) -> tuple[float, float]:
        """Copy-on-write of forking beams' last blocks (home memory read + write)."""
        chip = self.target.chip
        per_token = self.kv_bytes_per_token()
        n_bytes = beam_reorder_bytes(n_requests, n_beams, self.block_tokens, per_token)
        if n_bytes <= 0:
            return 0.0, 0.0
        home = chip.memory[chip.home_level]
        energy = n_bytes / 2 * (home.read_energy_pj_per_byte + home.write_energy_pj_per_byte) * 1e-12
        return transfer_time_s(home, n_bytes), energy * self.target.plan.tp

    def kv_bytes_per_token(self) -> float:
        """KV bytes one token of one sequence takes on one chip (the target's)."""
        return model_kv_bytes_per_token(self.target)

    def draw_tokens(self, n: int) -> np.ndarray:
        """Tokens each of ``n`` decode steps yields (1 without drafting), drawn from the
        acceptance distribution."""
        d = self.decoding
        if not isinstance(d, Speculative | TreeHeads) or n == 0:
            return np.ones(n, dtype=np.int64)
        pmf = d.length_pmf()
        return 1 + self.rng.choice(pmf.size, size=n, p=pmf / pmf.sum()).astype(np.int64)

    @property
    def mean_tokens_per_step(self) -> float:
        """``E[L]``, tokens per decode step (1 without drafting)."""
        d = self.decoding
        return d.mean_tokens_per_step if isinstance(d, Speculative | TreeHeads) else 1.0

    @property
    def var_tokens_per_step(self) -> float:
        """``Var[L]``, tokens squared (0 without drafting)."""
        d = self.decoding
        return d.var_tokens_per_step if isinstance(d, Speculative | TreeHeads) else 0.0


__all__ = ["DecodingModel", "SideCost", "draft_model", "draft_spec", "model_kv_bytes_per_token"]
