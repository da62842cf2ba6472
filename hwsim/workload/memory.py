"""Memory per chip under a parallelism :class:`Plan`, and what does not fit where.

The rules (Megatron-LM conventions: Shoeybi et al. 2019, Narayanan et al. 2021,
Korthikanti et al. 2022; ZeRO: Rajbhandari et al. 2020), for the *busiest* chip. Pipeline
stage 0 holds the embedding and the most micro-batches in flight, the last stage the LM
head (a replica of the embedding when it is tied and ``pp > 1``, as Megatron keeps one)
and the logits; every stage is evaluated (uneven stages: the first ``layers % pp`` take
one layer more) and the largest on-chip total is reported. Every per-layer quantity
comes from the layer's :class:`~hwsim.workload.layers.LayerSpec`.

- **weights**: a layer's dense parameters split over tp (Q, O and FFN by heads and
  width; K/V by KV heads, replicated once tp exceeds them, so at least one KV head per
  chip; MLA's down-projections, norms and the MoE router replicated); expert
  parameters over ``tp * ep``; the stage's own layers; the vocab-parallel token table
  (and head) over tp, position and token-type tables replicated.
  ZeRO-3 divides them by dp (experts by ``dp / ep``, the ranks that replicate them) and
  adds one layer's gathered shard to the workspace.
- **KV cache** (inference): per layer of the stage ``batch/dp * held/cp * 2 *
  kv_heads_per_chip * d_head * bytes``, where a sliding-window or chunked layer holds at
  most its window of the tokens and an MLA layer caches ``kv_lora_rank +
  qk_rope_head_dim`` elements per token instead of K and V; tokens are ``prompt_len``
  (prefill), ``context_len + 1`` (decode, as :func:`hwsim.workload.lower` counts the
  new token) or ``prompt_len + new_tokens`` (request). Encoders keep no cache. A
  state-space (Mamba) layer keeps a fixed state per sequence instead, whatever its
  length: ``(d_conv - 1) * conv_channels + channels * d_state`` elements per chip
  (:func:`hwsim.workload.layers.layer_state_bytes`).
- **activations**, inference: the largest live tensors of one layer (residual, norm
  output and the wider of the attention or FFN intermediates; the score matrix too with
  naive attention) or the fp32 logits of the last positions, for one micro-batch.
  Training: Korthikanti et al. (2022, section 4.1) per layer and micro-batch of ``b``
  sequences of ``s`` tokens, in bytes at 16 bits: ``s*b*h*(34 + 5*a*s/h)``; flash
  attention keeps no score matrix (``5*a*s/h`` dropped). Of the 34, 10 (norm inputs,
  block inputs, dropout masks) are replicated over tp without sequence parallelism:
  ``sbh*(10 + 24/tp)``; with it everything is split: ``sbh*34/tp``. For MoE the 16 FFN
  intermediates scale with top-k. (Derived for GPT: MHA, 4h GeLU FFN, dropout; LLaMA-2-70B's
  GQA and 3.5h SwiGLU without dropout give 33.5, close enough to use it for all.) A 1F1B
  stage ``i`` keeps ``min(pp - i, microbatches)`` micro-batches, GPipe all of them.
  Full recompute keeps only each layer's input (``2*s*b*h``, /tp with sequence
  parallelism) plus one layer's full activations being recomputed; checkpointing every
  ``n`` layers (``recompute_every``) keeps ``ceil(L/n)`` inputs plus ``n`` layers' full
  activations. Selective recompute (Korthikanti et al. 2022, section 5) keeps everything
  but the attention core's ``5*a*s/h`` term, so with flash attention (which keeps no
  score matrix anyway) it saves nothing. The last stage also keeps one micro-batch's fp32
  logits, ``4*s*b*V/tp``.
- **gradients** (train): the weight shard in the weight dtype; ZeRO-2/3 divide by dp.
- **optimizer state** (train, mixed-precision AdamW): fp32 master weights and two fp32
  moments, 12 bytes per parameter of the shard (the ZeRO paper's K = 12); ZeRO-1+
  divide by dp.
- **workspace**, sized from the chip and the workload: the runtime's allowance on the
  chip, :func:`workspace_allowance_bytes` = ``min(1 GiB, capacity / 64)`` of the chip's
  home memory, plus the workload's own buffers below (ZeRO-3's gathered layer, offload's
  double buffers). The 1 GiB is what a GPU stack sets aside on an 80 GB part: cuBLAS
  workspaces (32 MiB per handle on Hopper), NCCL channel buffers (several MiB per
  channel and peer, for each communicator of tp, pp and dp) and allocator fragmentation
  (serving stacks leave more: vLLM's default ``gpu_memory_utilization=0.9`` keeps 8 GiB).
  A chip with less memory runs a leaner runtime (XLA and Groq's compiler plan memory
  statically) and keeps the same share, 1/64 (1.6 %): 0.5 GiB of a 32 GiB TPU v4,
  3.6 MB of a Groq LPU's 230 MB of SRAM. This module knows no chip: the caller that
  does (the planner, :func:`hwsim.mapping.fit.check_fit`) passes the allowance in;
  :func:`memory_per_chip` alone counts only the workload's buffers.
- **offload** moves weights (and, training, their gradients), optimizer state or KV
  cache to ``offloaded_bytes`` (host or external memory); streamed weights, gradients
  and KV cache keep a double buffer of two layers each in the workspace.
- **placement** (:attr:`Plan.placement`) moves a share of weights (with, training, the
  same share of their gradients), KV cache, activations (training) or optimizer state to
  each named tier (``tier_bytes``, also counted in ``offloaded_bytes``); each streamed
  share keeps a double buffer of two layers' worth of that share in the workspace.
"""

