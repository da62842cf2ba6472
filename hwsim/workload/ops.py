"""Typed operators: the nodes of an :class:`~hwsim.workload.graph.OperatorGraph`.

Operators are frozen, hashable dataclasses holding shapes and dtypes only (no names,
no results), so identical operators anywhere in a workload share one cost evaluation.
FLOP and byte counts here are properties of the *operator*; how many bytes each memory
level sees depends on the mapping and lives in ``hwsim.cost``.
"""

from __future__ import annotations

from dataclasses import dataclass

from hwsim.dtypes import accumulator_dtype, dtype_bytes
from hwsim.workload.ops_attention import Attention  # noqa: F401 - re-exported with the other ops
from hwsim.workload.ops_embedding import EmbeddingBag
from hwsim.workload.ops_qat import FakeQuant
from hwsim.workload.ops_ssm import CausalConv1d, SelectiveScan
from hwsim.workload.precision import weight_bits_per_param
from hwsim.workload.sparsity import (  # noqa: F401 - re-exported: the ops' pattern helpers
    SPARSITY_PARTS,
    Sparsity,
    SparsitySpec,
    normalize_sparsity,
    parse_sparsity,
    sparsity_for,
    sparsity_problem,
)


@dataclass(frozen=True)
class MatMul:
    """``batch`` independent products of an (m x k) by a (k x n) matrix.

    ``b_is_weight`` marks B as a parameter streamed from memory (a layer's weight);
    ``b_shared`` means the batch shares one B (so B is read once, not ``batch`` times).
    ``sparsity`` names the pattern B was pruned to (``"2:4"``, ``"unstructured:0.3"``,
    ``"block4x4:0.5"``; :func:`parse_sparsity`) or is ``None``.
    ``bias`` adds a bias vector of ``n`` to each output row in the kernel's epilogue
    (one FLOP per output element, the vector read with B).

    Quantized weights (:mod:`hwsim.workload.precision`): ``w_dtype`` is B's stored
    format where it differs from the math ``dtype`` (weight-only quantization: B is read
    packed with one scale, and with ``zero_point`` one zero, per ``group_size`` weights,
    and dequantized in the kernel); ``emulate`` lets a chip without math for ``dtype``
    run the GEMM upcast to its bf16 rate (the result says so) instead of refusing it.
    """

    m: int
    k: int
    n: int
    dtype: str = "bf16"
    batch: int = 1
    b_is_weight: bool = True
    b_shared: bool = False
    sparsity: str | None = None
    bias: bool = False
    w_dtype: str | None = None
    group_size: int = 0
    zero_point: bool = False
    emulate: bool = False

    kind = "matmul"

    @property
    def weight_bits(self) -> float:
        """Stored bits of one element of B (group scales and zeros included)."""
        if self.w_dtype is None:
            return 8.0 * dtype_bytes(self.dtype)
        return weight_bits_per_param(self.w_dtype, self.dtype, self.group_size, self.zero_point)

    @property
    def flops(self) -> float:
        """Dense FLOP (2 per multiply-accumulate, 1 per bias add)."""
        fma = 2.0 * self.batch * self.m * self.k * self.n
        return fma + (self.batch * self.m * self.n if self.bias else 0.0)

    @property
    def a_bytes(self) -> float:
        return self.batch * self.m * self.k * dtype_bytes(self.dtype)

    @property
    def b_bytes(self) -> float:
        copies = 1 if self.b_shared else self.batch
        if self.w_dtype is not None:
            bias = self.n * dtype_bytes(self.dtype) if self.bias else 0.0
            return copies * (self.k * self.n * self.weight_bits / 8 + bias)
        rows = self.k + (1 if self.bias else 0)
        return copies * rows * self.n * dtype_bytes(self.dtype)

    @property
    def c_bytes(self) -> float:
        return self.batch * self.m * self.n * dtype_bytes(accumulator_dtype(self.dtype))

    @property
    def min_bytes(self) -> float:
        """Compulsory traffic: each operand read once, the result written once."""
        return self.a_bytes + self.b_bytes + self.c_bytes


