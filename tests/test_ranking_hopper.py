"""DGX H100 and DGX H200 have node presets (arch_configs/datacenter/nodes/h100-sxm.yaml,
h200-sxm.yaml), so a serving comparison costs and ranks them beside DGX B200."""

from __future__ import annotations

import json

from click.testing import CliRunner

import hwsim
from hwsim.cli import main
from hwsim.datacenter import list_nodes, load_node

TINY = hwsim.Requests.offline(16, 128, 16, 0)


def test_hopper_nodes_load_with_their_dgx_figures() -> None:
    """Both nodes hold 8 GPUs in 8U; the nameplate (GPUs + host + network) is DGX's 10.2 kW."""
    assert {"h100-sxm", "h200-sxm"} <= set(list_nodes())
    for chip, name in (("h100-sxm", "dgx-h100"), ("h200-sxm", "dgx-h200")):
        node = load_node(chip)
        assert (node.name, node.n_chips, node.rack_units) == (name, 8, 8)
        assert node.n_chips * 700 + node.host_power_w + node.network_power_w == 10_200


def test_compare_serving_ranks_dgx_h100_beside_dgx_b200() -> None:
    """A tiny LLaMA-3-70B run (8 layers): every system has a finite cost and a rank; B200's 2.4x
    HBM bandwidth gives it more tokens/s than H100 and H200, and H200 (4.8 vs 3.35 TB/s) more
    than H100."""
    cmp = hwsim.compare_serving(["dgx-h100", "dgx-b200", "dgx-h200"], model="llama3-70b", requests=TINY,
                                n_layers=8)
    rows = {r["arch"]: r for r in cmp.rows}
    assert sorted(rows) == ["dgx-b200", "dgx-h100", "dgx-h200"]
    assert sorted(r["rank"] for r in cmp.rows) == [1, 2, 3]
    assert all(0 < r["usd_per_million_tokens"] < float("inf") for r in cmp.rows)
    tok = {a: r["output_tokens_per_s"] for a, r in rows.items()}
    assert tok["dgx-b200"] > tok["dgx-h200"] > tok["dgx-h100"]


def test_cli_compare_serve_includes_dgx_h100() -> None:
    """`hwsim compare --serve --arch dgx-h100 --arch dgx-b200` ranks both, with costs."""
    res = CliRunner().invoke(main, ["compare", "--serve", "--arch", "dgx-h100", "--arch", "dgx-b200",
                                    "--requests", "8", "--prompt-len", "64", "--output-len", "8",
                                    "--n-layers", "4", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)["rows"]
    assert sorted(r["arch"] for r in rows) == ["dgx-b200", "dgx-h100"]
    assert all(r["fits"] and r["rank"] in (1, 2) and r["usd_per_million_tokens"] > 0 for r in rows)
