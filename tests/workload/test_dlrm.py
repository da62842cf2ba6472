"""DLRM specs and lowering: shipped files load, sharding conserves bytes, the all-to-all
volume is the closed form, compression changes bytes and work, bad configs are refused."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import hwsim
from hwsim.arch.system import load_system
from hwsim.cost.collective import collective_cost
from hwsim.errors import ConfigError
from hwsim.workload.dlrm import dlrm_from_dict, list_dlrm_models, trace_hit_rate, tt_shape
from hwsim.workload.dlrm_lower import shard_tables
from hwsim.workload.ops import Collective
from hwsim.workload.ops_embedding import EmbeddingBag

BASE = {"kind": "dlrm", "dense_features": 13, "bottom_mlp": [64, 16], "top_mlp": [32, 1],
        "interaction": "dot",
        "tables": [{"name": "a", "rows": 10_000, "dim": 16, "pooling_factor": 4},
                   {"name": "b", "rows": 50_000, "dim": 16, "pooling_factor": 2},
                   {"name": "c", "rows": 1000, "dim": 16, "pooling_factor": 1, "count": 6}]}


def _ops(w: hwsim.Workload, kind: type) -> list:  # type: ignore[type-arg]
    return [op for p in w.passes for s in p.segments for _, op in s.graph.ops() if isinstance(op, kind)]


@pytest.mark.parametrize("name", list_dlrm_models())
@pytest.mark.parametrize("phase", ["inference", "train"])
def test_shipped_models_load_and_simulate(name: str, phase: str) -> None:
    """Every workloads/recsys file lowers and simulates on a DGX H100 (8 chips, table-wise)."""
    w = hwsim.load_workload(name, phase=phase, batch=8192, n_chips=8, embedding_dtype="fp16")
    r = hwsim.simulate(w, "dgx-h100")
    assert r.latency_s > 0 and r.energy_j > 0 and r.tokens == 8192
    assert _ops(w, EmbeddingBag)


def test_shipped_mlperf_shape() -> None:
    """The MLPerf DLRM-DCNv2 file: 26 tables, 204.2 M rows, 214 lookups per sample."""
    w = hwsim.load_workload("dlrm-mlperf", phase="inference", batch=1)
    (bag,) = _ops(w, EmbeddingBag)
    assert len(bag.tables) == 26
    assert sum(t.rows for t in bag.tables) == 204_184_588
    assert sum(t.lookups for t in bag.tables) == 214


@pytest.mark.parametrize("sharding", ["table", "row", "column"])
def test_sharding_conserves_lookup_bytes(sharding: str) -> None:
    """Summed over the chips, table-, row- and column-wise shards gather what one chip would."""
    spec = dlrm_from_dict(BASE)
    one = sum(t.lookup_bytes for t in shard_tables(spec, 1024, 1, "table")[0].tables)
    chips = shard_tables(spec, 1024, 4, sharding)
    assert sum(t.lookup_bytes for c in chips for t in c.tables) == pytest.approx(one)
    stored_one = sum(t.table_bytes for t in shard_tables(spec, 1024, 1, "table")[0].tables)
    assert sum(t.table_bytes for c in chips for t in c.tables) == pytest.approx(stored_one)


def test_all_to_all_volume_closed_form() -> None:
    """Table-wise on p chips: the chips send batch x sum(dim) x dtype bytes in all; each
    puts (p - 1) / p of its buffer on the links."""
    spec = dlrm_from_dict(BASE)
    p, batch = 4, 1024
    chips = shard_tables(spec, batch, p, "table")
    assert sum(c.all_to_all_bytes for c in chips) == pytest.approx(batch * 16 * 8 * 4)
    system = load_system("dgx-h100")
    for c in chips:
        cost = collective_cost(system, Collective("all_to_all", c.all_to_all_bytes, "dp", p))
        assert cost.link_bytes == pytest.approx((p - 1) / p * c.all_to_all_bytes)


def test_row_wise_reduce_scatter_and_replicated_tables() -> None:
    """Row-wise: every chip reduce-scatters batch x dim per table; data-parallel tables gather
    for the local batch only and exchange nothing in inference."""
    spec = dlrm_from_dict(BASE)
    rows = shard_tables(spec, 1024, 4, "row")
    assert all(c.reduce_scatter_bytes == pytest.approx(1024 * 16 * 8 * 4) for c in rows)
    data = shard_tables(spec, 1024, 4, "data")
    assert all(c.all_to_all_bytes == 0 and c.reduce_scatter_bytes == 0 for c in data)
    one = sum(t.lookup_bytes for t in shard_tables(spec, 1024, 1, "table")[0].tables)
    assert sum(t.lookup_bytes for t in data[0].tables) == pytest.approx(one / 4)


def test_multi_chip_workload_has_its_exchange() -> None:
    """An 8-chip table-wise DLRM runs an all-to-all forward and backward in training."""
    w = hwsim.load_workload("dlrm-rm2", phase="train", batch=4096, n_chips=8)
    kinds = sorted(op.op_kind for op in _ops(w, Collective))
    assert kinds == ["all_reduce", "all_to_all", "all_to_all"]
    assert [op.backward for op in _ops(w, EmbeddingBag)] == [False, True]


def test_compression_trades_bytes_for_work() -> None:
    """Hashing and pruning shrink the table; low rank narrows rows and adds a GEMM; TT moves
    far fewer bytes per lookup for more FLOP; int8 rows carry 4 B of scale and bias."""
    plain = dlrm_from_dict({**BASE, "interaction": "cat"})
    plain_t = {t.name: t for t in shard_tables(plain, 64, 1, "table")[0].tables}["a"]

    def first(compression: dict) -> tuple[dict, tuple]:  # type: ignore[type-arg]
        tables = [{**BASE["tables"][0], "compression": compression}, *BASE["tables"][1:]]  # type: ignore[index]
        spec = dlrm_from_dict({**BASE, "interaction": "cat", "tables": tables})
        chip = shard_tables(spec, 64, 1, "table")[0]
        return {t.name: t for t in chip.tables}, chip.expansions

    assert first({"kind": "hashing", "rows": 1000})[0]["a"].rows == 1000
    pruned, _ = first({"kind": "prune", "keep_fraction": 0.25})
    assert pruned["a"].rows == 2500 and pruned["a/remap"].rows == 10_000
    assert pruned["a"].lookups == pytest.approx(0.25 * 64 * 4)  # uniform: a quarter of the lookups survive
    low, expansions = first({"kind": "low_rank", "rank": 4})
    assert low["a"].dim == 4 and expansions == ((64, 4, 16),)
    tt = first({"kind": "tt", "rank": 2})[0]["a"]
    n, dims, elements, flops = tt_shape(10_000, 16, 2)
    assert n == 22 and math.prod(dims) == 16 and tt.flops_per_lookup == flops > 0
    assert tt.table_bytes < plain_t.table_bytes / 10
    q = dlrm_from_dict({**BASE, "embedding_dtype": "int8"})
    assert all(t.row_bytes == 16 + 4 for t in shard_tables(q, 64, 1, "table")[0].tables)


def test_trace_hit_rate(tmp_path: Path) -> None:
    """A trace file's hottest rows give the cache's hit rate."""
    (tmp_path / "ids.txt").write_text("1\n1\n1\n2\n2\n3\n# comment\n4\n")
    assert trace_hit_rate([1, 1, 1, 2, 2, 3, 4], 2) == pytest.approx(5 / 7)
    tables = [{**BASE["tables"][0], "cache": {"rows": 2, "trace": "ids.txt"}}]  # type: ignore[index]
    spec = dlrm_from_dict({**BASE, "interaction": "cat", "tables": tables}, base=tmp_path)
    assert spec.tables[0].cache.hit_rate == pytest.approx(5 / 7)  # type: ignore[union-attr]


ONE = {"name": "a", "rows": 5, "dim": 16, "pooling_factor": 1}


@pytest.mark.parametrize(("change", "where"), [
    ({"tables": [{"name": "a", "rows": -5, "dim": 16, "pooling_factor": 1}]}, "tables[0].rows"),
    ({"tables": [{"name": "a", "rows": 5, "dim": 8, "pooling_factor": 1}]}, "bottom MLP"),
    ({"top_mlp": [32, 2]}, "one output"),
    ({"tables": [{**ONE, "cache": {"rows": 2, "hit_rate": 1.5}}]}, "tables[0].cache.hit_rate"),
    ({"tables": [{**ONE, "compression": {"kind": "zip"}}]}, "tables[0].compression"),
    ({"tables": [{**ONE, "dtype": "fp12"}]}, "tables[0].dtype"),
    ({"tables": [{**ONE, "compression": {"kind": "low_rank", "rank": 16}}]}, "below dim"),
])
def test_bad_configs_name_the_path(change: dict, where: str) -> None:  # type: ignore[type-arg]
    """A bad value is one ConfigError naming the file and dotted path."""
    with pytest.raises(ConfigError, match="cfg.yaml") as info:
        dlrm_from_dict({**BASE, **change}, "cfg.yaml")
    assert where in str(info.value)


def test_bad_options_are_refused() -> None:
    """Unknown phase, sharding, option or chip count: ConfigError, with a hint."""
    with pytest.raises(ConfigError, match="phase"):
        hwsim.load_workload("dlrm-rm2", phase="decode")
    with pytest.raises(ConfigError, match="sharding"):
        hwsim.load_workload("dlrm-rm2", phase="inference", sharding="diagonal")
    with pytest.raises(ConfigError, match="did you mean n_chips"):
        hwsim.load_workload("dlrm-rm2", phase="inference", n_chip=2)
    with pytest.raises(ConfigError, match="n_chips"):
        hwsim.load_workload("dlrm-rm2", phase="inference", n_chips=0)


def test_a_yaml_path_with_kind_dlrm_loads(tmp_path: Path) -> None:
    """A user's own kind: dlrm file loads by path."""
    path = tmp_path / "mine.yaml"
    path.write_text("kind: dlrm\ndense_features: 4\nbottom_mlp: [8]\ntop_mlp: [4, 1]\ninteraction: cat\n"
                    "tables:\n  - {name: x, rows: 1e+6, dim: 8, pooling_factor: 2}\n")
    with pytest.raises(ConfigError, match="tables\\[0\\].rows"):  # 1e+6 is a float, not a count
        hwsim.load_workload(path, phase="inference")
    path.write_text(path.read_text().replace("1e+6", "1_000_000"))
    w = hwsim.load_workload(path, phase="inference", batch=16)
    assert w.name == "mine" and hwsim.simulate(w, "h100-sxm").latency_s > 0
