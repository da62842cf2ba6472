"""Lowering a model spec to a :class:`Workload` for a phase.

Phases (see ``docs/conventions.md``):

- ``prefill``: ``batch`` prompts of ``prompt_len`` tokens from an empty cache; logits
  for the last position of each prompt only (encoders stop at the final hidden states).
- ``decode``: one step producing ``batch`` tokens against a KV cache of
  ``context_len`` tokens.
- ``request``: a prefill, then ``new_tokens`` decode steps, the cache growing by one
  token per step; reports time to first token (the prefill) and time per output token.
- ``train``: one optimizer step over ``batch`` x ``seq_len`` tokens.

Encoder-decoders (T5, BART) read ``prompt_len`` as the source the encoder reads and
the decoder cross-attends to (:mod:`hwsim.workload.encdec`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import replace
from typing import Any

from hwsim.dtypes import dtype_bytes
from hwsim.errors import ConfigError
from hwsim.workload.approx_algorithms import apply_algorithm
from hwsim.workload.decoding import FullKV, Greedy, decoding_resident, parse_decoding, parse_kv_policy
from hwsim.workload.encdec import encdec_passes
from hwsim.workload.graph import Pass, Segment, SegmentRole, Workload
from hwsim.workload.layers import LayerSpec, group_layers
from hwsim.workload.lower_checks import check_positive, checked_inputs
from hwsim.workload.memory import memory_per_chip, sequence_kv_bytes, stage_layers
from hwsim.workload.ops import Sparsity, normalize_sparsity, sparsity_problem
from hwsim.workload.parallel import period_graph, sharded_embedding, sharded_head
from hwsim.workload.plan import PHASES, Plan  # noqa: F401 - PHASES re-exported (hwsim.workload)
from hwsim.workload.precision import Precision, weight_bits_per_param
from hwsim.workload.qat import fake_quant_hook, fake_quant_saved_bytes, qat_notes
from hwsim.workload.quantize import quantize_graph
from hwsim.workload.spec import ModelSpec, load_model_spec
from hwsim.workload.train import train_segments
from hwsim.workload.warnings import lowering_warnings, simulated_stage

LayerRun = tuple[int, tuple[LayerSpec, ...], int]
"""(first layer index, the layers of one period, repeats)."""


def layer_runs(spec: ModelSpec, plan: Plan, precision: Precision | None = None) -> list[LayerRun]:
    """The simulated pipeline stage's layers as runs of repeated periods: consecutive
    identical layers (or periods of layers) fold into one run each; layers whose weight
    dtype ``precision`` overrides differ from their neighbours."""
    return list(_layer_runs(spec, plan, precision))


@functools.lru_cache(maxsize=64)
def _layer_runs(spec: ModelSpec, plan: Plan, precision: Precision | None) -> tuple[LayerRun, ...]:
    # Memoised: a request lowers one pass per generated token over the same layers
    # (grouping compares every LayerSpec, ~0.5 ms a pass for a 32-layer model).
    layers = range(spec.num_hidden_layers) if plan.pp == 1 else stage_layers(
        spec, plan, simulated_stage(spec, plan))
    specs = tuple(spec.layer(i) for i in layers)
    keys = specs
    if precision is not None and precision.layers:
        keys = tuple((s, precision.layer_weights(i)) for s, i in zip(specs, layers, strict=True))  # type: ignore[misc]
    return tuple((first, specs[first - layers.start:first - layers.start + period], repeat)
                 for first, period, repeat in group_layers(keys, layers.start))


def run_name(runs: list[LayerRun], index: int) -> str:
    """``layer`` for a model of one run, else ``layers<first>-<last>``."""
    if len(runs) == 1:
        return "layer"
    first, period, repeat = runs[index]
    return f"layers{first}-{first + len(period) * repeat - 1}"


def layer_segments(spec: ModelSpec, plan: Plan, batch: int, q_len: int, kv_len: int,
                   opts: dict[str, Any]) -> tuple[Segment, ...]:
    """The simulated stage's layers as repeated segments (see :func:`layer_runs`)."""
    prec: Precision | None = opts.get("precision")
    runs = layer_runs(spec, plan, prec)
    return tuple(
        Segment(run_name(runs, k), period_graph(period, plan, batch, q_len, kv_len, opts["dtype"],
                                                opts["attention_impl"], opts["sparsity"],
                                                capacity_factor=opts["moe_capacity_factor"],
                                                precision=prec, first_layer=first),
                repeat, SegmentRole.LAYER, len(period))
        for k, (first, period, repeat) in enumerate(runs))


