"""hwsim: a hardware accelerator simulator and design-space explorer for transformers.

>>> import hwsim
>>> arch = hwsim.load_arch("h100-sxm")
>>> w = hwsim.load_workload("llama2-7b", phase="decode", batch=8, context_len=2048)
>>> r = hwsim.simulate(w, arch)
>>> round(r.latency_s * 1e3) > 0
True
"""

from hwsim import ops, planner, sweep  # sweep: a callable module, hwsim.sweep(spec) runs a sweep
from hwsim.accuracy import accuracy_delta, published_accuracy
from hwsim.api import find_capacity, find_replicas, load_workload, serve, simulate
from hwsim.arch import Chip, list_archs, load_arch
from hwsim.arch.system import System, list_systems, load_system
from hwsim.caches import CostCache, ServeCache
from hwsim.cost.datacenter import Datacenter, Node
from hwsim.datacenter import list_datacenters, load_datacenter, load_node
from hwsim.engine.serve.metrics import SLO
from hwsim.engine.serve.requests import Requests
from hwsim.engine.serve.result import ServeResult
from hwsim.errors import ConfigError, HwsimError, MappingError
from hwsim.planner import rank_plans
from hwsim.ranking import ServingComparison, compare_serving, rank
from hwsim.result import Result
from hwsim.sweep import SweepResult, SweepSpec
from hwsim.sweep.check import load_spec as load_sweep_spec
from hwsim.technology import load_technology
from hwsim.workload import Workload, list_models, load_model_spec
from hwsim.workload.plan import Plan
from hwsim.workload.pruning import AttentionApprox, approximate_attention
from hwsim.workload.tiers import flexgen_plan, zero_infinity_plan, zero_offload_plan

__version__ = "0.1.0"

__all__ = [
    "AttentionApprox",
    "approximate_attention",
    "Datacenter",
    "Node",
    "ServingComparison",
    "compare_serving",
    "list_datacenters",
    "load_datacenter",
    "load_node",
    "rank",
    "accuracy_delta",
    "published_accuracy",
    "Plan",
    "flexgen_plan",
    "zero_infinity_plan",
    "zero_offload_plan",
    "Requests",
    "SLO",
    "ServeResult",
    "serve",
    "find_capacity",
    "find_replicas",
    "planner",
    "rank_plans",
    "System",
    "list_systems",
    "load_system",
    "Chip",
    "ConfigError",
    "CostCache",
    "ServeCache",
    "HwsimError",
    "MappingError",
    "Result",
    "Workload",
    "list_archs",
    "list_models",
    "load_arch",
    "load_model_spec",
    "load_workload",
    "ops",
    "simulate",
    "SweepResult",
    "SweepSpec",
    "load_sweep_spec",
    "load_technology",
    "sweep",
]