from __future__ import annotations

import math

from hwsim.dtypes import dtype_bytes, normalize_dtype
from hwsim.errors import ConfigError
from hwsim.workload import layers as layers_mod
from hwsim.workload.layers import LayerSpec, SsmSpec
from hwsim.workload.placement import ChipMemory, placed_memory
from hwsim.workload.plan import PHASES, Plan
from hwsim.workload.precision import Precision, weight_bits_per_param
from hwsim.workload.spec import ModelSpec

GIB = 2**30
#: The runtime allowance a GPU stack keeps on a large part, and the share of a smaller
#: chip's home memory kept instead (module docstring).
WORKSPACE_CAP_BYTES = 1.0 * GIB
WORKSPACE_FRACTION = 1.0 / 64
ADAMW_BYTES_PER_PARAM = 12.0  # fp32 master weights + two fp32 moments

def workspace_allowance_bytes(capacity_bytes: float) -> float:
    """The runtime's workspace on a chip whose home memory holds ``capacity_bytes``:
    ``min(1 GiB, capacity / 64)`` (library buffers, communicator buffers, fragmentation;
    see the module docstring), in bytes."""
    return min(WORKSPACE_CAP_BYTES, WORKSPACE_FRACTION * capacity_bytes)


def _split(n: int, parts: int) -> int:
    """The busiest part when ``n`` things are split into ``parts``."""
    return math.ceil(n / parts)


def layer_params(spec: ModelSpec, tp: int, ep: int, index: int = 0) -> tuple[float, float]:
    """(dense, expert) parameters of layer ``index`` on one chip (its tensor and expert share)."""
    return layers_mod.layer_params(spec.layer(index), tp, ep)


def stage_layers(spec: ModelSpec, plan: Plan, stage: int) -> range:
    """Indices of the layers pipeline ``stage`` runs (uneven stages: the first
    ``layers % pp`` stages take one more)."""
    first, end = layers_mod.stage_bounds(spec.num_hidden_layers, plan.pp)[stage]
    return range(first, end)


def _embedding_shard(spec: ModelSpec, tp: int) -> float:
    """Embedding parameters on one chip: the token table split over tp, the rest replicated."""
    table = spec.vocab_size * spec.embedding_width
    return spec.embedding_param_count() - table + _split(spec.vocab_size, tp) * spec.embedding_width


def _head_shard(spec: ModelSpec, plan: Plan) -> float:
    """Final norm and LM head on the last stage (a replica of a tied table when ``pp > 1``)."""
    head = spec.head_param_count()
    if spec.encoder_only:
        return float(head)
    vocab_shard = _split(spec.vocab_size, plan.tp)
    untied = spec.vocab_size * spec.hidden_size if not spec.tie_word_embeddings else 0
    bias = spec.vocab_size if spec.lm_head_bias else 0
    has_head = not spec.tie_word_embeddings or plan.pp > 1
    shard = (vocab_shard * spec.hidden_size if has_head else 0) + (vocab_shard if bias else 0)
    return float(head - untied - bias + shard)


