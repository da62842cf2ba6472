"""Workloads: model specs (HF config fields) lowered to operator graphs per phase."""

from hwsim.workload.graph import OperatorGraph, Pass, Segment, SegmentRole, Workload
from hwsim.workload.lower import PHASES, lower
from hwsim.workload.ops import Attention, Elementwise, Embedding, MatMul, Op, Optimizer
from hwsim.workload.spec import ModelSpec, list_models, load_model_spec, spec_from_dict

__all__ = [
    "PHASES",
    "Attention",
    "Elementwise",
    "Embedding",
    "MatMul",
    "ModelSpec",
    "Op",
    "OperatorGraph",
    "Optimizer",
    "Pass",
    "Segment",
    "SegmentRole",
    "Workload",
    "list_models",
    "load_model_spec",
    "lower",
    "spec_from_dict",
]
