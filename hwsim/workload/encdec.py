"""Lowering an encoder-decoder model (T5, BART) for inference, on one chip.

What the phases mean (as Hugging Face ``generate`` and encoder-decoder servers run them):

- ``prefill``: the encoder over ``batch`` sources of ``prompt_len`` tokens
  (bidirectional attention), then the decoder's first step (the decoder start token):
  every decoder layer projects the encoder output to its cross-attention keys and
  values once and caches them; logits for that one position.
- ``decode``: one decoder step; its self-attention reads ``context_len`` cached decoder
  tokens and itself, its cross-attention the cached keys and values of the
  ``prompt_len``-token source (no encoder, no projection of the source).
- ``request``: the prefill, then ``new_tokens`` decode steps.

The cache of a sequence is, per decoder layer, K and V of its decoder tokens and of its
source. Parallel plans, training and serving are not modelled for encoder-decoders
(refused by name).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hwsim.dtypes import dtype_bytes
from hwsim.errors import ConfigError
from hwsim.workload.blocks import attention_ops
from hwsim.workload.graph import OperatorGraph, Pass, Segment, SegmentRole
from hwsim.workload.layers import AttentionSpec, LayerSpec, group_layers
from hwsim.workload.ops import Attention, Elementwise, MatMul, Op
from hwsim.workload.parallel import chain_graphs, layer_graph, period_graph, sharded_embedding, sharded_head
from hwsim.workload.plan import Plan
from hwsim.workload.spec import ModelSpec

_ONE_CHIP = Plan()


def check_encdec(spec: ModelSpec, phase: str, plan: Plan | None, source: str) -> None:
    """Refuse, by name, what is not modelled for an encoder-decoder."""
    name = spec.model_type.upper() if spec.model_type else "encoder-decoder"
    if phase == "train":
        raise ConfigError([f"{source}: phase: training of encoder-decoder models ({name}) is not modelled "
                           "yet; prefill, decode and request are"])
    if plan is not None and plan != _ONE_CHIP:
        raise ConfigError([f"{source}: plan: parallel plans for encoder-decoder models ({name}) are not "
                           f"modelled yet (plan {plan.label()}); run them on one chip"])


def cross_ops(a: AttentionSpec, d: int, batch: int, q_len: int, src_len: int, dtype: str, impl: str,
              project: bool) -> list[tuple[str, Op]]:
    """A decoder layer's cross-attention: query projection, (prefill: the source's keys
    and values projected and cached), attention over the source, output projection."""
    inner = a.n_heads * a.head_dim
    kv = 2 * a.n_kv_heads * a.head_dim
    ops: list[tuple[str, Op]] = [("cross_q_proj", MatMul(batch * q_len, d, inner, dtype, bias=a.qkv_bias))]
    if project:
        ops += [("cross_kv_proj", MatMul(batch * src_len, d, kv, dtype, bias=a.qkv_bias)),
                ("cross_kv_cache_write", Elementwise("copy", batch * src_len, kv, dtype))]
    att = Attention(batch, a.n_heads, a.n_kv_heads, q_len, src_len, a.head_dim, is_causal=False, dtype=dtype,
                    impl=impl, variant="cross")
    ops += [("cross_attention", att), ("cross_o_proj", MatMul(batch * q_len, inner, d, dtype, bias=a.o_bias))]
    return ops


def _decoder_layer(layer: LayerSpec, batch: int, self_len: int, src_len: int, project: bool,
                   opts: dict[str, Any]) -> OperatorGraph:
    dtype, impl = opts["dtype"], opts["attention_impl"]
    assert layer.cross is not None
    own = attention_ops(layer, _ONE_CHIP, batch, 1, self_len, dtype, impl)
    cross = cross_ops(layer.cross, layer.hidden_size, batch, 1, src_len, dtype, impl, project)
    return layer_graph(layer, _ONE_CHIP, batch, own, dtype, opts["sparsity"], cross=cross)


def _stack(spec: ModelSpec, first: int, end: int, prefix: str,
           graph_of: Callable[[LayerSpec], OperatorGraph]) -> list[Segment]:
    """Layers ``[first, end)`` as segments of repeated periods, each layer's graph from ``graph_of``."""
    layers = tuple(spec.layer(i) for i in range(first, end))
    runs = group_layers(layers, first)
    out = []
    for start, period, repeat in runs:
        graphs = [graph_of(layers[start - first + j]) for j in range(period)]
        name = f"{prefix}{start}-{start + period * repeat - 1}"
        out.append(Segment(name, chain_graphs(graphs), repeat, SegmentRole.LAYER, period))
    return out