def _stage_params(spec: ModelSpec, plan: Plan, stage: int) -> tuple[float, float]:
    """(dense, expert) parameters on a chip of pipeline ``stage`` (embeddings count as dense)."""
    dense = expert = 0.0
    for i in stage_layers(spec, plan, stage):
        d_i, e_i = layer_params(spec, plan.tp, plan.ep, i)
        dense, expert = dense + d_i, expert + e_i
    if stage == 0:
        dense += _embedding_shard(spec, plan.tp)
    if stage == plan.pp - 1:
        dense += _head_shard(spec, plan)
    return dense, expert


def weight_bytes_per_chip(spec: ModelSpec, plan: Plan, dtype: str = "bf16") -> float:
    """Bytes of parameters the busiest chip holds under ``plan`` (no ZeRO), in B."""
    width = dtype_bytes(normalize_dtype(dtype))
    return max(sum(_stage_params(spec, plan, s)) for s in range(plan.pp)) * width


def kv_cache_bytes_per_token(spec: ModelSpec, plan: Plan, dtype: str = "bf16") -> float:
    """KV-cache bytes one more cached token costs on the busiest chip, once every window
    is full (B): the full-attention layers' K and V (MLA: latent); 0 for an encoder.
    A token within the windows also costs the window layers'
    (:func:`sequence_kv_bytes` counts both)."""
    if spec.encoder_only:
        return 0.0
    width = dtype_bytes(normalize_dtype(dtype))
    return max(sum(layers_mod.kv_bytes_per_token(spec.layer(i), plan.tp, width)
                   for i in stage_layers(spec, plan, s) if spec.layer(i).mixer.window is None)
               for s in range(plan.pp)) / plan.cp


def sequence_kv_bytes(spec: ModelSpec, plan: Plan, context_len: int, dtype: str = "bf16") -> float:
    """KV-cache bytes one sequence of ``context_len`` tokens holds on the busiest chip
    (window layers capped at their window, MLA compressed, split over cp), in B."""
    if spec.encoder_only:
        return 0.0
    width = dtype_bytes(normalize_dtype(dtype))
    return max(sum(layers_mod.layer_kv_bytes(spec.layer(i), _split(context_len, plan.cp), plan.tp, width)
                   for i in stage_layers(spec, plan, s)) for s in range(plan.pp))


def _kv_tokens(phase: str, prompt_len: int, context_len: int, new_tokens: int) -> int:
    return {"prefill": prompt_len, "decode": context_len + 1, "request": prompt_len + new_tokens}[phase]


def _train_layer_bytes(spec: ModelSpec, layer: LayerSpec, plan: Plan, s: int, b: int, flash: bool,
                       width: float) -> float:
    """Korthikanti et al. (2022) activations of one layer for one micro-batch (bytes)."""
    h, a = spec.hidden_size, spec.num_attention_heads
    sbh = s * b * h * width / 2  # the paper counts bytes at 16 bits
    sharded = 8 + 16 * max(layer.ffn.top_k, 1)
    score = 0.0 if flash else 5 * a * s / h
    if plan.sequence_parallel:
        return sbh * (10 + sharded + score) / plan.tp
    return sbh * (10 + (sharded + score) / plan.tp)


def _inference_layer_bytes(spec: ModelSpec, layer: LayerSpec, plan: Plan, b: int, q_len: int, kv_len: int,
                           flash: bool, width: float) -> float:
    """Largest live tensors of one layer, or the last positions' fp32 logits (bytes)."""
    tp, d, att = plan.tp, spec.hidden_size, layer.mixer
    tokens = b * _split(q_len, plan.cp)
    f = layer.ffn
    if isinstance(att, SsmSpec):
        # in_proj output (z, x, B, C, dt) and the scan output; no score matrix
        c, h, g = att.local(tp)
        attn = 2 * c + att.conv_channels(tp) + h + c
        ffn = _split(max(f.width, f.shared_width), tp) * (3 if f.gated else 2) * max(f.top_k, 1)
        layer_bytes = tokens * width * (2 * d + max(attn, ffn))
        logits = b * _split(spec.vocab_size, tp) * 4.0
        return max(layer_bytes, logits)
    q_heads, kv_heads = _split(att.n_heads, tp), _split(att.n_kv_heads, tp)
    attn = att.head_dim * (2 * q_heads + 2 * kv_heads)  # q, k, v and the attention output
    ffn = _split(max(f.width, f.shared_width), tp) * (3 if f.gated else 2) * max(f.top_k, 1)
    layer_bytes = tokens * width * (2 * d + max(attn, ffn))  # + residual stream and norm output
    if not flash:
        keys = att.kv_tokens_held(kv_len)
        layer_bytes += 2 * b * q_heads * _split(q_len, plan.cp) * keys * width  # scores, probabilities
    logits = 0.0 if spec.encoder_only else b * _split(spec.vocab_size, tp) * 4.0
    return max(layer_bytes, logits)


