"""Halo-mass-function text tables: what `srsim hmf` writes and the figures and metrics read.

Layout (`srsim.io.table`): a `#` header with the metadata (volume [(Mpc/h)^3], n_catalogs, n_total, n_below,
n_above, redshift, box_size [Mpc/h], particle_mass [Msun/h], min_members, sources), then one row per mass
bin: log10M_lo, log10M_hi, log10M_mid [log10(M / (Msun/h))], n_halos, dn_dlog10M and err
[(Mpc/h)^-3 dex^-1].
"""

from __future__ import annotations

import numpy as np

from srsim.io.table import read_table, write_table

COLUMNS = ("log10M_lo", "log10M_hi", "log10M_mid", "n_halos", "dn_dlog10M", "err")


def write_hmf(path, table) -> None:
    """Write an HMF atomically. `table`: a `srsim.analysis.hmf.HMF` (the six columns as (nbins,) arrays,
    `meta` dict)."""
    rows = [
        f"{table['log10M_lo'][i]:.6f} {table['log10M_hi'][i]:.6f} {table['log10M_mid'][i]:.6f} "
        f"{int(table['n_halos'][i])} {table['dn_dlog10M'][i]:.10e} {table['err'][i]:.10e}"
        for i in range(len(table["n_halos"]))
    ]
    write_table(path, "srsim halo mass function: FOF halos, Poisson errors; M in Msun/h, "
                "dn/dlog10M in (Mpc/h)^-3 dex^-1", dict(table.meta), [(c, "") for c in COLUMNS], rows)


def read_hmf(path) -> tuple[dict, dict]:
    """Read a table written by :func:`write_hmf` -> ({column: (nbins,) float64, 'n_halos' int64}, meta dict)."""
    table, meta = read_table(path, COLUMNS, "mass function")
    table["n_halos"] = table["n_halos"].astype(np.int64)
    return table, meta
