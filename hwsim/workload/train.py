"""Training step: forward over every token with LM head and loss, backward (data and
weight gradients) layer by layer in reverse, then one fused AdamW update.

Recompute: full recompute runs each layer's forward again before its backward (spacing
checkpoints every ``n`` layers changes the memory, not the work); selective recompute
(Korthikanti et al. 2022) runs only the attention core again. A placement
(:attr:`Plan.placement`) streams each tier's share of a layer's weights in for the forward
and again for the backward, and of its gradients out; each tier's share of the saved
activations out during the forward and back in before the layer's backward; and each
tier's share of the optimizer's gradients out to the host, where the host CPU updates
them (``host_update``: ZeRO-Offload's CPU Adam) and the updated weights come back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from hwsim.dtypes import dtype_bytes
from hwsim.workload.graph import OperatorGraph, Pass, Segment, SegmentRole
from hwsim.workload.layers import LayerSpec
from hwsim.workload.ops import Attention, Collective, Elementwise, Embedding, MatMul, Op, Optimizer
from hwsim.workload.ops_qat import FakeQuant
from hwsim.workload.parallel import layer_param_bytes, period_graph, sharded_embedding
from hwsim.workload.plan import Plan
from hwsim.workload.spec import ModelSpec

#: The backward of a collective moves the same bytes the other way round.
_BACKWARD_COLLECTIVE = {"all_reduce": "all_reduce", "all_gather": "reduce_scatter",
                        "reduce_scatter": "all_gather", "all_to_all": "all_to_all",
                        "send_recv": "send_recv"}

_BACKWARD_KIND = {
    "gelu": "gelu_bwd",
    "silu_mul": "silu_mul_bwd",
    "softmax": "softmax_bwd",
    "layernorm": "layernorm_bwd",
    "rmsnorm": "rmsnorm_bwd",
    "add": "add_bwd",
    "residual_add": "residual_add_bwd",
    "router_topk": "softmax_bwd",
    "cross_entropy": "copy",
    "copy": "copy",
    "softcap": "softcap_bwd",
    "sigmoid_mul": "silu_mul_bwd",
}


def backward_ops(name: str, op: Op) -> list[tuple[str, Op]]:
    """The gradient operators of one forward operator.

    A weight GEMM Y = X W needs dX = dY W^T (m x n by n x k) and dW = X^T dY
    (k x m by m x n, both operands activations); an activation GEMM needs two data
    gradients.
    """
    if isinstance(op, MatMul):
        dx = MatMul(op.m, op.n, op.k, op.dtype, op.batch, op.b_is_weight, op.b_shared)
        dw = MatMul(op.k, op.m, op.n, op.dtype, op.batch, b_is_weight=False)
        return [(f"{name}_dgrad", dx), (f"{name}_wgrad", dw)]
    if isinstance(op, Attention | FakeQuant):  # fake quant: the straight-through gradient
        return [(f"{name}_bwd", replace(op, backward=True))]
    if isinstance(op, Elementwise):
        return [(f"{name}_bwd", Elementwise(_BACKWARD_KIND[op.op_kind], op.rows, op.cols, op.dtype))]
    if isinstance(op, Embedding):
        return [(f"{name}_bwd", Embedding(op.n_tokens, op.vocab, op.dim, op.dtype, backward=True))]
    if isinstance(op, Collective) and op.group == "host":
        return []  # streams of the backward pass are added by the layer's backward
    if isinstance(op, Collective) and op.group != "cp":
        kind = _BACKWARD_COLLECTIVE[op.op_kind]
        return [(f"{name}_bwd", Collective(kind, op.n_bytes, op.group, op.group_size, op.dtype))]
    if isinstance(op, Collective):  # context parallel: K/V gradients are reduce-scattered back
        return [(f"{name}_bwd", Collective("reduce_scatter", op.n_bytes, "cp", op.group_size, op.dtype))]
    return []


def loss_graph(spec: ModelSpec, n_tokens: int, dtype: str, lm_head: bool) -> OperatorGraph:
    """Final norm, LM head over every token and cross-entropy (fused forward and
    gradient of the logits), then the head's backward. Without ``lm_head`` the loss
    is taken on the hidden states."""
    g = OperatorGraph()
    d = spec.hidden_size
    if spec.encoder_only:
        g.add_op("final_norm", Elementwise("copy", n_tokens, d, dtype))
    else:
        g.add_op("final_norm", Elementwise(spec.norm, n_tokens, d, dtype))
    if lm_head:
        g.add_op("lm_head", MatMul(n_tokens, d, spec.vocab_size, dtype), ["final_norm"])
        g.add_op("cross_entropy", Elementwise("cross_entropy", n_tokens, spec.vocab_size, dtype), ["lm_head"])
        last = "cross_entropy"
    else:
        g.add_op("loss", Elementwise("cross_entropy", n_tokens, d, dtype), ["final_norm"])
        last = "loss"
    fwd_part = OperatorGraph()
    for name, op in g.ops():
        fwd_part.add_op(name, op, list(g.predecessors(name)))
    prev = [last]
    for name, op in reversed(list(fwd_part.ops())):
        if name in ("cross_entropy", "loss"):
            continue  # the fused loss kernel already wrote the logits' gradient
        for bname, bop in backward_ops(name, op):
            g.add_op(bname, bop, prev)
            prev = [bname]
    return g


def train_segments(
    spec: ModelSpec, batch: int, seq_len: int, dtype: str, impl: str, lm_head: bool,
    plan: Plan | None = None, runs: list[tuple[str, tuple[LayerSpec, ...], int]] | None = None,
    capacity_factor: float = 1.0, fake_quant: Callable[[OperatorGraph, int], OperatorGraph] | None = None,
) -> tuple[tuple[Segment, ...], float]:
    """Segments of one optimizer step (one chip's share of it under ``plan``; with
    pipeline parallelism, one stage's layers for one micro-batch) and the bytes of
    activations kept for backward. ``runs`` are the stage's layers as (segment name,
    one period's layers, repeats); by default every layer of the model as the first.
    ``fake_quant`` (quantization-aware training, :mod:`hwsim.workload.qat`) rewrites
    the forward graph of run ``k`` before its backward is derived from it."""
    plan = plan or Plan()
    n_tok = batch * -(-seq_len // plan.cp)
    if runs is None:
        runs = [("layer", (spec.layer(0),), spec.num_hidden_layers // plan.pp)]
    emb = sharded_embedding(spec, plan, n_tok, dtype)
    head = loss_graph(spec.model_copy(update={"vocab_size": -(-spec.vocab_size // plan.tp)}),
                      n_tok, dtype, lm_head)
    fwd_segs, bwd_segs = [], []
    saved = 0.0
    for k, (name, period, repeat) in enumerate(runs):
        fwd = period_graph(period, plan, batch, seq_len, seq_len, dtype, impl,
                           capacity_factor=capacity_factor)
        if fake_quant is not None:
            fwd = fake_quant(fwd, k)
        period_bytes = sum(layer_param_bytes(lyr, plan, dtype) for lyr in period)
        bwd = _layer_backward(plan, fwd, dtype, period_bytes)
        if plan.zero_stage == 3 and plan.dp > 1:
            fwd = _prepend(fwd, "weight_gather", Collective("all_gather", period_bytes, "dp", plan.dp, dtype))
        per_period = sum(_output_bytes(op) for _, op in fwd.ops())
        if plan.full_recompute:  # only the layer inputs (every n-th layer's)
            per_period = len(period) * n_tok * spec.hidden_size * dtype_bytes(dtype) / plan.recompute_every
        if plan.placement:
            _placed_training_streams(fwd, bwd, plan, period_bytes, per_period, dtype)
        fwd_segs.append(Segment(name, fwd, repeat, SegmentRole.LAYER, len(period)))
        bwd_name = "layer_bwd" if name == "layer" else f"{name}_bwd"
        bwd_segs.append(Segment(bwd_name, bwd, repeat, SegmentRole.LAYER_BWD, len(period)))
        saved += repeat * per_period
    emb_bwd = OperatorGraph()
    prev: list[str] = []
    for bname, bop in (x for name, op in reversed(list(emb.ops())) for x in backward_ops(name, op)):
        emb_bwd.add_op(bname, bop, prev)
        prev = [bname]
    n_params = spec.param_count() // (plan.tp * plan.pp)
    if plan.zero_stage >= 1:
        n_params //= plan.dp
    if "optimizer" in plan.offload:
        _offloaded_update(emb_bwd, plan, n_params * dtype_bytes(dtype), dtype, prev)
    elif plan.off_chip_shares("optimizer"):
        _placed_update(emb_bwd, plan, n_params, dtype, prev)
    else:
        emb_bwd.add_op("adamw", Optimizer(n_params, dtype, dtype), prev)
    if plan.zero_stage in (1, 2) and plan.dp > 1:
        # The updated shards are gathered back into every replica's weights.
        full = n_params * plan.dp * dtype_bytes(dtype)
        emb_bwd.add_op("param_gather", Collective("all_gather", full, "dp", plan.dp, dtype), emb_bwd.sinks)
    segments = (
        Segment("embed", emb, role=SegmentRole.EMBED),
        *fwd_segs,
        Segment("loss", head, role=SegmentRole.LOSS),
        *reversed(bwd_segs),
        Segment("embed_bwd_optimizer", emb_bwd, role=SegmentRole.EMBED_BWD_OPTIMIZER),
    )
    return segments, saved


def runs_once_per_step(plan: Plan | None, role: SegmentRole, op: Op) -> bool:
    """Whether ``op``, of a training step's segment of ``role``, runs once per
    optimizer step rather than once per micro-batch.

    The optimizer and what serves it run once: the update, the gather of the updated
    shards and the transfers of an offloaded update (the data-parallel and host
    collectives of its segment). A replica that keeps whole gradients (ZeRO 0 and 1)
    adds every micro-batch's gradients into them and reduces them over data parallel
    once, after the last micro-batch (DDP's ``no_sync``); under ZeRO 2 and 3 a rank
    keeps only its shard of the gradients, so each micro-batch's are reduce-scattered
    as its backward produces them.
    """
    if isinstance(op, Optimizer):
        return True
    if not isinstance(op, Collective):
        return False
    if role is SegmentRole.EMBED_BWD_OPTIMIZER:
        return op.group in ("dp", "host")
    return op.group == "dp" and op.overlap and (plan or Plan()).zero_stage < 2


def accumulation_pass(step: Pass, plan: Plan | None) -> Pass:
    """The part of training pass ``step`` that every micro-batch but the last runs under
    gradient accumulation: ``step`` without what runs once per step
    (:func:`runs_once_per_step`); segments left empty are dropped."""
    segments = []
    for seg in step.segments:
        graph = seg.graph
        dropped = {name for name, op in graph.ops() if runs_once_per_step(plan, seg.role, op)}
        kept = OperatorGraph()
        for name, op in graph.ops():
            if name not in dropped:
                kept.add_op(name, op, _kept_predecessors(graph, name, dropped))
        if kept.number_of_nodes():
            segments.append(replace(seg, graph=kept))
    return replace(step, segments=tuple(segments))


def _kept_predecessors(graph: OperatorGraph, name: str, dropped: set[str]) -> list[str]:
    """Predecessors of ``name``, a dropped one standing for its own (so the order of
    what is kept does not change)."""
    out: list[str] = []
    for pred in graph.predecessors(name):
        for p in ([pred] if pred not in dropped else _kept_predecessors(graph, pred, dropped)):
            if p not in out:
                out.append(p)
    return out


def _offloaded_update(g: OperatorGraph, plan: Plan, shard_bytes: float, dtype: str, prev: list[str]) -> None:
    """The optimizer runs where its state lies (ZeRO-Offload's CPU Adam, MemoryX): the
    gradients go out and the updated weights come back, unless the weights stream
    anyway. The off-chip update itself is not timed: both systems overlap it with the
    next step (ZeRO-Offload's delayed parameter update; MemoryX updates while streaming)."""
    if "weights" in plan.offload:
        return
    g.add_op("grads_out", Collective("host_write", shard_bytes, "host", 1, dtype), prev)
    g.add_op("weights_in", Collective("host_read", shard_bytes, "host", 1, dtype), ["grads_out"])


def _placed_update(g: OperatorGraph, plan: Plan, n_params: int, dtype: str, prev: list[str]) -> None:
    """The optimizer split by ``plan.placement``: the on-chip share's AdamW on the chip,
    and for each off-chip tier its share's gradients out, the host CPU's update of them
    and the updated weights back in; a share of the weights that lies in the same tier
    already streams its gradients out and its weights in (so those bytes are not moved
    twice)."""
    shares = plan.shares("optimizer")
    weights = plan.off_chip_shares("weights")
    width = dtype_bytes(dtype)
    on_chip = shares.get("device", 0.0)
    after = list(prev)
    if on_chip > 0:
        g.add_op("adamw", Optimizer(max(1, round(on_chip * n_params)), dtype, dtype), prev)
    for tier, share in plan.off_chip_shares("optimizer").items():
        moved = max(0.0, share - weights.get(tier, 0.0)) * n_params * width
        last = after
        if moved:
            g.add_op(f"grads_out_{tier}", Collective("host_write", moved, "host", 1, dtype, tier=tier), last)
            last = [f"grads_out_{tier}"]
        g.add_op(f"host_update_{tier}", Collective("host_update", share * n_params * width, "host", 1, dtype,
                                                   tier=tier), last)
        last = [f"host_update_{tier}"]
        if moved:
            g.add_op(f"weights_in_{tier}", Collective("host_read", moved, "host", 1, dtype, tier=tier), last)


def _placed_training_streams(fwd: OperatorGraph, bwd: OperatorGraph, plan: Plan, param_bytes: float,
                             saved_bytes: float, dtype: str) -> None:
    """Add a layer's placement streams beyond the forward's weights (which
    :func:`hwsim.workload.parallel.placed_streams` adds): saved activations out in the
    forward and back in for the backward; weights in again and gradients out in the
    backward."""
    for tier, share in plan.off_chip_shares("activations").items():
        fwd.add_op(f"acts_out_{tier}", Collective("host_write", share * saved_bytes, "host", 1, dtype,
                                                  prefetch=True, tier=tier))
        bwd.add_op(f"acts_in_{tier}", Collective("host_read", share * saved_bytes, "host", 1, dtype,
                                                 prefetch=True, tier=tier))
    if plan.zero_stage == 3:  # each rank streams its shard only (the all-gather joins them)
        param_bytes /= plan.dp
    for tier, share in plan.off_chip_shares("weights").items():
        bwd.add_op(f"weights_stream_{tier}", Collective("host_read", share * param_bytes, "host", 1, dtype,
                                                        prefetch=True, tier=tier))
        bwd.add_op(f"grads_stream_{tier}", Collective("host_write", share * param_bytes, "host", 1, dtype,
                                                      prefetch=True, tier=tier))


def _prepend(g: OperatorGraph, name: str, op: Op) -> OperatorGraph:
    """``g`` with ``op`` run before its sources."""
    out = OperatorGraph()
    out.add_op(name, op)
    for n, o in g.ops():
        out.add_op(n, o, list(g.predecessors(n)) or [name])
    return out


def _layer_backward(plan: Plan, fwd: OperatorGraph, dtype: str, param_bytes: float) -> OperatorGraph:
    """One layer's (or period's) backward: optional recompute of its forward, the
    gradient operators in reverse, and the data-parallel gradient reduction of its
    ``param_bytes`` bucket, which overlaps the layers' backward still to come."""
    g = OperatorGraph()
    prev: list[str] = []
    if plan.zero_stage == 3 and plan.dp > 1:
        g.add_op("weight_gather", Collective("all_gather", param_bytes, "dp", plan.dp, dtype))
        prev = ["weight_gather"]
    if "weights" in plan.offload:
        # The weights stream in again for the backward, and the gradients stream out.
        size = param_bytes
        g.add_op("weights_stream", Collective("host_read", size, "host", 1, dtype, prefetch=True))
        g.add_op("grads_stream", Collective("host_write", size, "host", 1, dtype, prefetch=True))
    if plan.recompute:
        for name, op in fwd.ops():
            if isinstance(op, Collective) and op.group == "host":
                continue
            if not plan.full_recompute and not isinstance(op, Attention):
                continue  # selective: only the attention core runs again
            g.add_op(f"recompute_{name}", op, prev)
            prev = [f"recompute_{name}"]
    for name, op in reversed(list(fwd.ops())):
        for bname, bop in backward_ops(name, op):
            g.add_op(bname, bop, prev)
            prev = [bname]
    if plan.dp > 1:
        kind = "reduce_scatter" if plan.zero_stage >= 2 else "all_reduce"
        sync = Collective(kind, param_bytes, "dp", plan.dp, dtype, overlap=True)
        g.add_op("grad_sync", sync, prev)
    return g


def _output_bytes(op: Op) -> float:
    """Bytes of an operator's output: what autograd keeps for the backward pass."""
    if isinstance(op, MatMul):
        return op.c_bytes
    if isinstance(op, Attention):
        return op.qo_bytes
    if isinstance(op, Elementwise):
        return op.n_elements * dtype_bytes(op.dtype)
    if isinstance(op, Embedding):
        return op.n_tokens * op.dim * dtype_bytes(op.dtype)
    if isinstance(op, FakeQuant):
        return op.saved_bytes
    return 0.0
