"""The analysis tables the figures and metrics consume, as `Table` items, and their grouping by redshift.

Formats are those of `srsim power` and `srsim hmf` (read by `srsim.io.power.read_power` and
`srsim.io.hmf.read_hmf`); every table must state its redshift, by which the figures and metrics group them.
"""

from __future__ import annotations

import math
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


def multipole_item(path) -> Table:
    """A redshift-space multipole table (`srsim power --rsd AXIS`): 'k' [h/Mpc], 'P0', 'P2', 'P4' [(Mpc/h)^3],
    'n_modes'; meta: box_size [Mpc/h], n_mesh, k_nyquist [h/Mpc], n_particles, redshift, axis."""
    from srsim.io.power import read_multipoles

    table, meta = read_multipoles(path)
    _require(path, meta, table, ("k", "P0", "P2", "P4", "n_modes"))
    if "axis" not in meta:
        raise SrsimError(f"{path}: header lacks '# axis = ...' (the line of sight)")
    return Table(table, meta, str(path))


def momentum_item(path) -> Table:
    """A momentum power table (`srsim power --momentum`): 'k' [h/Mpc], 'P_pp', 'P_pp_longitudinal'
    [(km/s)^2 (Mpc/h)^3], 'n_modes'; meta as a power table's."""
    from srsim.io.power import read_momentum_power

    table, meta = read_momentum_power(path)
    _require(path, meta, table, ("k", "P_pp", "P_pp_longitudinal", "n_modes"))
    return Table(table, meta, str(path))


def _agree(items, key: str, what: str, figure: str, close: bool) -> None:
    """SrsimError naming both tables and both values when `items` disagree on header `key`."""
    ref = next((i for i in items if key in i.meta), None)
    if ref is None:
        return
    for item in items:
        if key not in item.meta:
            continue
        a, b = ref.meta[key], item.meta[key]
        same = math.isclose(float(a), float(b), rel_tol=1e-6) if close else str(a) == str(b)
        if not same:
            raise SrsimError(f"{figure}: {what} differs: {ref.path} has {key} = {a}, {item.path} has {key} = {b}")


def _one_per_redshift(groups: dict, names, kind: str, noun: str, figure: str) -> None:
    """At most one --KIND-NAME table per redshift for each of `names` (groups: {name: {z: [Table, ...]}})."""
    for name in names:
        for z, items in groups[name].items():
            if len(items) != 1:
                raise SrsimError(f"{figure}: {len(items)} --{kind}-{name} {noun} at z = {z:g}: " +
                                 ", ".join(i.path for i in items))


def _at_hr_redshifts(groups: dict, names, kind: str, noun: str, figure: str) -> None:
    """Every --KIND-NAME table of `names` is at a redshift that the --KIND-hr tables have."""
    hr_z = groups["hr"]
    for name in names:
        for z, items in groups[name].items():
            if z not in hr_z:
                raise SrsimError(f"{figure}: redshift differs: {items[0].path} is at z = {z:g}, the --{kind}-hr "
                                 f"{noun} at z = {', '.join(f'{v:g}' for v in sorted(hr_z))}")


def velocity_by_redshift(lr, hr, sr, loader: Loader, figure: str, kind: str) -> dict[float, dict]:
    """{z: {'lr': Table, 'hr': Table, 'sr': [Table, ...] (empty without SR tables)}} of velocity statistics
    tables (`multipole_item` or `momentum_item`; `kind` names the option, e.g. 'rsd' or 'momentum').
    One LR and one HR table per redshift, SR optional (any number of realizations). All tables must share
    the box size and mesh (so the k bins) and, for multipoles, the line of sight; a table at a redshift without
    its LR or HR counterpart raises SrsimError naming both redshifts."""
    groups = {name: by_redshift(paths, loader, f"{kind}-{name}", figure) if (paths or name != "sr") else {}
              for name, paths in (("lr", lr), ("hr", hr), ("sr", sr))}
    every = [i for g in groups.values() for items in g.values() for i in items]
    _agree(every, "box_size", "box size", figure, close=True)
    _agree(every, "n_mesh", "mesh (hence the k bins)", figure, close=True)
    _agree(every, "axis", "line of sight", figure, close=False)
    _one_per_redshift(groups, ("lr", "hr"), kind, "tables", figure)
    _at_hr_redshifts(groups, ("lr", "sr"), kind, "tables", figure)
    hr_z = groups["hr"]
    for z, items in hr_z.items():
        if z not in groups["lr"]:
            raise SrsimError(f"{figure}: redshift differs: {items[0].path} is at z = {z:g}, the --{kind}-lr tables at "
                             f"z = {', '.join(f'{v:g}' for v in sorted(groups['lr']))}")
    return {z: {"lr": groups["lr"][z][0], "hr": hr_z[z][0], "sr": groups["sr"].get(z, [])} for z in hr_z}


