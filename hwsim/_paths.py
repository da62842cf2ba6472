"""Where the shipped presets live (a leaf module).

In a source checkout (and an editable install) they are the top-level ``arch_configs/``
and ``workloads/`` folders; a wheel carries copies under ``hwsim/_data/``.
"""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """Return the folder of shipped files ``name`` (``arch_configs`` or ``workloads``)."""
    for candidate in (_PKG.parent / name, _PKG / "_data" / name):
        if candidate.is_dir():
            return candidate
    return _PKG.parent / name


def preset_names(name: str) -> list[str]:
    """Names of the shipped presets in ``data_dir(name)``: the stems of its
    ``.yaml``/``.json`` files and the names of its folders holding a ``config.json``
    (a Hugging Face model folder, as ``save_pretrained`` writes it)."""
    folder = data_dir(name)
    if not folder.is_dir():
        return []
    files = [p.stem for p in folder.iterdir() if p.suffix in (".yaml", ".yml", ".json") and p.is_file()]
    models = [p.name for p in folder.iterdir() if p.is_dir() and (p / "config.json").is_file()]
    return sorted(files + models)


def resolve(name_or_path: str | Path, kind: str) -> Path | None:
    """A file path for a preset name or a path; ``None`` if neither exists (or
    ``name_or_path`` is neither a string nor a path)."""
    if not isinstance(name_or_path, str | Path):
        return None
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.is_dir() and (path / "config.json").is_file():
        return path / "config.json"
    for suffix in (".yaml", ".yml", ".json"):
        candidate = data_dir(kind) / f"{name_or_path}{suffix}"
        if candidate.is_file():
            return candidate
    folder = data_dir(kind) / str(name_or_path) / "config.json"
    if str(name_or_path) and "/" not in str(name_or_path) and folder.is_file():
        return folder
    return None
