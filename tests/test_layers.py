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
