"""The analysis tables the figures and metrics consume, as `Table` items, and their grouping by redshift.

Formats are those of `srsim power` and `srsim hmf` (read by `srsim.io.power.read_power` and
`srsim.io.hmf.read_hmf`); every table must state its redshift, by which the figures and metrics group them.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

from srsim.errors import SrsimError


class Table(NamedTuple):
    """One analysis table read from disk."""

    table: dict  #: {column name: (n_rows,) float64 array}
    meta: dict  #: the `# key = value` header (always has 'redshift')
    path: str  #: where it was read from (named in errors and in metrics.json)

    @property
    def redshift(self) -> float:
        """The table's redshift, rounded to 6 decimals (the grouping key)."""
        return round(float(self.meta["redshift"]), 6)


def _require(path, meta: dict, table: dict, columns) -> None:
    if "redshift" not in meta:
        raise SrsimError(f"{path}: header lacks '# redshift = ...'")
    missing = [c for c in columns if c not in table]
    if missing:
        raise SrsimError(f"{path}: missing column(s) {missing}")
    if len(table[columns[0]]) == 0:
        raise SrsimError(f"{path}: table has no rows")


def power_item(path) -> Table:
    """A power table: 'k' [h/Mpc], 'P' [(Mpc/h)^3], 'n_modes', 'Delta2'; meta: box_size [Mpc/h], n_mesh,
    k_nyquist [h/Mpc], n_particles, redshift."""
    from srsim.io.power import read_power

    table, meta = read_power(path)
    _require(path, meta, table, ("k", "P", "n_modes", "Delta2"))
    return Table(table, meta, str(path))


def hmf_item(path) -> Table:
    """An HMF table: 'log10M_lo', 'log10M_hi', 'log10M_mid' [log10(Msun/h)], 'n_halos', 'dn_dlog10M' and 'err'
    [(Mpc/h)^-3 dex^-1]; meta: volume [(Mpc/h)^3], n_catalogs, redshift."""
    from srsim.io.hmf import read_hmf

    table, meta = read_hmf(path)
    _require(path, meta, table, ("log10M_lo", "log10M_hi", "log10M_mid", "n_halos", "dn_dlog10M", "err"))
    return Table(table, meta, str(path))


Loader = Callable[[str], Table]


def by_redshift(paths, loader: Loader, kind: str, figure: str) -> dict[float, list[Table]]:
    """{z: [Table, ...]} of the tables at `paths` read with `loader`; SrsimError when there are none
    (`kind` and `figure` name the option and the product in the message)."""
    out: dict[float, list[Table]] = {}
    for p in paths or ():
        item = loader(p)
        out.setdefault(item.redshift, []).append(item)
    if not out:
        raise SrsimError(f"{figure}: no --{kind} tables given")
    return out


def matched_by_redshift(lr, hr, sr, loader: Loader, figure: str, *, sr_many: bool) -> dict[float, dict]:
    """{z: {'lr': Table, 'hr': Table, 'sr': Table, or [Table, ...] with sr_many}} for every redshift of the HR
    tables. Each HR redshift needs one LR table and one SR table (several with sr_many: the realizations);
    a table at a redshift without HR raises SrsimError."""
    lr = by_redshift(lr, loader, "lr", figure)
    hr = by_redshift(hr, loader, "hr", figure)
    sr = by_redshift(sr, loader, "sr", figure)
    groups = {}
    for z in hr:
        for name, g in (("lr", lr), ("sr", sr)):
            if z not in g:
                raise SrsimError(f"{figure}: no --{name} table at z = {z:g} (HR has one)")
        for name, g in (("lr", lr), ("hr", hr)) + ((() if sr_many else (("sr", sr),))):
            if len(g[z]) != 1:
                raise SrsimError(f"{figure}: {len(g[z])} --{name} tables at z = {z:g}: " +
                                 ", ".join(i.path for i in g[z]))
        groups[z] = {"lr": lr[z][0], "hr": hr[z][0], "sr": sr[z] if sr_many else sr[z][0]}
    extra = (set(lr) | set(sr)) - set(hr)
    if extra:
        raise SrsimError(f"{figure}: tables at z = {sorted(extra)} have no HR counterpart")
    return groups


def bigbox_by_redshift(lr, sr, hr, loader: Loader, figure: str) -> dict[float, dict] | None:
    """{z: {'lr': Table, 'sr': Table, 'hr': Table}} of the big box's LR and SR tables, one of each per redshift,
    with the (small) test box's HR table at that redshift; None when no big-box tables are given. A big-box
    redshift without an LR, SR or HR table raises SrsimError."""
    if not lr and not sr:
        return None
    lr = by_redshift(lr, loader, "bigbox-hmf-lr", figure)
    sr = by_redshift(sr, loader, "bigbox-hmf-sr", figure)
    hr = by_redshift(hr, loader, "hmf-hr", figure)
    groups = {}
    for z in sorted(set(lr) | set(sr)):
        for name, g in (("bigbox-hmf-lr", lr), ("bigbox-hmf-sr", sr), ("hmf-hr", hr)):
            if z not in g:
                raise SrsimError(f"{figure}: no --{name} table at z = {z:g} (the big box has one)")
            if len(g[z]) != 1:
                raise SrsimError(f"{figure}: {len(g[z])} --{name} tables at z = {z:g}: " +
                                 ", ".join(i.path for i in g[z]))
        groups[z] = {"lr": lr[z][0], "sr": sr[z][0], "hr": hr[z][0]}
    return groups


def trivial_by_redshift(paths, loader: Loader, figure: str, zs=None) -> dict[float, Table] | None:
    """{z: Table} of the trivial predictor's tables, one per redshift (None when no paths); with zs, every
    redshift of zs must have one."""
    if not paths:
        return None
    groups = by_redshift(paths, loader, "trivial", figure)
    for z, items in groups.items():
        if len(items) != 1:
            raise SrsimError(f"{figure}: {len(items)} trivial tables at z = {z:g}: " + ", ".join(i.path for i in items))
    for z in zs or ():
        if z not in groups:
            raise SrsimError(f"{figure}: no trivial table at z = {z:g} (HR has one)")
    return {z: items[0] for z, items in groups.items()}


def with_trivial(groups: dict, paths, loader: Loader, figure: str) -> dict:
    """`groups` from :func:`matched_by_redshift` with 'trivial' set at every redshift (a Table, or None
    when no trivial tables are given)."""
    trivial = trivial_by_redshift(paths, loader, figure, groups)
    for z, g in groups.items():
        g["trivial"] = trivial[z] if trivial else None
    return groups
