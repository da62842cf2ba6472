"""Precision per tensor class: what each kind of tensor is stored and computed in.

A :class:`Precision` names a dtype for weights, GEMM activations, the KV cache, the
embedding table, the LM head, gradients and optimizer state, with per-layer weight
overrides and the group size of weight-only quantization. The rules it implies
(applied to the lowered graphs by :mod:`hwsim.workload.quantize`):

- weights as narrow as the activations (``w8a8``, ``fp8``, ``nvfp4``): the GEMM runs
  in that format on the matrix units;
- weights narrower than the activations (``w4a16``, ``w8a16``): weight-only
  quantization; the GEMM runs at the activation rate, its weights read packed at their
  own width plus one scale (and, with ``zero_point``, one packed zero) per
  ``group_size`` weights, and dequantized in the kernel;
- activations narrower than the ``base`` dtype (norms, residuals, softmax stay in
  ``base``): each weight GEMM's input is quantized first, with a dynamic amax scale
  per token (``act_scale="per_token"``), per tensor (a second pass for the global
  amax) or a static calibrated scale;
- the KV cache in its own dtype: attention reads it at that width (FlashAttention-style
  kernels dequantize it on the fly);
- ``smoothing`` (SmoothQuant, AWQ): per-input-channel scales folded into the op before
  each quantized layer GEMM where it can absorb them, otherwise an explicit multiply
  or none (:mod:`hwsim.workload.smoothing`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from hwsim.dtypes import FORMATS, dtype_bits, normalize_dtype
from hwsim.errors import ConfigError

#: Width of the per-group scale of weight-only quantization (fp16, as GPTQ/AWQ store it).
GROUP_SCALE_BITS = 16.0
ACT_SCALES = ("per_token", "per_tensor", "static")
ON_UNSUPPORTED = ("emulate", "refuse")
#: The smoothing schemes (:mod:`hwsim.workload.smoothing`, kept here to avoid a cycle).
SMOOTHINGS = ("none", "smoothquant", "smoothquant-full", "awq")


@dataclass(frozen=True)
class Precision:
    """The dtype of each tensor class (see the module docstring for the rules).

    Attributes
    ----------
    weights, activations, kv_cache : str
        Layer weights, the inputs of weight GEMMs, the KV cache.
    embeddings, lm_head : str
        Embedding table and LM head weights (``lm_head`` also the head GEMM's weights).
    gradients, optimizer_state : str
        Training: gradients (and the master weights' update) and the AdamW moments.
    base : str
        Everything else: norms, residual stream, softmax, attention math, collectives.
    group_size : int
        Weight-only quantization: weights sharing one scale along K (0: one scale per
        output channel, negligible bytes).
    zero_point : bool
        Weight-only quantization stores an asymmetric zero per group, packed at the
        weight width (AWQ's ``qzeros``).
    act_scale : {"per_token", "per_tensor", "static"}
        How quantized activations get their scale.
    layers : tuple of (int, str)
        Per-layer weight dtype overrides, e.g. ``((0, "bf16"), (31, "bf16"))``.
    on_unsupported : {"emulate", "refuse"}
        A GEMM format the chip has no math for: emulate it (upcast in the kernel, at the
        ``base`` rate, said in the result's warnings) or refuse the run.
    qat : bool
        Training: fake-quantize the quantized tensors (quantization-aware training, GEMMs
        at ``base``; :mod:`hwsim.workload.qat`). Integer formats in training are read
        as QAT anyway; a float format (fp8, mxfp8, nvfp4...) needs it, since its training
        might mean real low-precision GEMMs, which hwsim does not model.
    smoothing : {"none", "smoothquant", "smoothquant-full", "awq"}
        Per-input-channel smoothing scales of the quantized layer GEMMs
        (:mod:`hwsim.workload.smoothing`): where each is folded, multiplied explicitly
        or left out.
    name : str
        The scheme's label.
    """

    weights: str = "bf16"
    activations: str = "bf16"
    kv_cache: str = "bf16"
    embeddings: str = "bf16"
    lm_head: str = "bf16"
    gradients: str = "bf16"
    optimizer_state: str = "fp32"
    base: str = "bf16"
    group_size: int = 128
    zero_point: bool = False
    act_scale: str = "per_token"
    layers: tuple[tuple[int, str], ...] = field(default=())
    on_unsupported: str = "emulate"
    qat: bool = False
    smoothing: str = "none"
    name: str = ""

    @classmethod
    def uniform(cls, dtype: str) -> Precision:
        """Every tensor in ``dtype`` (hwsim's behaviour before precisions existed):
        optimizer state stays fp32."""
        d = normalize_dtype(dtype)
        return cls(d, d, d, d, d, d, "fp32", d, name=d)

    def layer_weights(self, index: int) -> str:
        """Weight dtype of layer ``index`` (its override, else :attr:`weights`)."""
        return dict(self.layers).get(index, self.weights)

    @property
    def is_uniform(self) -> bool:
        """Every class but optimizer state in one dtype, no overrides: no quantization pass."""
        return (len({self.weights, self.activations, self.kv_cache, self.embeddings, self.lm_head,
                     self.gradients, self.base}) == 1 and not self.layers)

    def label(self) -> str:
        return self.name or (f"w{self.weights}-a{self.activations}-kv{self.kv_cache}")

    def as_dict(self) -> dict[str, Any]:
        return {f.name: (dict(v) if f.name == "layers" else v)
                for f in fields(self) for v in (getattr(self, f.name),)}


def weight_bits_per_param(weights: str, activations: str, group_size: int, zero_point: bool) -> float:
    """Stored bits per weight: its format's width, plus (weight-only quantization, weights
    narrower than the activations, not block-scaled) one fp16 scale and optionally one
    packed zero per ``group_size`` weights."""
    bits = dtype_bits(weights)
    if not is_weight_only(weights, activations) or FORMATS[weights].block_size or not group_size:
        return bits
    return bits + (GROUP_SCALE_BITS + (FORMATS[weights].element_bits if zero_point else 0.0)) / group_size


def is_weight_only(weights: str, activations: str) -> bool:
    """Weights stored narrower than the activations they multiply (dequantized in the kernel)."""
    return dtype_bits(weights) < dtype_bits(activations) - 1e-9


def _quantizes_gemms(prec: Precision) -> bool:
    """Whether the layer GEMMs' weights or inputs are narrower than ``base``."""
    return (is_weight_only(prec.weights, prec.activations)
            or dtype_bits(prec.activations) < dtype_bits(prec.base) - 1e-9)


_W4 = {"weights": "int4", "activations": "bf16"}
#: Named schemes: overrides of the all-bf16 default.
SCHEMES: dict[str, dict[str, Any]] = {
    "bf16": {}, "w16a16": {},
    "fp16": {c: "fp16" for c in ("weights", "activations", "kv_cache", "embeddings", "lm_head",
                                   "gradients", "base")},
    "w8a16": {"weights": "int8"},
    "w4a16": _W4,
    "w4a16-fp8kv": {**_W4, "kv_cache": "fp8"},
    "w4a16-zp": {**_W4, "zero_point": True},
    "w4a16-awq": {**_W4, "zero_point": True, "smoothing": "awq"},
    "w8a8": {"weights": "int8", "activations": "int8"},
    "w8a8-static": {"weights": "int8", "activations": "int8", "act_scale": "static"},
    "w8a8-tensor": {"weights": "int8", "activations": "int8", "act_scale": "per_tensor"},
    "w8a8-smoothquant": {"weights": "int8", "activations": "int8", "smoothing": "smoothquant"},
    "w4a8": {"weights": "int4", "activations": "int8"},
    "fp8": {"weights": "fp8", "activations": "fp8"},
    "fp8-kv": {"weights": "fp8", "activations": "fp8", "kv_cache": "fp8"},
    "kv-fp8": {"kv_cache": "fp8"},
    "nvfp4": {"weights": "nvfp4", "activations": "nvfp4"},
    "nvfp4-fp8kv": {"weights": "nvfp4", "activations": "nvfp4", "kv_cache": "fp8"},
    "w-nvfp4": {"weights": "nvfp4"},
    "mxfp8": {"weights": "mxfp8", "activations": "mxfp8"},
    "mxfp6": {"weights": "mxfp6", "activations": "mxfp6"},
    "mxfp4": {"weights": "mxfp4", "activations": "mxfp4"},
    "w-mxfp4": {"weights": "mxfp4"},
    "w2a16": {"weights": "int2"},
}

_DTYPE_FIELDS = ("weights", "activations", "kv_cache", "embeddings", "lm_head", "gradients",
                 "optimizer_state", "base")


def _checked(source: str, values: dict[str, Any]) -> Precision:
    """Validate ``values`` (Precision fields) and build the :class:`Precision`."""
    known = {f.name for f in fields(Precision)}
    problems = [f"{source}: {k}: unknown precision field (known: {', '.join(sorted(known))})"
                for k in values if k not in known]
    out = dict(values)
    for key in _DTYPE_FIELDS:
        if key in out:
            try:
                out[key] = normalize_dtype(out[key])
            except ValueError as exc:
                problems.append(f"{source}: {key}: {exc}")
    layers = out.get("layers", ())
    try:
        items = layers.items() if isinstance(layers, Mapping) else layers
        pairs = []
        for idx, dt in items:
            if isinstance(idx, bool) or not isinstance(idx, int) or idx < 0:
                problems.append(f"{source}: layers: layer index must be a non-negative integer, got {idx!r}")
                continue
            pairs.append((idx, normalize_dtype(dt)))
        out["layers"] = tuple(sorted(pairs))
    except (TypeError, ValueError) as exc:
        problems.append(f"{source}: layers: expected {{layer index: dtype}}: {exc}")
    gs = out.get("group_size", 128)
    if isinstance(gs, bool) or not isinstance(gs, int) or gs < 0:
        problems.append(f"{source}: group_size: must be a non-negative integer, got {gs!r}")
    if out.get("act_scale", "per_token") not in ACT_SCALES:
        problems.append(f"{source}: act_scale: expected one of {', '.join(ACT_SCALES)}, "
                        f"got {out['act_scale']!r}")
    if out.get("on_unsupported", "emulate") not in ON_UNSUPPORTED:
        problems.append(f"{source}: on_unsupported: expected one of {', '.join(ON_UNSUPPORTED)}, "
                        f"got {out['on_unsupported']!r}")
    if isinstance(out.get("smoothing"), str):
        out["smoothing"] = out["smoothing"].strip().lower()
    if out.get("smoothing", "none") not in SMOOTHINGS:
        problems.append(f"{source}: smoothing: expected one of {', '.join(SMOOTHINGS)}, "
                        f"got {out['smoothing']!r}")
    for flag in ("zero_point", "qat"):
        if not isinstance(out.get(flag, False), bool):
            problems.append(f"{source}: {flag}: expected true or false, got {out[flag]!r}")
    if problems:
        raise ConfigError(problems)
    prec = Precision(**out)
    # Overrides (layers, embeddings, lm_head) may be wider: such GEMMs run unquantized.
    if dtype_bits(prec.weights) > dtype_bits(prec.activations) + 1e-9:
        problems.append(f"{source}: weights: {prec.weights} weights are wider than the {prec.activations} "
                        "activations; quantized weights are at most as wide as their activations")
    wide = [("layers", d) for _, d in prec.layers]
    wide += [("embeddings", prec.embeddings), ("lm_head", prec.lm_head)]
    for key, dt in wide:
        if dtype_bits(dt) > dtype_bits(prec.base) + 1e-9:
            problems.append(f"{source}: {key}: {dt} is wider than base {prec.base}")
    if dtype_bits(prec.activations) > dtype_bits(prec.base) + 1e-9:
        problems.append(f"{source}: activations: {prec.activations} is wider than base {prec.base}")
    if prec.smoothing != "none" and not _quantizes_gemms(prec):
        problems.append(f"{source}: smoothing: {prec.smoothing} moves activation outliers into the weights "
                        f"before quantization, but this precision quantizes no GEMM (weights {prec.weights}, "
                        f"activations {prec.activations}, base {prec.base})")
    if problems:
        raise ConfigError(problems)
    return prec


def resolve_precision(source: str, precision: str | Mapping[str, Any] | Precision | None,
                      dtype: str = "bf16", weight_dtype: str | None = None,
                      kv_dtype: str | None = None) -> Precision:
    """The :class:`Precision` a caller asked for.

    Parameters
    ----------
    source : str
        Prefix of error messages (``workload llama2-7b``).
    precision : str, mapping or Precision, optional
        A scheme name (:data:`SCHEMES`), a mapping of :class:`Precision` fields (with an
        optional ``scheme`` to start from), or a Precision. ``None``: every tensor in
        ``dtype``.
    dtype : str
        The uniform dtype when no precision is given (and the scheme's base otherwise
        is bf16; giving both a precision and a non-bf16 dtype is refused).
    weight_dtype, kv_dtype : str, optional
        Shorthands overriding the weights' and the KV cache's dtype.

    Raises
    ------
    ConfigError
        Unknown scheme, field or dtype, or an impossible combination.
    """
    try:
        dt = normalize_dtype(dtype)
    except ValueError as exc:
        raise ConfigError([f"{source}: dtype: {exc}"]) from None
    if isinstance(precision, Precision):
        prec = precision
    elif precision is None:
        prec = Precision.uniform(dt)
    else:
        if dt != "bf16":
            raise ConfigError([f"{source}: dtype: give either dtype={dtype!r} or a precision, not both "
                               "(a precision names every tensor's dtype)"])
        if isinstance(precision, str):
            values: dict[str, Any] = {"scheme": precision}
        elif isinstance(precision, Mapping):
            values = dict(precision)
        else:
            raise ConfigError([f"{source}: precision: expected a scheme name, a mapping or a Precision, "
                               f"got {type(precision).__name__}"])
        scheme = str(values.pop("scheme", "bf16")).strip().lower()
        if scheme not in SCHEMES:
            raise ConfigError([f"{source}: precision: unknown scheme {scheme!r}; expected one of "
                               f"{', '.join(SCHEMES)}"])
        prec = _checked(f"{source}: precision", {**SCHEMES[scheme], **values,
                                                 "name": values.get("name", scheme if not values else "")})
    extra = {k: v for k, v in (("weights", weight_dtype), ("kv_cache", kv_dtype)) if v is not None}
    if extra:
        label = prec.name if not prec.is_uniform else ""
        shorthand = {"weights": "weight_dtype", "kv_cache": "kv_dtype"}
        try:
            prec = _checked(source, {**{f.name: getattr(prec, f.name) for f in fields(prec)}, **extra,
                                     "name": ""})
        except ConfigError as exc:
            raise ConfigError([p.replace(f"{source}: weights:", f"{source}: {shorthand['weights']}:")
                               .replace(f"{source}: kv_cache:", f"{source}: {shorthand['kv_cache']}:")
                               for p in exc.problems]) from None
        prec = replace(prec, name=label)
    return prec