def _forward_pass(
    spec: ModelSpec, name: str, batch: int, q_len: int, kv_len: int, opts: dict[str, Any]
) -> Pass:
    """One forward pass: what one chip runs (its replica's micro-batch, its share of each
    layer, its stage's layers); without a plan, the whole model on one chip."""
    dtype = opts["dtype"]
    plan: Plan = opts["plan"] or Plan()
    mb = batch // (plan.dp * plan.microbatches)
    local_tok = mb * -(-q_len // plan.cp)
    prec: Precision = opts.get("precision") or Precision.uniform(dtype)
    embed = quantize_graph(sharded_embedding(spec, plan, local_tok, dtype), prec, prec.embeddings)
    segments = [Segment("embed", embed, role=SegmentRole.EMBED),
                *layer_segments(spec, plan, mb, q_len, kv_len, opts)]
    if not spec.encoder_only:
        # Inference servers compute logits for the last position of each sequence only.
        head = quantize_graph(sharded_head(spec, plan, local_tok, mb, dtype), prec, head_weights(spec, prec))
        segments.append(Segment("head", head, role=SegmentRole.HEAD))
    return Pass(name, tuple(segments), tokens=batch * q_len)


def _kv_cache_bytes(spec: ModelSpec, batch: int, n_tokens: int, dtype: str) -> float:
    return batch * sequence_kv_bytes(spec, Plan(), n_tokens, dtype)


def head_weights(spec: ModelSpec, prec: Precision) -> str:
    """The stored dtype of the LM head's weights: a tied head reads the embedding table."""
    return prec.embeddings if spec.tie_word_embeddings else prec.lm_head


def model_weight_bytes(spec: ModelSpec, prec: Precision) -> float:
    """Bytes of all parameters stored under ``prec``: layers at their (overridden) weight
    width with group scales, the embedding tables and the head at their own widths."""
    if prec.is_uniform:
        return spec.param_count() * dtype_bytes(prec.weights)

    def width(dt: str) -> float:
        return weight_bits_per_param(dt, prec.activations, prec.group_size, prec.zero_point) / 8

    emb, head = spec.embedding_param_count(), spec.head_param_count()
    layers = spec.param_count() - emb - head
    total = (layers * width(prec.weights) + emb * dtype_bytes(prec.embeddings)
             + head * dtype_bytes(prec.lm_head))
    for index, dt in prec.layers:
        if index < spec.num_hidden_layers:
            total += spec.layer_param_count(index) * (width(dt) - width(prec.weights))
    return total


def lower(
    spec: ModelSpec,
    phase: str,
    *,
    batch: int = 1,
    prompt_len: int = 512,
    context_len: int = 2048,
    new_tokens: int = 128,
    seq_len: int = 2048,
    n_layers: int | None = None,
    dtype: str = "bf16",
    attention_impl: str = "flash",
    sparsity: str | dict[str, str] | None = None,
    lm_head: bool = True,
    plan: Plan | None = None,
    moe_capacity_factor: float = 1.0,
    precision: str | dict[str, Any] | Precision | None = None,
    weight_dtype: str | None = None,
    kv_dtype: str | None = None,
    attention_window: int | None = None,
    attention_density: float | None = None,
    attention_approx: Any = None,
    decoding: Any = None,
    kv_policy: Any = None,
) -> Workload:
    """Lower ``spec`` for ``phase`` into a :class:`Workload`.

    Parameters
    ----------
    spec : ModelSpec
        The model's hyper-parameters.
    phase : {"prefill", "decode", "request", "train"}
    batch : int
        Sequences processed together.
    prompt_len, context_len, new_tokens, seq_len : int
        Prompt tokens (prefill, request), KV-cache tokens (decode), decode steps
        (request), tokens per sequence (train).
    n_layers : int, optional
        Override the number of layers (e.g. to simulate a slice of a large model); of
        each stack for an encoder-decoder.
    dtype : str
        Weights, activations and KV cache dtype (when no ``precision`` is given).
    attention_impl : {"flash", "naive"}
    sparsity : str or dict, optional
        Pattern the weight GEMMs were pruned to: N:M (``"2:4"``), ``"unstructured:<density>"``
        or ``"block<R>x<C>:<density>"``; or one per part, ``{"attention": ..., "ffn": ...}``.
    lm_head : bool
        Training only: compute the LM head and cross-entropy (else loss on hidden states).
    plan : Plan, optional
        Parallelism plan: the workload is then what one chip runs (see
        :mod:`hwsim.workload.parallel`); with ``plan.pp > 1`` one pipeline stage's
        layers for one micro-batch, which the engine plays out over the pipeline
        (stages need not divide the layers: the busiest stage is simulated, as the
        workload's warnings say).
    moe_capacity_factor : float
        MoE routing imbalance: every expert's buffer is padded to this multiple (at
        least 1) of the mean load, as capacity-factor routers do; scales the expert
        GEMMs and the expert-parallel all-to-alls. 1: uniform routing.
    precision : str, dict or Precision, optional
        Per-tensor-class dtypes: a scheme (``"w4a16"``, ``"w8a8"``, ``"fp8"``,
        ``"fp8-kv"``, ``"nvfp4"``, ``"mxfp4"``...), a mapping of
        :class:`~hwsim.workload.precision.Precision` fields (optionally with ``scheme``),
        or a Precision (see ``docs/precision.md``).
    weight_dtype, kv_dtype : str, optional
        Shorthands: the layer weights' and the KV cache's dtype.
    attention_window : int, optional
        Every layer attends to at most its ``attention_window`` most recent keys
        (sliding-window attention, as Mistral's): scores, K/V reads and the KV cache held
        are capped at the window.
    attention_density : float, optional
        Block-sparse attention on every layer: each query block computes this share (in
        (0, 1]) of its key blocks (BigBird's window + global + random blocks, strided or
        dilated masks at block granularity) and the kernel skips the rest.
    attention_approx : mapping, optional
        Every attention op computed by an approximate algorithm, costed from its steps
        (:mod:`hwsim.workload.approx_algorithms`): ``{"kind": "topk", "k": 64}``,
        ``{"kind": "linformer", "rank": 256}``, ``{"kind": "performer", "features": 256}``
        or ``{"kind": "reformer", "buckets": 64, "rounds": 2}``.
    decoding, kv_policy : spec, mapping or str, optional
        Request phase only: the token-generation strategy and KV-cache policy
        (:mod:`hwsim.workload.decoding`; default greedy over the whole cache).

    The returned workload's ``warnings`` say what was simplified or assumed.
    """
    args: dict[str, Any] = {"batch": batch, "prompt_len": prompt_len, "context_len": context_len,
            "new_tokens": new_tokens, "seq_len": seq_len, "n_layers": n_layers, "dtype": dtype,
            "attention_impl": attention_impl, "sparsity": sparsity, "lm_head": lm_head,
            "moe_capacity_factor": moe_capacity_factor, "precision": precision,
            "weight_dtype": weight_dtype, "kv_dtype": kv_dtype, "attention_window": attention_window,
            "attention_density": attention_density, "attention_approx": attention_approx}
    problem = sparsity_problem(sparsity)
    if problem:
        raise ConfigError([f"workload {spec.name or '<model>'}: sparsity: {problem}"])
    args["sparsity"] = normalize_sparsity(sparsity)
    if attention_window is not None:
        check_positive(f"workload {spec.name or '<model>'}", attention_window=attention_window)
        if spec.encoder_only:
            raise ConfigError([f"workload {spec.name}: attention_window: an encoder attends both ways; "
                               "a sliding window applies to causal models"])
        spec = spec.model_copy(update={"sliding_window": attention_window, "layer_attention": ("sliding",)})
    if attention_density is not None:
        d = attention_density
        if isinstance(d, bool) or not isinstance(d, int | float) or not (math.isfinite(d) and 0 < d <= 1):
            raise ConfigError([f"workload {spec.name or '<model>'}: attention_density: must be in (0, 1], "
                               f"got {d!r}"])
        spec = spec.model_copy(update={"attention_key_density": float(d)})
    workload = _lower(spec, phase, plan, **{k: v for k, v in args.items()
                                           if k not in ("attention_window", "attention_density",
                                                        "attention_approx")})
    if plan is not None and not spec.is_encoder_decoder:
        # What one chip holds: its shares of weights, cache, activations and state.
        sliced = spec if n_layers is None else spec.model_copy(update={"num_hidden_layers": n_layers})
        mem = memory_per_chip(sliced, phase, plan, batch=batch, prompt_len=prompt_len,
                              context_len=context_len, new_tokens=new_tokens, seq_len=seq_len,
                              dtype=workload.params["dtype"], attention_impl=attention_impl,
                              precision=workload.precision)
        # Off-chip tiers' bytes stay under ``<tier>_tier_bytes`` for the placement check.
        resident = {k: v for k, v in mem.as_dict().items() if k not in ("total_bytes", "offloaded_bytes")}
        if workload.params.get("qat"):  # the closed form knows no fake quantization
            resident["activations_bytes"] += fake_quant_saved_bytes(workload.passes[0].segments, plan)
        workload = replace(workload, resident_bytes=resident)
    workload, args, notes = _with_decoding(workload, spec, phase, plan, args, decoding, kv_policy)
    warnings = (*lowering_warnings(spec, phase, plan, workload, args), *workload.warnings, *notes)
    workload = replace(workload, spec=spec, lower_args=args, plan=plan, warnings=warnings)
    if attention_approx is None:
        return workload
    if phase == "train":
        raise ConfigError([f"workload {spec.name or '<model>'}: attention_approx: approximate attention "
                           "is costed for inference; training steps are not modelled"])
    return apply_algorithm(workload, attention_approx)


def _with_decoding(workload: Workload, spec: ModelSpec, phase: str, plan: Plan | None, args: dict[str, Any],
                   decoding: Any,
                   kv_policy: Any) -> tuple[Workload, dict[str, Any], list[str]]:
    """Attach a decoding strategy and KV policy (request phase) and the resident bytes
    they change; greedy over the whole cache changes nothing."""
    source = f"workload {spec.name or '<model>'}"
    strategy = parse_decoding(decoding, f"{source}: decoding")
    policy = parse_kv_policy(kv_policy, f"{source}: kv_policy")
    if isinstance(strategy, Greedy) and policy == FullKV():
        return workload, args, []
    if phase != "request":
        raise ConfigError([f"{source}: decoding: strategies and KV policies apply to phase='request', "
                           f"not {phase!r}"])
    p = workload.params
    kv_dtype = workload.precision.kv_cache if workload.precision is not None else p["dtype"]
    n_layers = args["n_layers"]
    sliced = spec if n_layers is None else spec.model_copy(update={"num_hidden_layers": n_layers})
    resident, notes = decoding_resident(
        strategy, policy, sliced, p["batch"], p["prompt_len"], p["new_tokens"],
        lambda n: _kv_cache_bytes(sliced, p["batch"], n, kv_dtype),
        lambda d: _spec_of(d).param_count() * dtype_bytes(p["dtype"]), dtype_bytes(p["dtype"]))
    if plan is not None and "kv_cache_bytes" in workload.resident_bytes:
        # What one chip holds of the cache: the plan's share of the whole.
        share = workload.resident_bytes["kv_cache_bytes"] / max(_kv_cache_bytes(
            sliced, p["batch"], p["prompt_len"] + p["new_tokens"], kv_dtype), 1e-30)
        resident["kv_cache_bytes"] = resident["kv_cache_bytes"] * share
        if "draft_weights_bytes" in resident:
            resident["draft_weights_bytes"] /= plan.tp * plan.pp
    params = p | {"decoding": strategy.label(), "kv_policy": policy.label()}
    workload = replace(workload, resident_bytes=workload.resident_bytes | resident, params=params)
    return workload, args | {"decoding": strategy, "kv_policy": policy}, notes


def _spec_of(model: ModelSpec | str) -> ModelSpec:
    return model if isinstance(model, ModelSpec) else load_model_spec(model)


def _lower(spec: ModelSpec, phase: str, plan: Plan | None, *, batch: int, prompt_len: int,
           context_len: int, new_tokens: int, seq_len: int, n_layers: int | None, dtype: str,
           attention_impl: str, sparsity: Sparsity, lm_head: bool, moe_capacity_factor: float,
           precision: str | dict[str, Any] | Precision | None, weight_dtype: str | None,
           kv_dtype: str | None) -> Workload:
    source = f"workload {spec.name or '<model>'}"
    spec, prec, qat = checked_inputs(spec, phase, plan, batch=batch, prompt_len=prompt_len,
                                     context_len=context_len, seq_len=seq_len, n_layers=n_layers, dtype=dtype,
                                     attention_impl=attention_impl, sparsity=sparsity, lm_head=lm_head,
                                     moe_capacity_factor=moe_capacity_factor, precision=precision,
                                     weight_dtype=weight_dtype, kv_dtype=kv_dtype)
    dtype, factor = prec.base, moe_capacity_factor
    opts = {"dtype": dtype, "attention_impl": attention_impl, "sparsity": sparsity, "plan": plan,
            "moe_capacity_factor": float(factor), "precision": None if prec.is_uniform else prec}
    # Quantization-aware training keeps weights and GEMMs in base (hwsim.workload.qat).
    weights = model_weight_bytes(spec, Precision.uniform(dtype) if qat else prec)
    params: dict[str, Any] = {"batch": batch, "dtype": dtype, "n_layers": spec.num_hidden_layers,
                              "attention_impl": attention_impl}
    if qat:
        params |= {"precision": prec.label(), "qat": True}
    elif not prec.is_uniform:
        # The GEMMs' math format sets the peak results compare against.
        params |= {"dtype": prec.activations, "precision": prec.label()}
    kv_dtype = prec.kv_cache
    resident = {"weights_bytes": weights}
    passes: tuple[Pass, ...]
    if spec.is_encoder_decoder:
        check_positive(source, prompt_len=prompt_len, context_len=context_len, new_tokens=new_tokens)
        passes, resident["kv_cache_bytes"] = encdec_passes(spec, phase, batch, prompt_len, context_len,
                                                           new_tokens, opts)
        params |= {"prompt_len": prompt_len, "context_len": context_len, "new_tokens": new_tokens}
    elif phase == "prefill":
        check_positive(source, prompt_len=prompt_len)
        passes = (_forward_pass(spec, "prefill", batch, prompt_len, prompt_len, opts),)
        resident["kv_cache_bytes"] = _kv_cache_bytes(spec, batch, prompt_len, kv_dtype)
        params["prompt_len"] = prompt_len
    elif phase == "decode":
        check_positive(source, context_len=context_len)
        # The new token attends to the C cached tokens and to itself.
        passes = (_forward_pass(spec, "decode", batch, 1, context_len + 1, opts),)
        resident["kv_cache_bytes"] = _kv_cache_bytes(spec, batch, context_len + 1, kv_dtype)
        params["context_len"] = context_len
    elif phase == "request":
        check_positive(source, prompt_len=prompt_len, new_tokens=new_tokens)
        steps = [_forward_pass(spec, f"decode{i}", batch, 1, prompt_len + i + 1, opts)
                 for i in range(new_tokens)]
        passes = (_forward_pass(spec, "prefill", batch, prompt_len, prompt_len, opts), *steps)
        resident["kv_cache_bytes"] = _kv_cache_bytes(spec, batch, prompt_len + new_tokens, kv_dtype)
        params |= {"prompt_len": prompt_len, "new_tokens": new_tokens}
    else:
        check_positive(source, seq_len=seq_len)
        mb = batch // ((plan.dp * plan.microbatches) if plan else 1)
        runs = layer_runs(spec, plan or Plan(), prec if qat else None)
        names = [run_name(runs, k) for k in range(len(runs))]
        hook = fake_quant_hook(prec, [(first, len(period)) for first, period, _ in runs]) if qat else None
        segments, saved = train_segments(spec, mb, seq_len, dtype, attention_impl, lm_head, plan,
                                         runs=[(n, period, r)
                                               for n, (_, period, r) in zip(names, runs, strict=True)],
                                         capacity_factor=float(factor), fake_quant=hook)
        # Training steps run eagerly (autograd issues every kernel from the host).
        passes = (Pass("train", segments, tokens=batch * seq_len, eager=True),)
        resident |= {
            "gradients_bytes": spec.param_count() * dtype_bytes(prec.gradients),
            "optimizer_state_bytes": spec.param_count() * 2 * dtype_bytes(prec.optimizer_state),
            "activations_bytes": saved,
        }
        params |= {"seq_len": seq_len, "lm_head": lm_head}
    return Workload(spec.name, phase, passes, resident, params,
                    precision=None if prec.is_uniform or qat else prec,
                    warnings=tuple(qat_notes(prec, plan)) if qat else ())