def _stage_weight_bytes(spec: ModelSpec, plan: Plan, stage: int, prec: Precision) -> tuple[float, float]:
    """(all, largest layer's) weight bytes on a chip of pipeline ``stage`` under a mixed
    precision: each layer at its weight width (group scales included), the embedding
    and head shards at theirs."""
    def width(dt: str) -> float:
        return weight_bits_per_param(dt, prec.activations, prec.group_size, prec.zero_point) / 8

    total = largest = 0.0
    for i in stage_layers(spec, plan, stage):
        layer = sum(layer_params(spec, plan.tp, plan.ep, i)) * width(prec.layer_weights(i))
        total, largest = total + layer, max(largest, layer)
    if stage == 0:
        total += _embedding_shard(spec, plan.tp) * width(prec.embeddings)
    if stage == plan.pp - 1:
        head = prec.embeddings if spec.tie_word_embeddings else prec.lm_head
        total += _head_shard(spec, plan) * width(head)
    return total, largest


def _stage_memory(spec: ModelSpec, phase: str, plan: Plan, stage: int, shape: dict, width: float,
                  workspace_bytes: float, prec: Precision | None = None) -> ChipMemory:
    dp, tp, pp = plan.dp, plan.tp, plan.pp
    flash = shape["attention_impl"] == "flash"
    dense, expert = _stage_params(spec, plan, stage)
    indices = stage_layers(spec, plan, stage)
    stage_specs = [spec.layer(i) for i in indices]
    # The largest layer sizes the buffers that hold one layer (ZeRO-3 gather, streaming).
    layer_dense, layer_expert = max((layers_mod.layer_weight_params(lyr, tp, plan.ep) for lyr in stage_specs),
                                    key=sum, default=(0.0, 0.0))
    expert_dp = max(dp // plan.ep, 1)  # ranks replicating each expert
    sharded = dense / dp + expert / expert_dp  # the parameters once divided over dp
    layers = max(len(indices), 1)
    replica_batch = _split(shape["batch"], dp)
    micro = _split(replica_batch, plan.microbatches)
    weights = (sharded if plan.zero_stage == 3 else dense + expert) * width
    layer_weights = (layer_dense + layer_expert) * width
    kv_width = width
    if prec is not None:
        # Mixed precision (inference only): weights, KV and activations at their own widths.
        weights, layer_weights = _stage_weight_bytes(spec, plan, stage, prec)
        if plan.zero_stage == 3 and dense + expert > 0:
            weights *= sharded / (dense + expert)
        kv_width = dtype_bytes(prec.kv_cache)
    workspace = workspace_bytes + (layer_weights if plan.zero_stage == 3 and dp > 1 else 0.0)
    kv = grads = optim = 0.0
    if phase == "train":
        s = _split(shape["seq_len"], plan.cp)
        per_layer = [_train_layer_bytes(spec, lyr, plan, s, micro, flash, width) for lyr in stage_specs]
        in_flight = plan.microbatches if plan.pipeline_schedule == "gpipe" else min(pp - stage,
                                                                                     plan.microbatches)
        if plan.full_recompute:
            kept = s * micro * spec.hidden_size * width / (tp if plan.sequence_parallel else 1)
            every = min(plan.recompute_every, layers)
            acts = math.ceil(layers / every) * in_flight * kept + every * max(per_layer, default=0.0)
        elif plan.recompute:  # selective: the attention core is recomputed, its scores not kept
            per_layer = [_train_layer_bytes(spec, lyr, plan, s, micro, True, width) for lyr in stage_specs]
            acts = in_flight * sum(per_layer)
        else:
            acts = in_flight * sum(per_layer)
        if stage == pp - 1 and not spec.encoder_only:
            acts += s * micro * _split(spec.vocab_size, tp) * 4.0  # fp32 logits for the loss
        grads = (sharded if plan.zero_stage >= 2 else dense + expert) * width
        optim = (sharded if plan.zero_stage >= 1 else dense + expert) * ADAMW_BYTES_PER_PARAM
    else:
        q_len = 1 if phase == "decode" else shape["prompt_len"]
        tokens = _kv_tokens(phase, shape["prompt_len"], shape["context_len"], shape["new_tokens"])
        if not spec.encoder_only:
            kv = replica_batch * sum(layers_mod.layer_kv_bytes(lyr, _split(tokens, plan.cp), tp, kv_width)
                                     for lyr in stage_specs)
        acts = max((_inference_layer_bytes(spec, lyr, plan, micro, q_len, tokens, flash, width)
                    for lyr in stage_specs), default=0.0)
    offloaded = 0.0
    if "weights" in plan.offload:
        # Streamed weights' gradients stream out as each layer's backward ends.
        offloaded += weights + grads
        weights, workspace = 0.0, workspace + 2 * layer_weights * (2 if grads else 1)
        grads = 0.0
    if "optimizer" in plan.offload:
        offloaded, optim = offloaded + optim, 0.0
    if "kv_cache" in plan.offload and kv:
        offloaded += kv
        workspace += 2 * kv / layers
        kv = 0.0
    if plan.placement:
        return placed_memory(ChipMemory(weights, kv, acts, grads, optim, workspace, offloaded), plan, layers,
                       layer_weights)
    return ChipMemory(weights, kv, acts, grads, optim, workspace, offloaded)


def memory_per_chip(
    spec: ModelSpec,
    phase: str,
    plan: Plan,
    *,
    batch: int,
    prompt_len: int = 512,
    context_len: int = 2048,
    new_tokens: int = 128,
    seq_len: int = 2048,
    dtype: str = "bf16",
    attention_impl: str = "flash",
    workspace_bytes: float = 0.0,
    precision: Precision | None = None,
) -> ChipMemory:
    """Bytes the busiest chip holds when ``plan`` runs ``phase`` (rules: module docstring).

    Parameters
    ----------
    spec : ModelSpec
    phase : {"prefill", "decode", "request", "train"}
    plan : Plan
    batch : int
        Global batch (sequences), split over dp and then into ``plan.microbatches``.
    prompt_len, context_len, new_tokens, seq_len : int
        As for :func:`hwsim.workload.lower`.
    dtype : str
        Weights, gradients, activations and KV cache dtype.
    attention_impl : {"flash", "naive"}
        Naive attention keeps the score matrix.
    workspace_bytes : float
        The runtime's allowance on the chip (B), :func:`workspace_allowance_bytes` of its
        home memory; 0 (a workload knows no chip) counts only the workload's own buffers.
    precision : Precision, optional
        Per-tensor dtypes (a uniform one is the same as ``dtype``): weights, KV cache and
        activations (its ``base``) at their own widths.
    """
    source = f"memory {spec.name or '<model>'}"
    if phase not in PHASES:
        raise ConfigError([f"{source}: phase: unknown phase {phase!r}; expected one of {', '.join(PHASES)}"])
    if attention_impl not in ("flash", "naive"):
        raise ConfigError([f"{source}: attention_impl: expected 'flash' or 'naive', got {attention_impl!r}"])
    if precision is not None and precision.is_uniform:
        dtype, precision = precision.base, None
    elif precision is not None:
        dtype = precision.base
    try:
        width = dtype_bytes(normalize_dtype(dtype))
    except ValueError as exc:
        raise ConfigError([f"{source}: dtype: {exc}"]) from None
    values = {"batch": batch, "prompt_len": prompt_len, "context_len": context_len,
              "new_tokens": new_tokens, "seq_len": seq_len}
    bad = [f"{source}: {k}: must be a positive integer, got {v!r}" for k, v in values.items()
           if not isinstance(v, int) or isinstance(v, bool) or v <= 0]
    if phase != "train" and plan.off_chip_shares("activations"):
        bad.append(f"{source}: plan: placement.activations: activations are offloaded in training only "
                   f"(phase {phase!r} keeps one layer's at a time)")
    if bad:
        raise ConfigError(bad)
    shape = values | {"attention_impl": attention_impl}
    stages = range(plan.pp)
    mems = [_stage_memory(spec, phase, plan, i, shape, width, workspace_bytes, precision) for i in stages]
    return max(mems, key=lambda m: m.total_bytes)  # ties keep stage 0
