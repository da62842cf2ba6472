"""What lowering simplified or assumed, said in words (``Workload.warnings``)."""

from __future__ import annotations

from typing import Any

from hwsim.workload.graph import Workload
from hwsim.workload.layers import layer_weight_params, stage_bounds
from hwsim.workload.ops import Attention
from hwsim.workload.plan import Plan
from hwsim.workload.smoothing import smoothing_notes
from hwsim.workload.spec import ModelSpec


def simulated_stage(spec: ModelSpec, plan: Plan) -> int:
    """The pipeline stage hwsim simulates: the one with the most layers and, among
    those, the most weights (it takes longest; the engine times every stage as it)."""
    bounds = stage_bounds(spec.num_hidden_layers, plan.pp)

    def load(stage: int) -> tuple[int, float]:
        first, end = bounds[stage]
        return end - first, sum(sum(layer_weight_params(spec.layer(i))) for i in range(first, end))

    return max(range(plan.pp), key=load)


def _context_tokens(phase: str, args: dict[str, Any]) -> int:
    return {"prefill": args["prompt_len"], "decode": args["context_len"] + 1,
            "request": args["prompt_len"] + args["new_tokens"], "train": args["seq_len"]}[phase]


def _layer_kinds(spec: ModelSpec) -> list[str]:
    return sorted({spec.layer(i).label for i in range(spec.num_hidden_layers)})


def lowering_warnings(spec: ModelSpec, phase: str, plan: Plan | None, workload: Workload,
                      args: dict[str, Any]) -> tuple[str, ...]:
    """The model's own notes, then what this lowering assumed."""
    out = list(spec.notes)
    n_layers = args.get("n_layers")
    full = spec.num_encoder_layers if spec.is_encoder_decoder else spec.num_hidden_layers  # per stack
    if n_layers is not None and n_layers > full:
        out.append(f"n_layers={n_layers} exceeds the model's {full} layers: its layer pattern is repeated")
    elif n_layers is not None and n_layers < full:
        sliced = spec.with_layers(n_layers)
        missing = sorted(set(_layer_kinds(spec)) - set(_layer_kinds(sliced)))
        if missing:
            out.append(f"n_layers={n_layers}: the first {n_layers} layers only; the model's "
                       f"{'; '.join(missing)} layers are not in the slice")
    tokens = _context_tokens(phase, args)
    limit = spec.context_limit
    if limit is not None and tokens > limit:
        how = "with its rope_scaling" if spec.rope_scaling_factor else "max_position_embeddings"
        out.append(f"context of {tokens} tokens exceeds the {limit} the model is made for ({how}); "
                   "simulated anyway")
    sliced_spec = spec if n_layers is None else spec.with_layers(n_layers)
    if plan is not None and plan.pp > 1 and sliced_spec.num_hidden_layers % plan.pp:
        bounds = stage_bounds(sliced_spec.num_hidden_layers, plan.pp)
        sizes = sorted({e - f for f, e in bounds}, reverse=True)
        stage = simulated_stage(sliced_spec, plan)
        first, end = bounds[stage]
        out.append(f"pp={plan.pp} over {sliced_spec.num_hidden_layers} layers: stages of "
                   f"{' and '.join(map(str, sizes))} layers; stage {stage} (layers {first}-{end - 1}) "
                   "simulated and every stage timed as it, an upper bound")
    out += _mla_forms(workload)
    out += smoothing_notes(workload)
    factor = args.get("moe_capacity_factor", 1.0)
    if spec.is_moe and factor > 1:
        out.append(f"MoE capacity factor {factor:g}: every expert's buffer is padded to {factor:g}x "
                   "the mean load (expert GEMMs and all-to-alls scale with it)")
    return tuple(dict.fromkeys(out))


def _mla_forms(workload: Workload) -> list[str]:
    forms: dict[str, list[str]] = {}
    for p in workload.passes:
        for seg in p.segments:
            for _, op in seg.graph.ops():
                if isinstance(op, Attention) and op.variant.startswith("mla"):
                    names = forms.setdefault(op.variant.split()[1], [])
                    kind = "decode" if p.name.startswith("decode") else p.name
                    if kind not in names:
                        names.append(kind)
    if not forms:
        return []
    said = [f"{form} form for {', '.join(kinds)}" for form, kinds in sorted(forms.items())]
    return ["MLA: " + "; ".join(said) + " (the one with fewer FLOPs: absorbed attends over the "
            "compressed latent, expanded up-projects every key)"]