# kind -> (tensors read, tensors written, operations per element) of an ideal fused
# kernel; a chip may state how its kernel library really implements a kind
# (``Chip.vector_kernels``). ``add`` adds a broadcast operand (bias or scalar) to one
# tensor; ``residual_add`` sums two full tensors.
ELEMENTWISE_KINDS: dict[str, tuple[float, float, float]] = {
    "add": (1, 1, 1),
    "residual_add": (2, 1, 1),
    "gelu": (1, 1, 8),
    "silu_mul": (2, 1, 5),
    "softmax": (1, 1, 5),
    "layernorm": (1, 1, 8),
    "rmsnorm": (1, 1, 5),
    "cross_entropy": (1, 1, 6),
    "copy": (1, 1, 0),
    "gelu_bwd": (2, 1, 10),
    "silu_mul_bwd": (3, 2, 10),
    "softmax_bwd": (2, 1, 4),
    "layernorm_bwd": (2, 1, 12),
    "rmsnorm_bwd": (2, 1, 8),
    "add_bwd": (1, 1, 1),
    "residual_add_bwd": (1, 1, 1),
    "router_topk": (1, 1, 4),
    "softcap": (1, 1, 4),
    "softcap_bwd": (2, 1, 5),
    "sigmoid_mul": (2, 1, 5),
    # Dynamic activation quantization of a tensor in the base dtype to a format half
    # (``quantize8``) or a quarter (``quantize4``) as wide, scale per token: one pass
    # reading the row, its amax (abs, max), then scale and convert each element.
    "quantize8": (1, 0.5, 4),
    "quantize4": (1, 0.25, 4),
    # Per-tensor dynamic scale: a first pass reduces the whole tensor's amax.
    "quantize8_tensor": (2, 0.5, 6),
    "quantize4_tensor": (2, 0.25, 6),
    # Static (calibrated) scale: scale and convert only.
    "quantize8_static": (1, 0.5, 2),
    "quantize4_static": (1, 0.25, 2),
    # A per-input-channel smoothing scale that no op before the GEMM absorbs
    # (:mod:`hwsim.workload.smoothing`): one multiply per element, the scale vector
    # being the op's ``vector_bytes``.
    "smooth_scale": (1, 1, 1),
}

PUBLIC_ELEMENTWISE = ("add", "gelu", "silu_mul", "softmax", "layernorm", "rmsnorm")


@dataclass(frozen=True)
class Elementwise:
    """A memory-bound operator over a ``rows`` x ``cols`` tensor (norms, activations,
    softmax, residual adds, loss). For ``silu_mul`` the shape is the output's: two
    tensors of that shape are read. ``vector_bytes``: a per-column operand read once
    besides the tensors (a smoothing scale vector), in bytes."""

    op_kind: str
    rows: int
    cols: int
    dtype: str = "bf16"
    vector_bytes: float = 0.0

    kind = "elementwise"

    @property
    def n_elements(self) -> float:
        return float(self.rows) * self.cols

    @property
    def flops(self) -> float:
        return self.n_elements * ELEMENTWISE_KINDS[self.op_kind][2]

    @property
    def min_bytes(self) -> float:
        n_read, n_write, _ = ELEMENTWISE_KINDS[self.op_kind]
        return (n_read + n_write) * self.n_elements * dtype_bytes(self.dtype) + self.vector_bytes


@dataclass(frozen=True)
class Embedding:
    """Gather ``n_tokens`` rows of a ``vocab`` x ``dim`` table (``backward``: scatter-add
    the gradient rows into the table's gradient)."""

    n_tokens: int
    vocab: int
    dim: int
    dtype: str = "bf16"
    backward: bool = False

    kind = "embedding"

    @property
    def flops(self) -> float:
        return float(self.n_tokens * self.dim) if self.backward else 0.0

    @property
    def min_bytes(self) -> float:
        rows = self.n_tokens * self.dim * dtype_bytes(self.dtype)
        # Forward reads the rows and writes them out; backward reads the gradient rows
        # and read-modify-writes the touched table rows.
        return 3.0 * rows if self.backward else 2.0 * rows


