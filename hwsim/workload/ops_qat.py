"""The fake-quantization operator of quantization-aware training (QAT).

Fake quantization keeps a tensor in its training dtype but rounds it to the values a
narrower format can hold, so that training sees the quantization error: each step finds
the tensor's absolute maximum per scale group (amax), derives a scale from it, then
quantizes (scale, round, clamp) and dequantizes (rescale) every element. The backward
is the straight-through estimator (Bengio et al. 2013, https://arxiv.org/abs/1308.3432):
the gradient passes unchanged where the element was in range and is zeroed where it was
clamped, a mask the forward stored (PyTorch's ``fake_quantize_per_tensor_affine_cachemask``).
"""

from __future__ import annotations

from dataclasses import dataclass

from hwsim.dtypes import dtype_bytes

#: Bytes of one scale (fp32, as PyTorch's observers and fake-quant modules keep them).
SCALE_BYTES = 4.0
#: Bytes of one element of the straight-through estimator's mask (a bool tensor).
MASK_BYTES = 1.0
#: Unfused forward kernels: the amax reduction, the scale computation and the
#: quantize-dequantize pass (which writes the output and the mask).
FORWARD_KERNELS = 3
#: Lane operations per element: abs and max (amax); scale, round, clamp (min and max)
#: and rescale (quantize-dequantize); one compare for the mask.
FORWARD_OPS_PER_ELEMENT = 8.0
#: Lane operations per scale: amax divided by the format's largest value, floored at eps.
OPS_PER_SCALE = 2.0
#: Backward: one select (gradient where the mask is set, else zero) per element.
BACKWARD_OPS_PER_ELEMENT = 1.0


@dataclass(frozen=True)
class FakeQuant:
    """Fake quantization of a ``rows`` x ``cols`` tensor held in ``dtype`` to the format
    ``target``, with ``n_scales`` scale groups (each an amax reduction and a scale);
    ``backward``: its straight-through-estimator gradient instead.

    ``tensor`` says what is quantized (``weight`` or ``activation``, for the per-op
    frame). Forward (three unfused kernels, bytes):

    - amax: read the tensor, write ``n_scales`` amaxes;
    - scale: read and write ``n_scales`` values;
    - quantize-dequantize: read the tensor and the scales, write the dequantized
      tensor (in ``dtype``) and a one-byte mask per element.

    Backward (one kernel): read the output gradient and the mask, write the input
    gradient (both in ``dtype``).
    """

    rows: int
    cols: int
    n_scales: int
    target: str
    dtype: str = "bf16"
    tensor: str = "activation"
    backward: bool = False

    kind = "fake_quant"

    @property
    def n_elements(self) -> float:
        return float(self.rows) * self.cols

    @property
    def n_kernels(self) -> int:
        return 1 if self.backward else FORWARD_KERNELS

    @property
    def flops(self) -> float:
        """Vector-lane operations (no GEMM work; counted as FLOP like other element-wise ops)."""
        if self.backward:
            return BACKWARD_OPS_PER_ELEMENT * self.n_elements
        return FORWARD_OPS_PER_ELEMENT * self.n_elements + OPS_PER_SCALE * self.n_scales

    @property
    def read_bytes(self) -> float:
        size = self.n_elements * dtype_bytes(self.dtype)
        if self.backward:
            return size + self.n_elements * MASK_BYTES
        return 2.0 * size + 2.0 * self.n_scales * SCALE_BYTES

    @property
    def write_bytes(self) -> float:
        size = self.n_elements * dtype_bytes(self.dtype)
        if self.backward:
            return size
        return size + self.n_elements * MASK_BYTES + 2.0 * self.n_scales * SCALE_BYTES

    @property
    def min_bytes(self) -> float:
        """Bytes read and written by its kernels (see the class docstring)."""
        return self.read_bytes + self.write_bytes

    @property
    def saved_bytes(self) -> float:
        """What autograd keeps for the backward: the dequantized output (the GEMM saves
        it as its operand) and the mask."""
        return 0.0 if self.backward else self.n_elements * (dtype_bytes(self.dtype) + MASK_BYTES)
