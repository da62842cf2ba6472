"""Token-generation strategies and KV-cache policies, as validated specs (issue 15).

A *decoding strategy* says how each decode step of a request turns into work:

- ``greedy``: one token per step, argmax (fused into the LM head; no extra cost) —
  what hwsim always did.
- ``sampling``: temperature, repetition penalty, top-k and top-p over the vocabulary
  on the vector units; ``n`` parallel completions share the prompt's KV blocks.
- ``speculative`` (Leviathan et al. 2023; Chen et al. 2023): a draft model proposes
  ``k`` tokens autoregressively, the target verifies ``k + 1`` in one pass. With a
  per-token acceptance rate ``a`` the tokens produced per step ``L`` (accepted drafts
  plus the target's own) have ``P(L = j + 1) = a^j (1 - a)`` for ``j < k`` and
  ``a^k`` for ``j = k``: ``E[L] = (1 - a^(k+1)) / (1 - a)``. A measured distribution
  may be given instead (``acceptance_lengths``). ``draft=None`` with ``draft_n_layers``
  is self-speculation by layer skipping (the target's first layers as the draft).
- ``medusa`` (Cai et al. 2024) and ``eagle`` (Li et al. 2024): draft heads on the
  target's last hidden state propose a token tree of ``tree_tokens`` nodes over
  ``depth`` levels; the target verifies the whole tree in one pass under a tree mask.
  ``lookahead`` (Jacobi / lookahead decoding, Fu et al. 2024): no draft at all; the
  target's own pass carries ``tree_tokens`` tokens (lookahead window and n-gram
  candidates) through the same verify mechanism, with its own acceptance model.
- ``beam``: ``n_beams`` hypotheses per request; they share the prompt's KV blocks
  (copy-on-write), so a request holds prompt + ``n_beams`` x generated tokens.

A *KV policy* caps what each decode step attends to and what the cache holds:
``full``; ``streaming`` (StreamingLLM, Xiao et al. 2024: ``sink_tokens`` + a window of
the most recent ``window_tokens``); ``h2o`` (Zhang et al. 2023: ``heavy_tokens``
heavy hitters + ``recent_tokens`` recent ones). ``compression_ratio`` (any policy) is
the stored fraction of the KV bytes (0.5: 8-bit entries of a 16-bit model).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from hwsim._yaml import validation_problems
from hwsim.errors import ConfigError
from hwsim.workload.spec import ModelSpec

Probability = Annotated[float, Field(ge=0, le=1)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def label(self) -> str:
        """A short description for tables and result parameters."""
        fields = ", ".join(f"{k}={v}" for k, v in self.model_dump(exclude={"kind"}).items()
                           if v is not None)
        return f"{self.kind}({fields})" if fields else str(self.kind)  # type: ignore[attr-defined]


class Greedy(_Spec):
    """One token per step by argmax (the LM head's, no extra work)."""

    kind: Literal["greedy"] = "greedy"


class Sampling(_Spec):
    """Sampled decoding: the logits' work on the vector units, ``n`` completions."""

    kind: Literal["sampling"] = "sampling"
    temperature: StrictFloat = Field(default=1.0, gt=0, le=100)
    top_k: StrictInt | None = Field(default=None, ge=1)
    top_p: StrictFloat = Field(default=1.0, gt=0, le=1)
    repetition_penalty: StrictFloat = Field(default=1.0, gt=0, le=100)
    n: StrictInt = Field(default=1, ge=1, le=1024)


class _Drafted(_Spec):
    """Shared by the strategies whose target verifies drafted tokens."""

    acceptance_rate: Probability | None = None
    acceptance_lengths: tuple[Probability, ...] | None = None
    seed: StrictInt = 0

    @property
    def n_draft(self) -> int:
        """Drafted tokens along the longest accepted path."""
        raise NotImplementedError

    @model_validator(mode="after")
    def _one_acceptance(self) -> _Drafted:
        if (self.acceptance_rate is None) == (self.acceptance_lengths is None):
            raise ValueError("give exactly one of acceptance_rate and acceptance_lengths")
        lengths = self.acceptance_lengths
        if lengths is not None:
            if len(lengths) != self.n_draft + 1:
                raise ValueError(f"acceptance_lengths: {len(lengths)} probabilities given; expected "
                                 f"{self.n_draft + 1} (of accepting 0..{self.n_draft} drafted tokens)")
            if not math.isclose(sum(lengths), 1.0, abs_tol=1e-6):
                raise ValueError(f"acceptance_lengths: must sum to 1, got {sum(lengths):.6g}")
        return self

    def length_pmf(self) -> np.ndarray:
        """``P(L = 1 + j)`` for ``j = 0..n_draft``: tokens one step produces."""
        if self.acceptance_lengths is not None:
            return np.asarray(self.acceptance_lengths, dtype=np.float64)
        a, k = float(self.acceptance_rate or 0.0), self.n_draft
        pmf = np.array([a ** j * (1 - a) for j in range(k)] + [a ** k])
        return pmf

    @property
    def mean_tokens_per_step(self) -> float:
        """``E[L]``: with a rate ``a``, ``(1 - a^(k+1)) / (1 - a)`` (``k + 1`` at ``a = 1``)."""
        a = self.acceptance_rate
        if a is not None:
            k = self.n_draft
            return float(k + 1) if a == 1.0 else (1 - a ** (k + 1)) / (1 - a)
        return float(np.dot(self.length_pmf(), np.arange(1, self.n_draft + 2)))

    @property
    def var_tokens_per_step(self) -> float:
        """``Var[L]``, tokens squared."""
        pmf = self.length_pmf()
        values = np.arange(1, self.n_draft + 2)
        mean = float(np.dot(pmf, values))
        return float(np.dot(pmf, (values - mean) ** 2))


class Speculative(_Drafted):
    """A draft model proposes ``k`` tokens; the target verifies ``k + 1`` at once.

    Attributes
    ----------
    draft : str or None
        The draft model (shipped name or config path); None: the target itself with
        ``draft_n_layers`` layers (self-speculation by layer skipping).
    draft_n_layers : int or None
        Layers of the draft (default: all of ``draft``'s).
    k : int
        Tokens drafted per step.
    placement : {"shared", "separate"}
        ``shared``: the draft time-shares the target's chips (its weights and KV take
        their memory); ``separate``: it runs on chips of its own (same kind), still
        before each verify.
    """

    kind: Literal["speculative"] = "speculative"
    draft: str | ModelSpec | None = None
    draft_n_layers: StrictInt | None = Field(default=None, ge=1)
    k: StrictInt = Field(default=4, ge=1, le=64)
    placement: Literal["shared", "separate"] = "shared"

    @property
    def n_draft(self) -> int:
        return self.k

    @property
    def draft_name(self) -> str | None:
        return self.draft.name if isinstance(self.draft, ModelSpec) else self.draft

    def label(self) -> str:
        fields = {k: v for k, v in self.model_dump(exclude={"kind", "draft"}).items() if v is not None}
        named = {"draft": self.draft_name, **fields}
        shown = ", ".join(f"{k}={v}" for k, v in named.items() if v is not None)
        return f"speculative({shown})"

    @model_validator(mode="after")
    def _draft_named(self) -> Speculative:
        if self.draft is None and self.draft_n_layers is None:
            raise ValueError("name a draft model, or give draft_n_layers for self-speculation")
        return self


class TreeHeads(_Drafted):
    """Medusa heads or an EAGLE draft head proposing a token tree the target verifies.

    Attributes
    ----------
    kind : {"medusa", "eagle", "lookahead"}
        ``medusa``: ``depth`` heads (a residual block and an LM head each) on the
        last hidden state, all in one step; ``eagle``: one decoder layer plus the
        target's LM head, run ``depth`` times (one tree level each); ``lookahead``:
        no heads, the candidates come from the target's own Jacobi iterations
        (``depth`` = n-gram size - 1; ``tree_tokens`` = window x depth + guesses x depth).
    depth : int
        Tree levels (drafted tokens along a path).
    tree_tokens : int
        Candidate tokens in the tree, the root included: the target's verify pass
        feeds this many tokens per request.
    """

    kind: Literal["medusa", "eagle", "lookahead"]
    depth: StrictInt = Field(default=4, ge=1, le=32)
    tree_tokens: StrictInt = Field(default=64, ge=2, le=4096)

    @property
    def n_draft(self) -> int:
        return self.depth

    @model_validator(mode="after")
    def _tree_deep_enough(self) -> TreeHeads:
        if self.tree_tokens < self.depth + 1:
            raise ValueError(f"tree_tokens={self.tree_tokens} cannot hold a path of depth {self.depth} "
                             "(needs at least depth + 1 nodes)")
        return self


class Beam(_Spec):
    """Beam search with ``n_beams`` hypotheses per request."""

    kind: Literal["beam"] = "beam"
    n_beams: StrictInt = Field(default=4, ge=1, le=1024)


Decoding = Annotated[Greedy | Sampling | Speculative | TreeHeads | Beam, Field(discriminator="kind")]


class _KVPolicy(_Spec):
    compression_ratio: StrictFloat = Field(default=1.0, gt=0, le=1)

    @property
    def cap_tokens(self) -> int | None:
        """Tokens one sequence keeps and attends to at most (None: all)."""
        return None


class FullKV(_KVPolicy):
    """Keep every token."""

    kind: Literal["full"] = "full"


class StreamingKV(_KVPolicy):
    """StreamingLLM: attention sinks plus a window of recent tokens."""

    kind: Literal["streaming"] = "streaming"
    sink_tokens: StrictInt = Field(default=4, ge=0)
    window_tokens: StrictInt = Field(default=2044, ge=1)

    @property
    def cap_tokens(self) -> int:
        return self.sink_tokens + self.window_tokens


class HeavyHitterKV(_KVPolicy):
    """H2O: the heavy hitters by accumulated attention plus the recent tokens."""

    kind: Literal["h2o"] = "h2o"
    heavy_tokens: StrictInt = Field(default=1024, ge=0)
    recent_tokens: StrictInt = Field(default=1024, ge=1)

    @property
    def cap_tokens(self) -> int:
        return self.heavy_tokens + self.recent_tokens


KVPolicy = Annotated[FullKV | StreamingKV | HeavyHitterKV, Field(discriminator="kind")]

_DECODING: TypeAdapter[Any] = TypeAdapter(Decoding)
_KV_POLICY: TypeAdapter[Any] = TypeAdapter(KVPolicy)
DECODING_KINDS = ("greedy", "sampling", "speculative", "medusa", "eagle", "lookahead", "beam")
KV_POLICY_KINDS = ("full", "streaming", "h2o")


def _parse(adapter: TypeAdapter[Any], value: Any, where: str, default: Any, kinds: tuple[str, ...]) -> Any:
    if value is None:
        return default
    if isinstance(value, _Spec):
        return value
    if isinstance(value, str):
        value = {"kind": value}
    if not isinstance(value, dict):
        raise ConfigError([f"{where}: expected one of {', '.join(kinds)} or a mapping with 'kind', "
                           f"got {type(value).__name__}"])
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        raise ConfigError(validation_problems(where, exc)) from None


def parse_decoding(value: Any, where: str = "decoding") -> Greedy | Sampling | Speculative | TreeHeads | Beam:
    """A decoding strategy from a spec object, a kind name or a mapping (None: greedy).

    Raises
    ------
    ConfigError
        Naming ``where`` and the field at fault.
    """
    return _parse(_DECODING, value, where, Greedy(), DECODING_KINDS)  # type: ignore[no-any-return]


def parse_kv_policy(value: Any, where: str = "kv_policy") -> FullKV | StreamingKV | HeavyHitterKV:
    """A KV policy from a spec object, a kind name or a mapping (None: full)."""
    return _parse(_KV_POLICY, value, where, FullKV(), KV_POLICY_KINDS)  # type: ignore[no-any-return]


def sequences_per_request(decoding: Any) -> int:
    """Sequences a request decodes at once (beams, parallel samples), sharing its prompt."""
    if isinstance(decoding, Beam):
        return decoding.n_beams
    if isinstance(decoding, Sampling):
        return decoding.n
    return 1


def shared_prompt_tokens(prompt_len: np.ndarray | int, generated: np.ndarray | int, n_sequences: int,
                         block_tokens: int) -> np.ndarray | int:
    """Token slots ``n_sequences`` sequences sharing one prompt hold in paged blocks of
    ``block_tokens``: the prompt's full blocks once, and per sequence its own copy
    (copy-on-write) of the prompt's partial last block and what it generated.
    One sequence: ``ceil((prompt + generated) / block_tokens)`` blocks, as ever."""
    prompt = np.asarray(prompt_len)
    shared = (prompt // block_tokens) * block_tokens
    private = -(-(prompt - shared + np.asarray(generated)) // block_tokens) * block_tokens
    out = shared + n_sequences * private
    return out if np.ndim(out) else int(out)


__all__ = ["DECODING_KINDS", "KV_POLICY_KINDS", "Beam", "Decoding", "FullKV", "Greedy", "HeavyHitterKV",
           "KVPolicy", "Sampling", "Speculative", "StreamingKV", "TreeHeads", "parse_decoding",
           "parse_kv_policy", "sequences_per_request", "shared_prompt_tokens"]


def draft_head_params(decoding: Any, spec: ModelSpec) -> float:
    """Parameters of the heads a tree strategy adds to ``spec``: Medusa's ``depth``
    heads (a hidden x hidden block and a hidden x vocab head each); EAGLE's draft head
    (one decoder layer of the target's shape and a 2 hidden x hidden input projection;
    it shares the target's embedding and LM head). 0 for other strategies."""
    if not isinstance(decoding, TreeHeads) or decoding.kind == "lookahead":
        return 0.0
    h, vocab = spec.hidden_size, spec.vocab_size
    if decoding.kind == "medusa":
        return float(decoding.depth * (h * h + h * vocab))
    embed_and_head = vocab * h * (1 if spec.tie_word_embeddings else 2)
    per_layer = (spec.param_count() - embed_and_head) / spec.num_hidden_layers
    return float(per_layer + 2 * h * h)


def decoding_resident(decoding: Any, kv_policy: Any, spec: Any, batch: int, prompt_len: int, new_tokens: int,
                      kv_bytes: Any, weights_bytes_of: Any, param_bytes: float = 2.0
                      ) -> tuple[dict[str, float], list[str]]:
    """Resident bytes a strategy changes for a static batch of requests, and its notes.

    ``kv_bytes(n_tokens)`` gives the batch's KV bytes for ``n_tokens`` tokens per
    sequence; ``weights_bytes_of(model)`` a draft model's weights; ``param_bytes`` the
    bytes of one parameter (draft heads).
    """
    n_seq = sequences_per_request(decoding)
    tokens = shared_prompt_tokens(prompt_len, new_tokens, n_seq, 16) if n_seq > 1 else prompt_len + new_tokens
    cap = kv_policy.cap_tokens
    if cap is not None:
        tokens = min(int(tokens), n_seq * cap)
    out = {"kv_cache_bytes": kv_bytes(int(tokens)) * kv_policy.compression_ratio}
    notes = []
    if isinstance(decoding, Speculative) and decoding.draft is not None and decoding.placement == "shared":
        out["draft_weights_bytes"] = float(weights_bytes_of(decoding.draft))
    if isinstance(decoding, TreeHeads):
        out["draft_weights_bytes"] = draft_head_params(decoding, spec) * param_bytes
    if not isinstance(decoding, Greedy):
        notes.append(f"decoding {decoding.label()}: costed per step as docs/decoding.md describes; the "
                     "side work's energy (draft passes, heads, selection kernels) is booked under compute_j")
    if isinstance(decoding, Speculative | TreeHeads):
        notes.append(f"decoding: every sequence advances by the expected {decoding.mean_tokens_per_step:.3f} "
                     f"tokens per step (variance {decoding.var_tokens_per_step:.3f} tokens^2)")
    if cap is not None:
        notes.append(f"kv_policy {kv_policy.label()}: decode steps attend to at most {cap} cached tokens; "
                     "the eviction bookkeeping (H2O's score accumulation) is not costed")
    if kv_policy.compression_ratio < 1:
        notes.append(f"kv_policy: compression_ratio={kv_policy.compression_ratio:g} shrinks the KV cache's "
                     "footprint only; attention still reads uncompressed bytes")
    return out, notes
