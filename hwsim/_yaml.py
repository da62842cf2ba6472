"""YAML reading shared by the architecture and workload loaders (a leaf module).

PyYAML follows YAML 1.1, which reads ``940e6`` or ``1e9`` (no dot) as *strings*; this
loader resolves them as floats, so numbers in configs read the way people write them.

Every way a file can be unreadable becomes one :class:`~hwsim.errors.ConfigError`
naming the file and where: bytes that are not UTF-8 (line and byte offset), malformed
YAML (line), a key given twice in one mapping (its dotted path and both lines: PyYAML
would silently keep the last), nesting deeper than :data:`MAX_DEPTH` (which would
otherwise exhaust Python's stack) and aliases that expand without bound.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from hwsim.errors import ConfigError, join_path

#: Deepest nesting of collections a config may use (real ones use under 10).
MAX_DEPTH = 100
#: Most nodes a document may expand to once aliases are followed (billion-laughs guard).
MAX_NODES = 200_000


class _TreeError(yaml.YAMLError):
    """A problem found in the composed document, at a dotted path."""

    def __init__(self, path: tuple[Any, ...], problem: str) -> None:
        super().__init__(problem)
        self.where = join_path(path)
        self.problem = problem


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads ``1e9``-style numbers as floats and bounds nesting depth."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        # The composer recurses once per level; stop long before Python's stack does.
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise yaml.composer.ComposerError(
                    None, None, f"collections nested deeper than {MAX_DEPTH} levels", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_FLOAT_RE = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_RE, list("-+0123456789."))

_MERGE_TAG = "tag:yaml.org,2002:merge"


def _key_of(loader: _Loader, node: yaml.Node) -> Any:
    """The Python value of a mapping key node, or None when it is not a hashable scalar."""
    if not isinstance(node, yaml.ScalarNode):
        return None
    try:
        key = loader.construct_object(node, deep=True)
        hash(key)
    except (yaml.YAMLError, TypeError, ValueError):
        return None
    return key


def _check_tree(loader: _Loader, root: yaml.Node) -> None:
    """Refuse duplicate keys (at any depth) and unbounded alias expansion.

    Raises
    ------
    _TreeError
        Naming the dotted path of the duplicate key and the lines of both occurrences.
    """
    stack: list[tuple[yaml.Node, tuple[Any, ...], frozenset[int]]] = [(root, (), frozenset())]
    visited = 0
    while stack:
        node, path, ancestors = stack.pop()
        visited += 1
        if id(node) in ancestors:
            raise _TreeError(path, f"line {node.start_mark.line + 1}: an alias refers to a collection "
                                   "that contains it")
        if visited > MAX_NODES:
            raise _TreeError(path, f"aliases expand the document to more than {MAX_NODES:,} nodes")
        inner = ancestors | {id(node)}
        if isinstance(node, yaml.SequenceNode):
            stack += [(child, (*path, i), inner) for i, child in enumerate(node.value)]
        elif isinstance(node, yaml.MappingNode):
            first_line: dict[Any, int] = {}
            for key_node, value_node in node.value:
                key = _key_of(loader, key_node)
                if key_node.tag != _MERGE_TAG and key is not None:
                    if key in first_line:
                        raise _TreeError((*path, str(key)), f"key {str(key)!r} given twice, on lines "
                                             f"{first_line[key] + 1} and {key_node.start_mark.line + 1}")
                    first_line[key] = key_node.start_mark.line
                stack.append((value_node, (*path, "<<" if key is None else str(key)), inner))


def parse_yaml(text: str) -> Any:
    """Parse YAML (or JSON) text with the checks of :func:`read_yaml`.

    Raises
    ------
    yaml.YAMLError
        For malformed YAML, duplicate keys, too deep nesting or unbounded aliases.
    """
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_tree(loader, node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _decode(path: Path, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        byte = raw[exc.start:exc.start + 1].hex()
        raise ConfigError([f"{path}: line {line}: not UTF-8 text (byte 0x{byte} at offset {exc.start}); "
                           "save the file as UTF-8"]) from None


def read_yaml(path: Path) -> Any:
    """Read and parse a YAML (or JSON) file.

    Raises
    ------
    ConfigError
        If the file cannot be read, is not UTF-8 or is not valid YAML (including a key
        given twice and nesting deeper than :data:`MAX_DEPTH`); the message names the
        file and the line.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    text = _decode(path, raw)
    try:
        return parse_yaml(text)
    except _TreeError as exc:
        raise ConfigError([f"{path}: {exc.where}: {exc.problem}"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "<root>"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{path}: {where}: malformed YAML: {problem}"]) from None
    except RecursionError:  # a structure the depth limit did not foresee (kept as a backstop)
        raise ConfigError([f"{path}: <root>: malformed YAML: nested too deeply"]) from None


#: Names pydantic gives the members of a union in an error's location (``values[1].int``).
_UNION_TAG = re.compile(r"^(bool|int|float|str|none|(function-\w+|list|dict|tuple|literal)\[.*\])$")


def validation_problems(source: str, exc: Any) -> list[str]:
    """Turn a pydantic ``ValidationError`` into ``source: dotted.path: message`` lines.

    A value that matches no member of a union (pydantic reports one error per member,
    each at ``path.<member>``) becomes one line at ``path`` listing what was expected.
    """
    grouped: dict[tuple[Any, ...], list[tuple[str, Any]]] = {}
    for err in exc.errors():
        loc = tuple(p for p in err.get("loc", ()) if p not in ("function-after",))
        msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        if loc and isinstance(loc[-1], str) and _UNION_TAG.match(loc[-1]):
            loc = loc[:-1]
        grouped.setdefault(loc, []).append((msg, err.get("input")))
    lines = []
    for loc, errs in grouped.items():
        msgs = list(dict.fromkeys(m for m, _ in errs))
        text = msgs[0] if len(msgs) == 1 else f"{'; or '.join(msgs)} (got {errs[0][1]!r})"
        lines.append(f"{source}: {join_path(loc)}: {text}")
    return lines
