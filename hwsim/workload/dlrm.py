"""Recommendation models (DLRM): many embedding tables, a bottom MLP over the dense
features, a feature interaction and a top MLP (Naumov et al. 2019, arXiv:1906.00091;
DCN v2 interaction: Wang et al. 2021, arXiv:2008.13535).

A :class:`DlrmSpec` is read from YAML with ``kind: dlrm`` (shipped under
``workloads/recsys/``); :func:`hwsim.workload.dlrm_lower.lower_dlrm` lowers it for
``inference`` or ``train``. Each table states its rows, width, pooling factor (mean
lookups per sample), dtype, placement, access skew, an optional hot-row cache and
an optional compression. See ``docs/embeddings.md``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hwsim._paths import data_dir
from hwsim._yaml import read_yaml, validation_problems
from hwsim.dtypes import DType
from hwsim.errors import ConfigError

Sharding = Literal["table", "row", "column", "data"]
#: Where the recommendation presets live, relative to ``workloads/``.
RECSYS_DIR = "recsys"
#: Bytes stored beside each quantised row: fp16 scale and fp16 bias (FBGEMM TBE,
#: ``DEFAULT_SCALE_BIAS_SIZE_IN_BYTES = 4``, fbgemm_gpu split_table_batched_embeddings_ops_common.py).
QUANT_ROW_OVERHEAD_BYTES = 4.0
_QUANTISED = ("int8", "int4", "fp8", "fp4")


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CacheSpec(_Frozen):
    """A hot-row cache one memory tier faster than the table: ``rows`` of it, hitting
    with ``hit_rate`` where given, else as the table's ``zipf_alpha`` says (a ``trace``
    file of row ids, one per line, gives the hit rate of its ``rows`` hottest rows)."""

    rows: int = Field(gt=0, strict=True)
    hit_rate: float | None = Field(default=None, ge=0.0, le=1.0, allow_inf_nan=False)
    trace: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_source(self) -> CacheSpec:
        if self.hit_rate is not None and self.trace is not None:
            raise ValueError("give hit_rate or trace, not both")
        return self


class Hashing(_Frozen):
    """The hashing trick: ids hashed into ``rows`` buckets (Weinberger et al. 2009)."""

    kind: Literal["hashing"]
    rows: int = Field(gt=0, strict=True)


class LowRank(_Frozen):
    """The table as ``U (rows x rank) V (rank x dim)``: pool ``rank``-wide rows of U, then
    one GEMM by V (sum of ``U_i V`` is ``(sum U_i) V``)."""

    kind: Literal["low_rank"]
    rank: int = Field(gt=0, strict=True)


class TensorTrain(_Frozen):
    """TT-Rec (Yin et al., MLSys 2021): three TT cores of rank ``rank``; every lookup reads
    one slice of each core and multiplies them out (compute for bytes)."""

    kind: Literal["tt"]
    rank: int = Field(gt=0, le=1024, strict=True)


class Pruning(_Frozen):
    """Row pruning: ``keep_fraction`` of the rows kept (the hottest), a remap table of one
    int32 per original row, lookups of pruned rows return zeros."""

    kind: Literal["prune"]
    keep_fraction: float = Field(gt=0.0, le=1.0, allow_inf_nan=False)


Compression = Annotated[Hashing | LowRank | TensorTrain | Pruning, Field(discriminator="kind")]


class TableSpec(_Frozen):
    """One embedding table (``count`` identical ones when ``count > 1``)."""

    name: str = Field(min_length=1)
    rows: int = Field(gt=0, le=10**12, strict=True)
    dim: int = Field(gt=0, le=65536, strict=True)
    pooling_factor: float = Field(gt=0.0, le=1e6, allow_inf_nan=False,
                                  description="mean lookups per sample (1: one-hot)")
    dtype: DType | None = Field(default=None, description="default: the model's embedding_dtype")
    placement: str = Field(default="auto", min_length=1, description="auto, or a tier name (hbm, host)")
    zipf_alpha: float | None = Field(default=None, ge=0.0, le=5.0, allow_inf_nan=False)
    cache: CacheSpec | None = None
    compression: Compression | None = None
    sharding: Sharding | None = Field(default=None, description="default: the load option's")
    count: int = Field(default=1, gt=0, le=100_000, strict=True)

    @model_validator(mode="after")
    def _compression_fits(self) -> TableSpec:
        c = self.compression
        if isinstance(c, Hashing) and c.rows > self.rows:
            raise ValueError(f"table '{self.name}': hashing into {c.rows} buckets, more than its "
                             f"{self.rows} rows")
        if isinstance(c, LowRank) and c.rank >= self.dim:
            raise ValueError(f"table '{self.name}': low_rank rank {c.rank} must be below dim {self.dim}")
        if self.cache is not None and self.cache.rows > self.rows:
            raise ValueError(f"table '{self.name}': cache of {self.cache.rows} rows, more than its "
                             f"{self.rows}")
        return self


class DlrmSpec(_Frozen):
    """A DLRM-style model: shape only (batch, phase and sharding come at lowering)."""

    version: Literal[1] = 1
    kind: Literal["dlrm"]
    name: str = ""
    description: str = ""
    sources: tuple[str, ...] = ()
    dense_features: int = Field(gt=0, le=100_000, strict=True)
    bottom_mlp: tuple[Annotated[int, Field(gt=0, le=1_000_000, strict=True)], ...] = Field(min_length=1)
    top_mlp: tuple[Annotated[int, Field(gt=0, le=1_000_000, strict=True)], ...] = Field(min_length=1)
    interaction: Literal["dot", "cat", "dcn"] = "dot"
    dcn_layers: int = Field(default=3, gt=0, le=64, strict=True)
    dcn_low_rank: int | None = Field(default=None, gt=0, strict=True)
    dtype: DType = "fp32"
    embedding_dtype: DType = "fp32"
    optimizer: Literal["rowwise_adagrad", "sgd"] = Field(
        default="rowwise_adagrad",
        description="the tables' update in training (row-wise Adagrad keeps one fp32 per row)")
    tables: tuple[TableSpec, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> DlrmSpec:
        names = [t.name for t in self.tables]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"table names must be unique; repeated: {', '.join(dup)}")
        if self.interaction == "dot":
            wrong = [t.name for t in self.tables if t.dim != self.bottom_mlp[-1]]
            if wrong:
                raise ValueError(f"a dot interaction needs every table dim equal to the bottom MLP's last "
                                 f"width {self.bottom_mlp[-1]}; these differ: {', '.join(wrong[:5])}")
        if self.top_mlp[-1] != 1:
            raise ValueError(f"top_mlp must end in one output (the click probability), not "
                             f"{self.top_mlp[-1]}")
        return self

    def expanded_tables(self) -> tuple[TableSpec, ...]:
        """Every table, ``count`` copies expanded (``name0``, ``name1``...), dtype filled in."""
        out = []
        for t in self.tables:
            dtype = t.dtype or self.embedding_dtype
            copies = [t.name] if t.count == 1 else [f"{t.name}{i}" for i in range(t.count)]
            out += [t.model_copy(update={"name": n, "dtype": dtype, "count": 1}) for n in copies]
        return tuple(out)

    @property
    def interaction_width(self) -> int:
        """Width of the top MLP's input."""
        d, n = self.bottom_mlp[-1], sum(t.count for t in self.tables)
        if self.interaction == "dot":
            f = n + 1
            return d + f * (f - 1) // 2
        return d + sum(t.dim * t.count for t in self.tables)

    def dense_param_count(self) -> int:
        """Parameters of the MLPs and the interaction (weights and biases)."""
        n, width = 0, self.dense_features
        for out in self.bottom_mlp:
            n, width = n + width * out + out, out
        if self.interaction == "dcn":
            x = self.interaction_width
            r = self.dcn_low_rank
            n += self.dcn_layers * ((2 * x * r if r else x * x) + x)
        width = self.interaction_width
        for out in self.top_mlp:
            n, width = n + width * out + out, out
        return n

    def embedding_row_count(self) -> int:
        return sum(t.rows * t.count for t in self.tables)