def _decoder_pass(spec: ModelSpec, batch: int, self_len: int, src_len: int, project: bool,
                  opts: dict[str, Any]) -> list[Segment]:
    dtype = opts["dtype"]
    embed = sharded_embedding(spec, _ONE_CHIP, batch, dtype)
    segments = [Segment("decoder_embed", embed, role=SegmentRole.EMBED)]
    segments += _stack(spec, spec.num_encoder_layers, spec.num_hidden_layers, "decoder_layers",
                       lambda layer: _decoder_layer(layer, batch, self_len, src_len, project, opts))
    head = sharded_head(spec, _ONE_CHIP, batch, batch, dtype)
    segments.append(Segment("head", head, role=SegmentRole.HEAD))
    return segments


def _prefill(spec: ModelSpec, batch: int, src_len: int, opts: dict[str, Any]) -> Pass:
    dtype = opts["dtype"]
    segments = [Segment("encoder_embed", sharded_embedding(spec, _ONE_CHIP, batch * src_len, dtype),
                        role=SegmentRole.EMBED)]
    segments += _stack(spec, 0, spec.num_encoder_layers, "encoder_layers",
                       lambda layer: period_graph((layer,), _ONE_CHIP, batch, src_len, src_len, dtype,
                                                  opts["attention_impl"], opts["sparsity"]))
    if spec.final_norm:  # T5's encoder final_layer_norm (BART has none)
        norm = OperatorGraph()
        norm.add_op("encoder_final_norm", Elementwise(spec.norm, batch * src_len, spec.hidden_size, dtype))
        segments.append(Segment("encoder_norm", norm, role=SegmentRole.OP))
    segments += _decoder_pass(spec, batch, 1, src_len, True, opts)
    return Pass("prefill", tuple(segments), tokens=batch * src_len)


def cache_bytes(spec: ModelSpec, batch: int, decoder_tokens: int, src_len: int, dtype: str) -> float:
    """K and V of ``decoder_tokens`` decoder tokens and of the ``src_len``-token source,
    in every decoder layer, for ``batch`` sequences (B)."""
    a = spec.layer(spec.num_encoder_layers).mixer
    assert isinstance(a, AttentionSpec)
    per_token = 2 * a.n_kv_heads * a.head_dim * dtype_bytes(dtype)
    return batch * spec.num_decoder_layers * (decoder_tokens + src_len) * per_token


def encdec_passes(spec: ModelSpec, phase: str, batch: int, prompt_len: int, context_len: int,
                  new_tokens: int, opts: dict[str, Any]) -> tuple[tuple[Pass, ...], float]:
    """The passes of ``phase`` and the cache bytes they leave (module docstring)."""
    dtype = opts["dtype"]
    if phase == "prefill":
        return (_prefill(spec, batch, prompt_len, opts),), cache_bytes(spec, batch, 1, prompt_len, dtype)
    if phase == "decode":
        segments = _decoder_pass(spec, batch, context_len + 1, prompt_len, False, opts)
        cached = cache_bytes(spec, batch, context_len + 1, prompt_len, dtype)
        return (Pass("decode", tuple(segments), tokens=batch),), cached
    steps = [Pass(f"decode{i}", tuple(_decoder_pass(spec, batch, i + 2, prompt_len, False, opts)),
                  tokens=batch) for i in range(new_tokens)]
    passes = (_prefill(spec, batch, prompt_len, opts), *steps)
    return passes, cache_bytes(spec, batch, new_tokens + 1, prompt_len, dtype)
