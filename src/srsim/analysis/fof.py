"""Friends-of-friends (FOF) halo finder and halo catalogues.

Two particles are friends when their (minimum-image) separation is at most the linking length
``b * box / N^(1/3)`` (b = 0.2 of the mean separation, the paper's and MP-Gadget's definition); a group is a
connected set of friends. Groups with at least ``min_members`` particles are kept (paper: 32).

Algorithm (numba, one core): particles are sorted into cubic cells of side >= the linking length, stored
sparsely (only occupied cells, sorted by key; a dense index over (x, y) rows and a binary search along z
find a neighbour cell). Each occupied cell is linked with itself and its 13 "forward" neighbours with a
union-find forest (path halving). A pair of cells whose particles already all share one root is skipped,
which keeps dense halo cores cheap. Memory ~ 60 bytes per particle plus positions.

Where the snapshot has velocities (`1/Velocity`), every group also gets its bulk velocity and 1D velocity
dispersion (:func:`group_velocities`, from the group labels).

Catalogues are written and read by `srsim.io.catalog` (layout there); `catalog_attrs` builds their
attributes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numba
import numpy as np

from srsim.errors import SrsimError

__all__ = [
    "Groups",
    "fof_groups",
    "group_velocities",
    "linking_length",
    "fof_snapshot",
    "catalog_attrs",
]


def linking_length(b: float, box_size: float, n_particles: int) -> float:
    """FOF linking length in Mpc/h: b times the mean particle separation box / N^(1/3)."""
    if n_particles <= 0:
        raise SrsimError("FOF: no particles")
    return b * box_size / n_particles ** (1.0 / 3.0)


@dataclass
class Groups:
    """FOF groups of at least ``min_members`` particles, largest first (ties: smaller ``min_id`` first).

    npart     (G,) int64
    pos       (G, 3) float64, Mpc/h: centre of mass (periodic-aware when periodic, wrapped into [0, box))
    min_id    (G,) uint64: smallest member ID
    min_index (G,) int64: index (into the input arrays) of the member with the smallest ID
    labels    (N,) int64: group index of each input particle, -1 when in no kept group
    """

    npart: np.ndarray
    pos: np.ndarray
    min_id: np.ndarray
    min_index: np.ndarray
    labels: np.ndarray
    meta: dict = field(default_factory=dict)

    def members(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(offsets (G+1,) int64, member IDs sorted within each group) of the kept groups."""
        sel = np.flatnonzero(self.labels >= 0)
        order = np.lexsort((ids[sel], self.labels[sel]))
        sel = sel[order]
        offsets = np.zeros(len(self.npart) + 1, dtype=np.int64)
        np.cumsum(self.npart, out=offsets[1:])
        return offsets, np.asarray(ids, dtype=np.uint64)[sel]


# --------------------------------------------------------------------------------------------------
# numba kernels


@numba.njit(cache=True, nogil=True)
def _find(parent, i):
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@numba.njit(cache=True, nogil=True)
def _all_same_root(parent, a0, a1, b0, b1, r):
    for i in range(a0, a1):
        if _find(parent, i) != r:
            return False
    for i in range(b0, b1):
        if _find(parent, i) != r:
            return False
    return True


@numba.njit(cache=True, nogil=True)
def _link_pair(parent, x, a0, a1, b0, b1, l2, box, periodic, same_cell):
    """Union every friend pair (i in [a0,a1), j in [b0,b1)) of sorted particles."""
    r = _find(parent, a0)
    if _all_same_root(parent, a0, a1, b0, b1, r):
        return
    half = 0.5 * box
    for i in range(a0, a1):
        xi = x[i, 0]
        yi = x[i, 1]
        zi = x[i, 2]
        jstart = i + 1 if same_cell else b0
        for j in range(jstart, b1):
            dx = x[j, 0] - xi
            dy = x[j, 1] - yi
            dz = x[j, 2] - zi
            if periodic:
                if dx > half:
                    dx -= box
                elif dx < -half:
                    dx += box
                if dy > half:
                    dy -= box
                elif dy < -half:
                    dy += box
                if dz > half:
                    dz -= box
                elif dz < -half:
                    dz += box
            if dx * dx + dy * dy + dz * dz <= l2:
                ri = _find(parent, i)
                rj = _find(parent, j)
                if ri != rj:
                    # the smaller root wins: deterministic, independent of visiting order
                    if ri < rj:
                        parent[rj] = ri
                    else:
                        parent[ri] = rj