def row_overhead_bytes(dtype: str) -> float:
    """Quantisation metadata stored per row (fp16 scale and bias for 8-bit and narrower)."""
    return QUANT_ROW_OVERHEAD_BYTES if dtype in _QUANTISED else 0.0


def tt_shape(rows: int, dim: int, rank: int) -> tuple[int, tuple[int, int, int], float, float]:
    """TT-Rec's three cores for a ``rows`` x ``dim`` table of rank ``rank``: rows per core
    (``ceil(rows ** (1/3))``), the width factors ``d1 d2 d3 = dim``, the elements one
    lookup reads (one slice per core) and its FLOP (two small products)."""
    n = math.ceil(rows ** (1 / 3) - 1e-9)
    d = _three_factors(dim)
    r = (1, rank, rank, 1)
    elements = sum(r[k] * d[k] * r[k + 1] for k in range(3))
    flops = 2.0 * d[0] * r[1] * d[1] * r[2] + 2.0 * d[0] * d[1] * r[2] * d[2]
    return n, d, float(elements), flops


def _three_factors(dim: int) -> tuple[int, int, int]:
    """``dim`` as three factors as equal as possible (largest last)."""
    best = (1, 1, dim)
    for a in range(1, int(round(dim ** (1 / 3))) + 2):
        if dim % a:
            continue
        for b in range(a, int(math.isqrt(dim // a)) + 1):
            if (dim // a) % b == 0:
                c = dim // a // b
                if max(a, b, c) < max(best):
                    best = (a, b, c)
    return best


def trace_hit_rate(row_ids: list[int], cache_rows: int) -> float:
    """Hit rate of a static cache of the ``cache_rows`` most frequent rows of a trace:
    the share of the trace's accesses that go to them."""
    if not row_ids:
        return 0.0
    counts: dict[int, int] = {}
    for r in row_ids:
        counts[r] = counts.get(r, 0) + 1
    top = sorted(counts.values(), reverse=True)[:cache_rows]
    return sum(top) / len(row_ids)


def _read_trace(path: Path, source: str) -> list[int]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{source}: cannot read trace {path}: {exc.strerror}"]) from None
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        line = line.split("#")[0].strip().split(",")[0].strip()
        if not line:
            continue
        if not line.isdigit():
            raise ConfigError([f"{source}: {path}:{i}: expected a row id (a non-negative integer), "
                               f"got {line!r}"])
        out.append(int(line))
    if not out:
        raise ConfigError([f"{source}: {path}: the trace holds no row ids"])
    return out


def _with_traces(spec: DlrmSpec, base: Path, source: str) -> DlrmSpec:
    """Resolve every cache ``trace`` (relative to the spec's folder) into its hit rate."""
    tables = []
    for i, t in enumerate(spec.tables):
        if t.cache is not None and t.cache.trace is not None:
            path = Path(t.cache.trace)
            where = f"{source}: tables[{i}].cache.trace"
            ids = _read_trace(path if path.is_absolute() else base / path, where)
            hit = trace_hit_rate(ids, t.cache.rows)
            t = t.model_copy(update={"cache": CacheSpec(rows=t.cache.rows, hit_rate=hit)})
        tables.append(t)
    return spec.model_copy(update={"tables": tuple(tables)})


def dlrm_from_dict(data: Any, source: str = "<dict>", name: str = "", base: Path | None = None) -> DlrmSpec:
    """Validate a mapping into a :class:`DlrmSpec` (one ConfigError naming every problem)."""
    if not isinstance(data, dict):
        raise ConfigError([f"{source}: <root>: expected a mapping with kind: dlrm"])
    data = {"name": name, **data} if name and "name" not in data else data
    try:
        spec = DlrmSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_problems(source, exc)) from None
    return _with_traces(spec, base or Path.cwd(), source)


def is_dlrm_file(path: Path) -> bool:
    """Whether a YAML file declares ``kind: dlrm`` (cheap: looks for the line)."""
    if path.suffix not in (".yaml", ".yml"):
        return False
    try:
        head = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return any(line.split("#")[0].strip() == "kind: dlrm" for line in head.splitlines())


def load_dlrm_spec(path: Path) -> DlrmSpec:
    """Read a ``kind: dlrm`` YAML file."""
    return dlrm_from_dict(read_yaml(path), str(path), name=path.stem, base=path.parent)


def list_dlrm_models() -> list[str]:
    """Names of the shipped recommendation models (``workloads/recsys/*.yaml``)."""
    folder = data_dir("workloads") / RECSYS_DIR
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def resolve_dlrm(name_or_path: object) -> Path | None:
    """The file of a shipped recommendation model name or a ``kind: dlrm`` YAML path;
    None for anything else (a transformer)."""
    if not isinstance(name_or_path, str | Path):
        return None
    path = Path(name_or_path)
    if path.is_file():
        return path if is_dlrm_file(path) else None
    shipped = data_dir("workloads") / RECSYS_DIR / f"{name_or_path}.yaml"
    return shipped if "/" not in str(name_or_path) and shipped.is_file() else None
