"""Readers for the analysis text tables the figures and metrics consume.

The power-spectrum and mass-function formats are fixed in the team brief; `srsim.analysis.power.read_power`
and `srsim.analysis.hmf.read_hmf` are the reference readers and are used when importable. The local parser
below reads the same format (it is the fallback, and checks the columns the figures rely on).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from srsim.errors import SrsimError

POWER_COLUMNS = ("k", "P", "n_modes", "Delta2")
HMF_COLUMNS = ("log10M_lo", "log10M_hi", "log10M_mid", "n_halos", "dn_dlog10M", "err")


def _parse_value(text: str):
    text = text.strip()
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_table(path, expected: tuple[str, ...]) -> tuple[dict, dict]:
    """Parse a `#`-headed whitespace table: `# key = value` lines become meta, `# columns: a [unit] b ...` names
    the columns (bracketed units dropped). Returns (table: dict of 1-D float64 arrays, meta: dict)."""
    path = Path(path)
    if not path.is_file():
        raise SrsimError(f"{path}: table not found")
    meta: dict = {}
    columns: list[str] | None = None
    rows: list[list[float]] = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        s = line.strip()
        if not s:
            continue
        if s.startswith("#"):
            body = s.lstrip("#").strip()
            if body.lower().startswith("columns:"):
                depth = 0
                token = ""
                for ch in body.split(":", 1)[1]:
                    if ch == "[":
                        depth += 1
                    elif ch == "]":
                        depth -= 1
                    elif depth == 0:
                        token += ch
                columns = token.split()
            elif "=" in body:
                key, value = body.split("=", 1)
                meta[key.strip()] = _parse_value(value)
            continue
        try:
            rows.append([float(v) for v in s.split()])
        except ValueError as exc:
            raise SrsimError(f"{path}:{lineno}: not a row of numbers: {s!r}") from exc
    if columns is None:
        raise SrsimError(f"{path}: no '# columns:' header line")
    missing = [c for c in expected if c not in columns]
    if missing:
        raise SrsimError(f"{path}: missing column(s) {missing}; found {columns}")
    data = np.array(rows, dtype=np.float64).reshape(-1, len(columns)) if rows else np.zeros((0, len(columns)))
    if rows and any(len(r) != len(columns) for r in rows):
        raise SrsimError(f"{path}: rows do not all have {len(columns)} columns")
    return {name: data[:, i].copy() for i, name in enumerate(columns)}, meta


def load_power(path) -> tuple[dict, dict]:
    """Power table -> (dict 'k' [h/Mpc], 'P' [(Mpc/h)^3], 'n_modes', 'Delta2'; meta with box_size, n_mesh,
    k_nyquist, n_particles, redshift)."""
    try:
        from srsim.analysis.power import read_power
    except ImportError:
        table, meta = parse_table(path, POWER_COLUMNS)
    else:
        table, meta = read_power(path)
    _require_meta(path, meta, ("redshift",))
    return table, meta


def load_hmf(path) -> tuple[dict, dict]:
    """HMF table -> (dict 'log10M_lo', 'log10M_hi', 'log10M_mid', 'n_halos', 'dn_dlog10M' and 'err'
    [(Mpc/h)^-3 dex^-1]; meta with volume [(Mpc/h)^3], n_catalogs, redshift)."""
    try:
        from srsim.analysis.hmf import read_hmf
    except ImportError:
        table, meta = parse_table(path, HMF_COLUMNS)
    else:
        table, meta = read_hmf(path)
    _require_meta(path, meta, ("redshift",))
    return table, meta


def _require_meta(path, meta: dict, keys) -> None:
    for key in keys:
        if key not in meta:
            raise SrsimError(f"{path}: header lacks '# {key} = ...'")


def group_by_redshift(paths, loader) -> dict[float, list[tuple[dict, dict, str]]]:
    """Load every table and group them by their header redshift: {z: [(table, meta, path), ...]} with z sorted
    from high to low (the paper's panel order)."""
    groups: dict[float, list] = {}
    for p in paths:
        table, meta = loader(p)
        z = round(float(meta["redshift"]), 6)
        groups.setdefault(z, []).append((table, meta, str(p)))
    return dict(sorted(groups.items(), key=lambda kv: -kv[0]))


def power_item(path) -> tuple[dict, dict, str]:
    """(table, meta, path) of a power table: the item the figure and metric functions take."""
    table, meta = load_power(path)
    return table, meta, str(path)


def hmf_item(path) -> tuple[dict, dict, str]:
    """(table, meta, path) of an HMF table: the item the figure and metric functions take."""
    table, meta = load_hmf(path)
    return table, meta, str(path)