@dataclass(frozen=True)
class Optimizer:
    """One fused AdamW update over ``n_params`` parameters: reads parameters, gradients
    and both moments, writes parameters and both moments."""

    n_params: int
    param_dtype: str = "bf16"
    grad_dtype: str = "bf16"
    state_dtype: str = "fp32"

    kind = "optimizer"

    @property
    def flops(self) -> float:
        return 12.0 * self.n_params

    @property
    def min_bytes(self) -> float:
        p, g, s = (dtype_bytes(d) for d in (self.param_dtype, self.grad_dtype, self.state_dtype))
        return self.n_params * (2 * p + g + 4 * s)


COLLECTIVE_KINDS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send_recv",
                    "host_read", "host_write", "host_update")
"""Collective communication operations; ``host_read``/``host_write`` move one chip's
bytes from/to the memory outside the chips (host DRAM, a weight-streaming appliance, an
NVMe or CXL tier); ``host_update`` is the host CPU's optimizer step on offloaded state."""

PARALLEL_GROUPS = ("tp", "dp", "pp", "ep", "cp", "host")
"""Parallelism groups a collective runs over (tensor, data, pipeline, expert, context),
and ``host``: each chip's own link to the memory outside the chips."""


@dataclass(frozen=True)
class Collective:
    """A collective over the ``group_size`` chips of one parallelism ``group``.

    ``n_bytes`` is the buffer each participant holds: the all-reduce buffer, the
    all-gather *output*, the reduce-scatter *input*, everything one chip sends in an
    all-to-all (to all peers together), or one send/recv message. ``overlap`` marks a
    collective that may run while later compute proceeds (bucketed gradient all-reduce):
    only the ops that name it as a predecessor wait for it. ``prefetch`` marks a
    transfer for the *next* repeat of its segment (double buffering: the next layer's
    weights stream in while this layer computes): it starts with its segment and the
    next repeat (or segment) waits for it. ``tier`` names the memory tier a host transfer
    reaches (``host``, ``nvme``, ``cxl``...; empty: the system's external memory, else its
    host). A ``host_update`` is the optimizer step the host CPU runs on the ``n_bytes``
    of gradients it received (ZeRO-Offload's CPU Adam), timed on the system's host CPU.
    """

    op_kind: str
    n_bytes: float
    group: str
    group_size: int
    dtype: str = "bf16"
    overlap: bool = False
    prefetch: bool = False
    tier: str = ""

    kind = "collective"

    def __post_init__(self) -> None:
        if self.op_kind not in COLLECTIVE_KINDS:
            raise ValueError(f"unknown collective {self.op_kind!r}; expected one of {COLLECTIVE_KINDS}")
        if self.group not in PARALLEL_GROUPS:
            raise ValueError(f"unknown parallel group {self.group!r}; expected one of {PARALLEL_GROUPS}")
        if self.group_size < 1:
            raise ValueError("group_size must be at least 1")
        if (self.group == "host") != self.op_kind.startswith("host_"):
            raise ValueError(f"{self.op_kind} over group {self.group!r}: host transfers, and only they, "
                             "use the 'host' group")

    @property
    def flops(self) -> float:
        """Reductions add one element per received element (reduce-scatter phase)."""
        if self.op_kind not in ("all_reduce", "reduce_scatter"):
            return 0.0
        p = self.group_size
        return (p - 1) / p * self.n_bytes / dtype_bytes(self.dtype)

    @property
    def min_bytes(self) -> float:
        """Bytes the op reads and writes in each chip's own memory (buffer in and out)."""
        return 2.0 * self.n_bytes


Op = (MatMul | Attention | Elementwise | Embedding | Optimizer | Collective | CausalConv1d | SelectiveScan
      | EmbeddingBag | FakeQuant)
"""Any operator."""


def op_label(op: Op) -> str:
    """A short human label of the operator kind (``matmul``, ``rmsnorm``...)."""
    return op.op_kind if isinstance(op, Elementwise | Collective) else op.kind