def velocity_tables(lr, hr, sr, trivial, loader: Loader, figure: str, kind: str) -> tuple[dict | None, dict | None]:
    """(`velocity_by_redshift` groups, trivial {z: Table} or None) of the paths given as --KIND-lr, --KIND-hr,
    --KIND-sr and --KIND-trivial (KIND 'rsd' or 'momentum'; each a list or None); (None, None) when none is
    given. LR without HR or the reverse (also SR or trivial tables without both) raise SrsimError."""
    opts = {"lr": lr, "hr": hr, "sr": sr, "trivial": trivial}
    if not any(opts.values()):
        return None, None
    for name in ("lr", "hr"):
        if not opts[name]:
            given = ", ".join(f"--{kind}-{n}" for n, v in opts.items() if v)
            raise SrsimError(f"{figure}: {given} given without --{kind}-{name}")
    groups = velocity_by_redshift(lr, hr, sr, loader, figure, kind)
    return groups, trivial_by_redshift(trivial, loader, figure, groups)


def halo_item(path) -> Table:
    """A FOF halo catalogue (`srsim fof`) as a `Table`: 'mass' (G,) Msun/h and, where it has velocities,
    'sigma_v' (G,) km/s (the members' 1D dispersion; absent otherwise); meta: its attributes (redshift,
    box_size, has_velocity, ...). Member lists are not loaded."""
    import numpy as np

    from srsim.io.catalog import read_catalog

    cat, attrs = read_catalog(path, max_members=0)
    table = {"mass": np.asarray(cat["mass"], dtype=np.float64)}
    if "sigma_v" in cat:
        table["sigma_v"] = np.asarray(cat["sigma_v"], dtype=np.float64)
    return Table(table, dict(attrs), str(path))


def halo_tables(lr, hr, sr, trivial, figure: str, loader: Loader = halo_item) -> dict[float, dict] | None:
    """{z: {'hr': Table, 'sr': [Table, ...], 'lr': Table or None, 'trivial': Table or None}} of the FOF
    catalogues given as --fof-hr, --fof-sr (every realization), --fof-lr and --fof-trivial (each a list or
    None); None when none is given. Every HR redshift needs SR catalogues; at most one HR, LR and trivial
    catalogue per redshift, all of one box size; LR, SR or trivial catalogues at a redshift without HR, or
    LR / SR / trivial ones without --fof-hr, raise SrsimError."""
    opts = {"lr": lr, "hr": hr, "sr": sr, "trivial": trivial}
    if not any(opts.values()):
        return None
    for name in ("hr", "sr"):
        if not opts[name]:
            given = ", ".join(f"--fof-{n}" for n, v in opts.items() if v)
            raise SrsimError(f"{figure}: {given} given without --fof-{name}")
    groups = {name: by_redshift(paths, loader, f"fof-{name}", figure) if paths else {}
              for name, paths in opts.items()}
    _agree([i for g in groups.values() for items in g.values() for i in items], "box_size", "box size", figure,
           close=True)
    _one_per_redshift(groups, ("lr", "hr", "trivial"), "fof", "catalogues", figure)
    _at_hr_redshifts(groups, ("lr", "sr", "trivial"), "fof", "catalogues", figure)
    hr_z = groups["hr"]
    for z, items in hr_z.items():
        if z not in groups["sr"]:
            raise SrsimError(f"{figure}: no --fof-sr catalogue at z = {z:g} ({items[0].path} is there)")
    return {z: {"hr": items[0], "sr": groups["sr"][z],
                "lr": groups["lr"][z][0] if z in groups["lr"] else None,
                "trivial": groups["trivial"][z][0] if z in groups["trivial"] else None}
            for z, items in hr_z.items()}
