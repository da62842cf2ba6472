"""The layering of DESIGN.md holds: who may import whom."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "hwsim"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _package_imports(sub: str) -> set[str]:
    out: set[str] = set()
    for path in (PKG / sub).rglob("*.py"):
        out |= _imports(path)
    return out


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("workload", ("hwsim.arch", "hwsim.engine", "hwsim.plot", "hwsim.cost", "hwsim.mapping")),
        ("arch", ("hwsim.workload", "hwsim.engine", "hwsim.plot", "hwsim.cost", "hwsim.mapping")),
        ("cost", ("hwsim.engine", "hwsim.plot", "simpy", "matplotlib")),
        ("mapping", ("hwsim.engine", "hwsim.plot", "simpy", "matplotlib")),
    ],
)
def test_layer_does_not_import(package: str, forbidden: tuple[str, ...]) -> None:
    """A lower layer imports none of the layers above it nor their libraries."""
    bad = sorted(m for m in _package_imports(package) if m.startswith(forbidden))
    assert not bad, f"hwsim/{package} imports {bad}"


def test_only_engine_imports_simpy_and_only_plot_matplotlib() -> None:
    """simpy appears only under hwsim/engine, matplotlib only under hwsim/plot."""
    for path in PKG.rglob("*.py"):
        mods = _imports(path)
        rel = path.relative_to(PKG).parts[0]
        if rel != "engine":
            assert not any(m.split(".")[0] == "simpy" for m in mods), path
        if rel != "plot":
            assert not any(m.split(".")[0] == "matplotlib" for m in mods), path


def test_cli_commands_register_on_one_group_without_an_import_cycle() -> None:
    """hwsim/cli: the group module imports no command, command modules import only the
    group and the shared options (never each other), and nothing else imports the CLI."""
    import networkx as nx

    cli = PKG / "cli"
    graph = nx.DiGraph()
    for path in cli.glob("*.py"):
        name = f"hwsim.cli.{path.stem}" if path.stem != "__init__" else "hwsim.cli"
        graph.add_node(name)
        for mod in _imports(path):
            if mod.startswith("hwsim.cli."):
                graph.add_edge(name, mod)
    assert nx.is_directed_acyclic_graph(graph), list(nx.simple_cycles(graph))
    assert not list(graph.successors("hwsim.cli.group"))
    shared = {"hwsim.cli.group", "hwsim.cli.options"}
    for name in graph.nodes - shared - {"hwsim.cli", "hwsim.cli.__main__"}:
        assert set(graph.successors(name)) <= shared, name
    outside = [p for p in PKG.rglob("*.py") if cli not in p.parents and p.name != "__main__.py"
               and any(m == "hwsim.cli" or m.startswith("hwsim.cli.") for m in _imports(p))]
    assert not outside, outside


@pytest.mark.parametrize("package", ["cost", "mapping"])
def test_pure_layers_read_no_files(package: str) -> None:
    """cost/ and mapping/ take their tables as arguments: no file reading, no YAML."""
    readers = ("hwsim._yaml", "hwsim._paths", "pathlib", "yaml", "io", "importlib.resources")
    bad = sorted(m for m in _package_imports(package) if m in readers or m.startswith("hwsim.technology"))
    assert not bad, f"hwsim/{package} imports {bad}"
    for path in (PKG / package).rglob("*.py"):
        calls = [n for n in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                 if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "open"]
        assert not calls, f"{path} calls open()"