@numba.njit(cache=True, nogil=True)
def _locate(cell_z, lo, hi, cz):
    """Index of the cell with z index cz among the row's cells [lo, hi) (sorted by z), or -1."""
    while lo < hi:
        mid = (lo + hi) // 2
        if cell_z[mid] < cz:
            lo = mid + 1
        else:
            hi = mid
    return -1 if (lo >= len(cell_z) or cell_z[lo] != cz) else lo


@numba.njit(cache=True, nogil=True)
def _link_all(x, cell_start, cell_x, cell_y, cell_z, row_start, nc, l2, box, periodic):
    n = x.shape[0]
    parent = np.arange(n)
    ncell = len(cell_x)
    for c in range(ncell):
        a0 = cell_start[c]
        a1 = cell_start[c + 1]
        _link_pair(parent, x, a0, a1, a0, a1, l2, box, periodic, True)
        cx = cell_x[c]
        cy = cell_y[c]
        cz = cell_z[c]
        for ddx in range(0, 2):
            for ddy in range(-1, 2):
                for ddz in range(-1, 2):
                    # the 13 forward neighbours: each unordered pair of cells is visited once
                    if ddx == 0 and (ddy < 0 or (ddy == 0 and ddz <= 0)):
                        continue
                    nx = cx + ddx
                    ny = cy + ddy
                    nz = cz + ddz
                    if periodic:
                        nx %= nc[0]
                        ny %= nc[1]
                        nz %= nc[2]
                    elif nx >= nc[0] or ny < 0 or ny >= nc[1] or nz < 0 or nz >= nc[2]:
                        continue
                    row = nx * nc[1] + ny
                    d = _locate(cell_z, row_start[row], row_start[row + 1], nz)
                    if d < 0 or (d == c):
                        continue
                    _link_pair(parent, x, a0, a1, cell_start[d], cell_start[d + 1], l2, box, periodic, False)
    for i in range(n):
        parent[i] = _find(parent, i)
    return parent


@numba.njit(cache=True, nogil=True)
def _group_sums(root, x, ids, keep, gindex, ngroups, box, periodic):
    """Per kept group: offset sums from a reference member (min image), min ID and its index."""
    s = np.zeros((ngroups, 3))
    ref = np.full(ngroups, -1, np.int64)
    minid = np.full(ngroups, np.iinfo(np.uint64).max, np.uint64)
    minidx = np.full(ngroups, -1, np.int64)
    half = 0.5 * box
    for i in range(x.shape[0]):
        r = root[i]
        if not keep[r]:
            continue
        g = gindex[r]
        if ref[g] < 0:
            ref[g] = i
        k = ref[g]
        for a in range(3):
            d = x[i, a] - x[k, a]
            if periodic:
                if d > half:
                    d -= box
                elif d < -half:
                    d += box
            s[g, a] += d
        if ids[i] < minid[g]:
            minid[g] = ids[i]
            minidx[g] = i
    return s, ref, minid, minidx


# --------------------------------------------------------------------------------------------------


def _cells(pos: np.ndarray, cell: np.ndarray, lo: np.ndarray, nc: np.ndarray):
    """Sort particles by cell; return (order, cell_start, cell_x, cell_y, cell_z, row_start)."""
    idx = np.floor((pos - lo) / cell).astype(np.int64)
    np.clip(idx, 0, nc - 1, out=idx)  # positions == upper edge (float rounding) go to the last cell
    key = (idx[:, 0] * nc[1] + idx[:, 1]) * nc[2] + idx[:, 2]
    del idx
    order = np.argsort(key, kind="stable")
    skey = key[order]
    del key
    first = np.flatnonzero(np.r_[True, skey[1:] != skey[:-1]])
    ukey = skey[first]
    del skey
    cell_start = np.append(first, len(order)).astype(np.int64)
    cell_z = ukey % nc[2]
    rows = ukey // nc[2]
    cell_y = rows % nc[1]
    cell_x = rows // nc[1]
    row_start = np.searchsorted(rows, np.arange(nc[0] * nc[1] + 1)).astype(np.int64)
    return order, cell_start, cell_x, cell_y, cell_z, row_start


