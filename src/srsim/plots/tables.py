"""The analysis tables the figures and metrics consume, as (table, meta, path) items.

Formats are those of `srsim power` and `srsim hmf` (read by `srsim.analysis.power.read_power` and
`srsim.analysis.hmf.read_hmf`); every table must state its redshift, by which the figures group them.
"""

from __future__ import annotations

from srsim.errors import SrsimError


def _require(path, meta: dict, table: dict, columns) -> None:
    if "redshift" not in meta:
        raise SrsimError(f"{path}: header lacks '# redshift = ...'")
    missing = [c for c in columns if c not in table]
    if missing:
        raise SrsimError(f"{path}: missing column(s) {missing}")
    if len(table[columns[0]]) == 0:
        raise SrsimError(f"{path}: table has no rows")


def power_item(path) -> tuple[dict, dict, str]:
    """(table: 'k' [h/Mpc], 'P' [(Mpc/h)^3], 'n_modes', 'Delta2'; meta: box_size, n_mesh, k_nyquist, n_particles,
    redshift; path) of a power table."""
    from srsim.analysis.power import read_power

    table, meta = read_power(path)
    _require(path, meta, table, ("k", "P", "n_modes", "Delta2"))
    return table, meta, str(path)


def hmf_item(path) -> tuple[dict, dict, str]:
    """(table: 'log10M_lo', 'log10M_hi', 'log10M_mid', 'n_halos', 'dn_dlog10M' and 'err' [(Mpc/h)^-3 dex^-1];
    meta: volume [(Mpc/h)^3], n_catalogs, redshift; path) of an HMF table."""
    from srsim.analysis.hmf import read_hmf

    table, meta = read_hmf(path)
    _require(path, meta, table, ("log10M_lo", "log10M_hi", "log10M_mid", "n_halos", "dn_dlog10M", "err"))
    return table, meta, str(path)
