"""Small text tables with a `#` header: `# key = value` metadata lines, a `# columns:` line, then rows.

The format of power spectra and mass functions: readable by eye, by `numpy.loadtxt` and by this module.
"""

from __future__ import annotations

import os

import numpy as np

from srsim.errors import SrsimError
from srsim.io.atomic import atomic_path


def write_table(path, title: str, meta: dict, columns: list[tuple[str, str]], rows: list[str]) -> None:
    """Write atomically. columns: (name, unit) pairs for the `# columns:` line; rows: formatted lines."""
    lines = [f"# {title}"]
    lines += [f"# {key} = {value}" for key, value in meta.items()]
    lines.append("# columns: " + "  ".join(f"{name} [{unit}]" if unit else name for name, unit in columns))
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines + rows) + "\n")


def _parse_value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if text in ("True", "False"):
        return text == "True"
    return text


def read_table(path, names: tuple[str, ...], what: str) -> tuple[dict, dict]:
    """Read a table -> ({name: float64 column}, {key: value}); SrsimError names the file and line."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise SrsimError(f"{path}: {what} file not found")
    meta, rows = {}, []
    with open(path) as f:
        for ln, line in enumerate(f, 1):
            s = line.strip()
            if not s:
                continue
            if s.startswith("#"):
                body = s[1:].strip()
                if "=" in body and not body.startswith("columns"):
                    key, value = (t.strip() for t in body.split("=", 1))
                    meta[key] = _parse_value(value)
                continue
            parts = s.split()
            if len(parts) != len(names):
                raise SrsimError(f"{path}:{ln}: expected {len(names)} columns ({' '.join(names)}), got {len(parts)}")
            try:
                rows.append([float(x) for x in parts])
            except ValueError as exc:
                raise SrsimError(f"{path}:{ln}: not a number: {exc}") from None
    arr = np.array(rows, dtype=np.float64).reshape(-1, len(names))
    return {name: arr[:, i] for i, name in enumerate(names)}, meta
