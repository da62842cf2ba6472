"""The YAML reader turns every unreadable file into one ConfigError naming file and place."""

from __future__ import annotations

from pathlib import Path

import pytest

import hwsim
from hwsim._yaml import MAX_DEPTH, read_yaml
from hwsim.errors import ConfigError

H100 = Path(__file__).resolve().parents[1] / "arch_configs" / "h100-sxm.yaml"


def _file(tmp_path: Path, raw: bytes, name: str = "x.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(raw)
    return path


def test_non_utf8_bytes_name_the_line_and_offset(tmp_path):
    """A byte that is not UTF-8 is reported with its line and byte offset."""
    path = _file(tmp_path, b"version: 1\nname: \xff\xfe\n")
    with pytest.raises(ConfigError) as info:
        read_yaml(path)
    assert str(info.value) == (f"{path}: line 2: not UTF-8 text (byte 0xff at offset 17); "
                               "save the file as UTF-8")


def test_a_utf8_byte_order_mark_is_fine(tmp_path):
    """A BOM (as some editors write) is not an error."""
    assert read_yaml(_file(tmp_path, b"\xef\xbb\xbfa: 1\n")) == {"a": 1}


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 3000])
def test_deep_nesting_is_an_error_not_a_recursion_error(tmp_path, depth):
    """Collections nested past the limit (3,000 deep included) are refused by line."""
    path = _file(tmp_path, f"x: {'[' * depth}{']' * depth}\n".encode())
    with pytest.raises(ConfigError, match=rf"{path}: line 1: malformed YAML: collections nested deeper "
                                          rf"than {MAX_DEPTH} levels"):
        read_yaml(path)


def test_nesting_up_to_the_limit_reads(tmp_path):
    """The mapping plus MAX_DEPTH - 1 lists is as deep as a document may go, and reads."""
    depth = MAX_DEPTH - 1
    node = read_yaml(_file(tmp_path, f"x: {'[' * depth}{']' * depth}\n".encode()))["x"]
    levels = 1
    while node:
        node, levels = node[0], levels + 1
    assert node == [] and levels == depth


@pytest.mark.parametrize(("text", "where", "key", "lines"), [
    ("version: 1\nname: a\nname: b\n", "name", "name", (2, 3)),
    ("memory:\n  hbm:\n    cap: 1\n    bw: 2\n    cap: 3\n", "memory.hbm.cap", "cap", (3, 5)),
    ("fabrics:\n  - name: a\n    dims: [2]\n    dims: [4]\n", "fabrics[0].dims", "dims", (3, 4)),
    ('{"a": 1, "b": {"c": 2, "c": 3}}', "b.c", "c", (1, 1)),
])
def test_duplicate_keys_name_the_path_and_both_lines(tmp_path, text, where, key, lines):
    """A key given twice in one mapping, at any depth, names its dotted path and lines."""
    path = _file(tmp_path, text.encode())
    with pytest.raises(ConfigError) as info:
        read_yaml(path)
    assert str(info.value) == f"{path}: {where}: key {key!r} given twice, on lines {lines[0]} and {lines[1]}"


def test_merge_keys_may_be_overridden(tmp_path):
    """``<<: *base`` then an explicit key is YAML's override, not a duplicate."""
    data = read_yaml(_file(tmp_path, b"base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  x: 3\n"))
    assert data["m"] == {"x": 3, "y": 2}


def test_recursive_and_exploding_aliases_are_refused(tmp_path):
    """A self-referencing alias and a billion-laughs document are refused quickly."""
    with pytest.raises(ConfigError, match="an alias refers to a collection that contains it"):
        read_yaml(_file(tmp_path, b"a: &x [1, *x]\n"))
    lines = ["l0: &l0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 8)]
    with pytest.raises(ConfigError, match="aliases expand the document to more than"):
        read_yaml(_file(tmp_path, "\n".join(lines).encode(), "lol.yaml"))


def test_numbers_without_a_dot_still_read_as_floats(tmp_path):
    """The loader's 1e9 resolver is kept: ``1e9`` and ``940e6`` are floats, ``'1e9'`` a string."""
    data = read_yaml(_file(tmp_path, b"a: 1e9\nb: 940e6\nc: '1e9'\nd: 7\n"))
    assert data == {"a": 1e9, "b": 9.4e8, "c": "1e9", "d": 7}
    assert isinstance(data["a"], float) and isinstance(data["d"], int)


@pytest.mark.parametrize("loader", [hwsim.load_arch, hwsim.load_system])
def test_loaders_report_a_damaged_preset_copy(tmp_path, loader):
    """A copy of a preset with a duplicated line fails to load through the public loaders."""
    lines = H100.read_text().splitlines(keepends=True)
    i = next(n for n, line in enumerate(lines) if line.startswith("  clock_hz:"))
    path = _file(tmp_path, "".join([*lines[: i + 1], lines[i], *lines[i + 1:]]).encode(), "h100.yaml")
    with pytest.raises(ConfigError, match=rf"{path}: compute_units.clock_hz: key 'clock_hz' given twice"):
        loader(path)