def fof_groups(
    pos: np.ndarray,
    link: float,
    *,
    box_size: float | None = None,
    ids: np.ndarray | None = None,
    min_members: int = 32,
) -> Groups:
    """Friends-of-friends groups.

    pos          (N, 3) float, Mpc/h. Periodic box [0, box_size) when ``box_size`` is given; otherwise an
                 open region (no wrapping), e.g. one domain plus its ghost zone.
    link         linking length in Mpc/h (see :func:`linking_length`)
    ids          (N,) uint64 particle IDs (default 1..N); used for ``min_id`` and the order of ties
    min_members  smallest group kept
    """
    pos = np.ascontiguousarray(pos, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise ValueError(f"positions must have shape (N, 3), got {pos.shape}")
    n = len(pos)
    ids = np.arange(1, n + 1, dtype=np.uint64) if ids is None else np.ascontiguousarray(ids, dtype=np.uint64)
    if ids.shape != (n,):
        raise ValueError(f"ids must have shape ({n},), got {ids.shape}")
    if not link > 0:
        raise ValueError(f"linking length must be positive, got {link}")
    periodic = box_size is not None
    if n == 0:
        e = np.zeros(0, np.int64)
        return Groups(e, np.zeros((0, 3)), np.zeros(0, np.uint64), e, e.copy(), {"link": link})
    if not np.all(np.isfinite(pos)):
        raise SrsimError("FOF: non-finite particle positions")
    if periodic:
        box = float(box_size)
        lo = np.zeros(3)
        ext = np.full(3, box)
        if pos.min() < 0 or pos.max() > box:
            raise SrsimError(f"FOF: positions outside the periodic box [0, {box})")
    else:
        box = 0.0
        lo = pos.min(axis=0)
        ext = np.maximum(pos.max(axis=0) - lo, link)
    # cells of side >= link; rows (x, y) are indexed densely, so keep nx * ny at most ~ 4 N + 64
    nc = np.maximum(1, np.floor(ext / link)).astype(np.int64)
    while nc[0] * nc[1] > 4 * n + 64:
        nc = np.maximum(1, nc // 2)
    cell = ext / nc
    order, cell_start, cx, cy, cz, row_start = _cells(pos, cell, lo, nc)
    x = pos[order]
    root = _link_all(x, cell_start, cx, cy, cz, row_start, nc, link * link, box, periodic)
    sizes = np.bincount(root, minlength=n)
    keep = sizes >= min_members
    roots = np.flatnonzero(keep)
    gindex = np.full(n, -1, dtype=np.int64)
    gindex[roots] = np.arange(len(roots))
    sid = ids[order]
    s, ref, minid, minidx = _group_sums(root, x, sid, keep, gindex, len(roots), box, periodic)
    npart = sizes[roots].astype(np.int64)
    com = x[ref] + s / npart[:, None] if len(roots) else np.zeros((0, 3))
    if periodic and len(roots):
        com = np.mod(com, box)
        com[com >= box] = 0.0
    # final order: decreasing size, then increasing min ID
    g_order = np.lexsort((minid, -npart))
    rank = np.empty(len(roots), dtype=np.int64)
    rank[g_order] = np.arange(len(roots))
    labels = np.full(n, -1, dtype=np.int64)
    lab_sorted = np.where(keep[root], rank[gindex[root].clip(0)] if len(roots) else -1, -1)
    labels[order] = lab_sorted
    return Groups(
        npart=npart[g_order],
        pos=com[g_order],
        min_id=minid[g_order],
        min_index=order[minidx[g_order]],
        labels=labels,
        meta={"link": float(link), "min_members": int(min_members), "periodic": periodic},
    )


def group_velocities(labels: np.ndarray, velocities: np.ndarray, n_groups: int,
                     allreduce=None) -> tuple[np.ndarray, np.ndarray]:
    """Bulk velocity and 1D velocity dispersion of each group, from the particles' group labels.

    labels      (N,) int: group index of each particle in [0, n_groups), -1 (any negative) in no group
    velocities  (N, 3) float, km/s (peculiar, as srsim.io.snapshot.read_particles gives them)
    n_groups    G, the number of groups; every group needs at least one member
    allreduce   for particles spread over MPI ranks: a function summing an array over all ranks (each rank
                passes its own particles; every rank gets the result); None for all particles here
    Returns (vel (G, 3) float64 km/s: the members' mean velocity, sigma_v (G,) float64 km/s:
    sqrt(sum_i |v_i - vel|^2 / (3 n)), the 1D dispersion about it). Two passes (mean, then squared
    deviations from it) in float64, so a dispersion far below the bulk velocity loses no precision.
    """
    labels = np.asarray(labels).reshape(-1)
    velocities = np.asarray(velocities)
    if velocities.shape != (len(labels), 3):
        raise ValueError(f"velocities must have shape ({len(labels)}, 3), got {velocities.shape}")
    red = allreduce if allreduce is not None else (lambda a: a)
    sel = labels >= 0
    lab = labels[sel].astype(np.int64)
    if len(lab) and lab.max() >= n_groups:
        raise ValueError(f"group label {lab.max()} outside [0, {n_groups})")
    v = velocities[sel].astype(np.float64)
    n = red(np.bincount(lab, minlength=n_groups).astype(np.float64))
    if np.any(n == 0):
        raise ValueError(f"group {int(np.argmin(n))} of {n_groups} has no members")
    s = red(np.stack([np.bincount(lab, weights=v[:, a], minlength=n_groups) for a in range(3)], axis=1))
    bulk = s / n[:, None] if n_groups else np.zeros((0, 3))
    d = v - bulk[lab]
    ss = red(np.bincount(lab, weights=np.einsum("ij,ij->i", d, d), minlength=n_groups))
    return bulk, np.sqrt(ss / (3.0 * n))


# --------------------------------------------------------------------------------------------------
# Snapshots and catalogue files


def fof_snapshot(path, b: float = 0.2, min_members: int = 32, members: bool = False) -> tuple[dict, dict]:
    """FOF of a whole snapshot in memory -> (catalogue datasets, attributes) for `srsim.io.catalog.write_catalog`.

    With a `1/Velocity` block the catalogue also has ``vel`` (G, 3) and ``sigma_v`` (G,) float64 km/s
    (:func:`group_velocities`); without one (SR snapshots) neither, and attribute ``has_velocity`` says which.
    """
    from srsim.io.snapshot import has_block, read_header, read_particles

    header = read_header(path)
    has_vel = has_block(path, "Velocity")
    data = read_particles(path, blocks=("Position", "ID", "Velocity") if has_vel else ("Position", "ID"))
    link = linking_length(b, header.box_size, header.n_particles)
    groups = fof_groups(data["Position"], link, box_size=header.box_size, ids=data["ID"], min_members=min_members)
    cat = {
        "npart": groups.npart,
        "mass": groups.npart * header.particle_mass,
        "pos": groups.pos,
        "min_id": groups.min_id,
    }
    if has_vel:
        cat["vel"], cat["sigma_v"] = group_velocities(groups.labels, data["Velocity"], len(groups.npart))
    if members:
        cat["members_offset"], cat["members_id"] = groups.members(data["ID"])
    attrs = catalog_attrs(header, b, link, min_members, os.fspath(path), has_velocity=has_vel)
    return cat, attrs


def catalog_attrs(header, b: float, link: float, min_members: int, source: str, *, has_velocity: bool) -> dict:
    """The attributes of a halo catalogue made from a snapshot with this header (``has_velocity``: whether
    the catalogue has the ``vel`` and ``sigma_v`` columns, i.e. whether the snapshot had velocities)."""
    return {
        "box_size": float(header.box_size),
        "redshift": float(header.redshift),
        "particle_mass": float(header.particle_mass),
        "b": float(b),
        "linking_length": float(link),
        "min_members": int(min_members),
        "n_particles": int(header.n_particles),
        "source": source,
        "has_velocity": bool(has_velocity),
    }
