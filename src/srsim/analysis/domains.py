"""FOF of boxes too large for one node: domains with ghost zones, found independently, then merged.

The periodic box is cut into ``n^3`` cubic domains (index ``(i * n + j) * n + k``). The job for one domain
streams the snapshot, keeps the particles of its domain widened by a ghost zone of width ``ghost`` on every
side (periodic images taken into account, coordinates unwrapped around the domain), and runs an open-region
FOF there. A group is kept by the domain whose core ``[lo, hi)`` holds the group's minimum-ID particle, so
every halo of the box is kept exactly once. A kept group is provably complete when none of its members lies
within one linking length of the region's outer edge; if one does, the ghost zone was narrower than the
halo and the job fails loudly instead of returning a truncated halo. The merge concatenates the domain
catalogues, checks that every domain is present once and that no halo appears twice, and orders the halos
like the single-domain catalogue, which it then equals. Where the snapshot has velocities, each domain job
also carries its particles' velocities and gives its halos' ``vel`` and ``sigma_v``
(srsim.analysis.fof.group_velocities over the complete owned groups), which the merge carries.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np

from srsim.analysis.fof import catalog_attrs, fof_groups, group_velocities, linking_length
from srsim.errors import SrsimError

__all__ = ["domain_bounds", "select_region", "fof_domain", "fof_domain_snapshot", "merge_catalogs",
           "partition_snapshot", "check_partitions", "write_partition_index", "read_partition_index",
           "iter_partition"]


def domain_bounds(index: int, n_domains: int, box_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper corners (Mpc/h) of domain ``index`` in [0, n_domains^3), C order over (x, y, z)."""
    if n_domains < 1:
        raise SrsimError(f"FOF domains: n_domains must be >= 1, got {n_domains}")
    if not 0 <= index < n_domains**3:
        raise SrsimError(f"FOF domains: domain index {index} outside [0, {n_domains**3})")
    ijk = np.array(np.unravel_index(index, (n_domains,) * 3), dtype=np.float64)
    w = box_size / n_domains
    return ijk * w, (ijk + 1) * w


def _chunk_velocity(chunk: tuple) -> np.ndarray | None:
    """The velocities of a (pos, ids) or (pos, ids, vel) chunk, or None."""
    if len(chunk) not in (2, 3):
        raise ValueError(f"FOF domains: a chunk is (pos, ids) or (pos, ids, vel), got {len(chunk)} arrays")
    return None if len(chunk) == 2 or chunk[2] is None else np.asarray(chunk[2], dtype=np.float32)


def _join(parts: list, has_vel: bool | None) -> np.ndarray | None:
    """Concatenated chunk velocities (M, 3) float32, or None when the chunks had none."""
    if not has_vel:
        return None
    return np.concatenate(parts) if parts else np.zeros((0, 3), np.float32)


def select_region(
    chunks: Iterable[tuple], lo: np.ndarray, hi: np.ndarray, ghost: float, box_size: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Particles inside ``[lo - ghost, hi + ghost)`` (periodically), from streamed chunks.

    chunks: (pos (n, 3) Mpc/h, ids (n,)) or (pos, ids, vel (n, 3) km/s), all of one kind.
    Returns (pos (M, 3) float64 in unwrapped coordinates within [lo - ghost, hi + ghost), ids (M,) uint64,
    vel (M, 3) float32 km/s or None when the chunks carry no velocities).
    """
    start = np.asarray(lo, dtype=np.float64) - ghost
    width = np.asarray(hi, dtype=np.float64) - lo + 2 * ghost
    keep_pos, keep_ids, keep_vel = [], [], []
    has_vel = None
    for chunk in chunks:
        pos, ids, vel = chunk[0], chunk[1], _chunk_velocity(chunk)
        if has_vel is None:
            has_vel = vel is not None
        elif has_vel != (vel is not None):
            raise SrsimError("FOF domains: some particle chunks carry velocities and others do not")
        d = np.mod(pos - start, box_size)  # offset from the region's lower corner, in [0, box)
        sel = np.all(d < width, axis=1)
        keep_pos.append(start + d[sel])
        keep_ids.append(np.asarray(ids, dtype=np.uint64)[sel])
        if has_vel:
            keep_vel.append(vel[sel])
    if not keep_pos:
        return np.zeros((0, 3)), np.zeros(0, np.uint64), None
    return np.concatenate(keep_pos), np.concatenate(keep_ids), _join(keep_vel, has_vel)


def fof_domain(
    chunks: Iterable[tuple],
    *,
    box_size: float,
    index: int,
    n_domains: int,
    ghost: float,
    link: float,
    min_members: int = 32,
    members: bool = False,
) -> dict:
    """Halos owned by one domain (minimum-ID member in the domain's core).

    chunks  iterable of (pos (n, 3) Mpc/h in [0, box), ids (n,) uint64) or of (pos, ids, vel (n, 3) km/s),
            covering the whole snapshot
    ghost   ghost-zone width in Mpc/h; must exceed the linking length and leave the widened domain
            smaller than the box (``box/n + 2 ghost + link <= box``)
    Returns catalogue datasets: npart, pos (Mpc/h, wrapped), min_id (+ members_offset, members_id; + vel
    (G, 3) and sigma_v (G,) float64 km/s when the chunks carry velocities).
    """
    lo, hi = domain_bounds(index, n_domains, box_size)
    width = box_size / n_domains
    if n_domains == 1:
        # one domain is the whole periodic box: no ghost zone, the ordinary periodic FOF
        pos, idv, vel = select_region(chunks, np.zeros(3), np.full(3, box_size), 0.0, box_size)
        g = fof_groups(pos, link, box_size=box_size, ids=idv, min_members=min_members)
        cat = {"npart": g.npart, "pos": g.pos, "min_id": g.min_id}
        if vel is not None:
            cat["vel"], cat["sigma_v"] = group_velocities(g.labels, vel, len(g.npart))
        if members:
            cat["members_offset"], cat["members_id"] = g.members(idv)
        return cat
    if not ghost > link:
        raise SrsimError(
            f"FOF domains: ghost zone {ghost} Mpc/h must be wider than the linking length {link:.4g} Mpc/h"
        )
    if width + 2 * ghost + link > box_size:
        raise SrsimError(
            f"FOF domains: a domain of {width:.4g} Mpc/h with ghost zones of {ghost} Mpc/h does not fit in the "
            f"{box_size} Mpc/h box; use fewer domains or a narrower ghost zone"
        )
    pos, ids, vel = select_region(chunks, lo, hi, ghost, box_size)
    # every group, however small: a large halo cut by the region edge may look small here
    g = fof_groups(pos, link, box_size=None, ids=ids, min_members=1)
    core = pos[g.min_index]
    owned = np.all((core >= lo) & (core < hi), axis=1)
    # completeness: no member of an owned group may lie within one linking length of the region's edge
    r_lo, r_hi = lo - ghost, hi + ghost
    near = np.any((pos - r_lo < link) | (r_hi - pos <= link), axis=1)
    bad = np.unique(g.labels[near])
    bad = bad[bad >= 0]
    bad = bad[owned[bad]]
    if len(bad):
        big = bad[np.argmax(g.npart[bad])]
        members = pos[g.labels == big]
        span = float((members.max(axis=0) - members.min(axis=0)).max())
        room = (box_size - width - link) / 2  # the widest ghost zone these domains allow
        hint = (f"increase analysis.fof_ghost (at most {room:.4g} Mpc/h with {n_domains} domains per side)"
                if span < room else
                f"no ghost zone of these domains holds it (at most {room:.4g} Mpc/h): the group percolates through "
                f"the box or needs fewer analysis.fof_domains")
        raise SrsimError(
            f"FOF domain {index} of {n_domains}^3: {len(bad)} halo(s) (largest {int(g.npart[big])} particles, "
            f"spanning at least {span:.3g} Mpc/h) reach the edge of the {ghost} Mpc/h ghost zone; {hint}"
        )
    keep = owned & (g.npart >= min_members)
    sel = np.flatnonzero(keep)
    com = np.mod(g.pos[sel], box_size)
    com[com >= box_size] = 0.0
    cat = {"npart": g.npart[sel], "pos": com, "min_id": g.min_id[sel]}
    if vel is not None:
        # only the kept groups, which the check above proved complete: their velocities are the whole halo's
        row = np.full(len(g.npart) + 1, -1, dtype=np.int64)  # the extra last entry maps label -1 to -1
        row[sel] = np.arange(len(sel))
        cat["vel"], cat["sigma_v"] = group_velocities(row[g.labels], vel, len(sel))
    if members:
        offsets, mids = g.members(ids)
        parts = [mids[offsets[s]:offsets[s + 1]] for s in sel]
        cat["members_offset"] = np.concatenate([[0], np.cumsum(g.npart[sel])]).astype(np.int64)
        cat["members_id"] = np.concatenate(parts) if parts else np.zeros(0, np.uint64)
    return cat


def fof_domain_snapshot(
    path, index: int, n_domains: int, ghost: float, b: float = 0.2, min_members: int = 32,
    members: bool = False, chunk_size: int = 2**22, partitions: list | None = None,
) -> tuple[dict, dict]:
    """:func:`fof_domain` on a snapshot -> (catalogue, attributes).

    Particles come from ``partitions`` (directories written by :func:`partition_snapshot` for this snapshot,
    covering it once) when given, else the whole snapshot is streamed through srsim.io.snapshot. Velocities
    are carried when the snapshot has a `1/Velocity` block (then partitions must carry them too).
    """
    from srsim.io.snapshot import has_block, iter_particles, read_header

    header = read_header(path)
    has_vel = has_block(path, "Velocity")
    link = linking_length(b, header.box_size, header.n_particles)
    if partitions:
        dirs = check_partitions(partitions, n_domains, ghost, header.n_particles)
        if _partition_meta(dirs[0]).get("velocity", False) != has_vel:
            raise SrsimError(f"{dirs[0]}: partition {'without' if has_vel else 'with'} velocities, but the snapshot "
                             f"{os.fspath(path)} {'has' if has_vel else 'has no'} 1/Velocity; rerun srsim "
                             f"fof-partition")
        chunks = iter_partition(dirs, index, n_domains, ghost, header.n_particles)
    else:
        blocks = ("Position", "ID", "Velocity") if has_vel else ("Position", "ID")
        chunks = (tuple(c[b] for b in blocks) for c in iter_particles(path, blocks=blocks, chunk_size=chunk_size))
    cat = fof_domain(chunks, box_size=header.box_size, index=index, n_domains=n_domains, ghost=ghost, link=link,
                     min_members=min_members, members=members)
    cat["mass"] = cat["npart"] * header.particle_mass
    attrs = catalog_attrs(header, b, link, min_members, os.fspath(path), has_velocity=has_vel)
    attrs.update({"domain": int(index), "n_domains": int(n_domains), "ghost": float(ghost)})
    return cat, attrs


def merge_catalogs(parts: list[tuple[dict, dict]], names: list[str] | None = None) -> tuple[dict, dict]:
    """Join the per-domain catalogues of one snapshot into one, ordered like the single-domain catalogue."""
    names = names or [f"part {i}" for i in range(len(parts))]
    if not parts:
        raise SrsimError("FOF merge: no domain catalogues given")
    a0 = parts[0][1]
    n_dom = int(a0.get("n_domains", 1))
    seen: dict[int, str] = {}
    for (cat, attrs), name in zip(parts, names):
        for key in ("box_size", "n_particles", "b", "min_members", "n_domains", "source", "has_velocity"):
            if key in a0 and attrs.get(key) != a0[key]:
                raise SrsimError(f"{name}: attribute {key} = {attrs.get(key)!r} differs from {names[0]} ({a0[key]!r})")
        d = int(attrs.get("domain", 0))
        if d in seen:
            raise SrsimError(f"{name}: domain {d} already given by {seen[d]}")
        seen[d] = name
        if "min_id" not in cat:
            raise SrsimError(f"{name}: domain catalogue has no 'min_id' dataset")
        if ("vel" in cat) != ("vel" in parts[0][0]):
            raise SrsimError(f"{name}: domain catalogue {'has' if 'vel' in cat else 'lacks'} velocities ('vel', "
                             f"'sigma_v') and {names[0]} {'has' if 'vel' in parts[0][0] else 'lacks'} them")
    missing = sorted(set(range(n_dom**3)) - set(seen))
    if missing:
        raise SrsimError(f"FOF merge: {len(missing)} of {n_dom**3} domains missing (first: {missing[0]})")
    npart = np.concatenate([c["npart"] for c, _ in parts]).astype(np.int64)
    min_id = np.concatenate([c["min_id"] for c, _ in parts]).astype(np.uint64)
    if len(np.unique(min_id)) != len(min_id):
        raise SrsimError("FOF merge: a halo was kept by two domains (duplicate minimum ID)")
    order = np.lexsort((min_id, -npart))
    cat = {
        "npart": npart[order],
        "mass": np.concatenate([c["mass"] for c, _ in parts])[order],
        "pos": np.concatenate([c["pos"].reshape(-1, 3) for c, _ in parts])[order],
        "min_id": min_id[order],
    }
    if "vel" in parts[0][0]:
        cat["vel"] = np.concatenate([c["vel"].reshape(-1, 3) for c, _ in parts])[order]
        cat["sigma_v"] = np.concatenate([c["sigma_v"] for c, _ in parts])[order]
    if all("members_offset" in c for c, _ in parts):
        groups = []
        for c, _ in parts:
            off = c["members_offset"]
            groups.extend(c["members_id"][off[i]:off[i + 1]] for i in range(len(off) - 1))
        groups = [groups[i] for i in order]
        cat["members_offset"] = np.concatenate([[0], np.cumsum([len(x) for x in groups])]).astype(np.int64)
        cat["members_id"] = np.concatenate(groups) if groups else np.zeros(0, np.uint64)
    attrs = {k: v for k, v in a0.items() if k != "domain"}
    return cat, attrs


# --------------------------------------------------------------------------------------------------
# Partition: one streaming pass that files every particle under the domains whose region holds it, so
# that each domain job reads its own particles only (not the whole snapshot).


def _region_memberships(pos: np.ndarray, n_domains: int, ghost: float, box_size: float):
    """(particle index, domain index) pairs: every domain whose widened region holds each particle.

    Needs ghost < domain width, so a particle is in at most 2 domains per axis (8 in all).
    """
    w = box_size / n_domains
    cell = np.floor(pos / w).astype(np.int64)
    np.clip(cell, 0, n_domains - 1, out=cell)
    frac = pos - cell * w
    lower = frac < ghost  # also in the region of the domain below (periodic)
    upper = frac >= w - ghost  # also in the region of the domain above
    parts_p, parts_d = [], []
    n = len(pos)
    for ox in (-1, 0, 1):
        for oy in (-1, 0, 1):
            for oz in (-1, 0, 1):
                sel = np.ones(n, dtype=bool)
                for axis, o in enumerate((ox, oy, oz)):
                    if o == -1:
                        sel &= lower[:, axis]
                    elif o == 1:
                        sel &= upper[:, axis]
                idx = np.flatnonzero(sel)
                if not len(idx):
                    continue
                c = (cell[idx] + np.array([ox, oy, oz])) % n_domains
                parts_p.append(idx)
                parts_d.append((c[:, 0] * n_domains + c[:, 1]) * n_domains + c[:, 2])
    return np.concatenate(parts_p), np.concatenate(parts_d)


def partition_snapshot(path, out_dir, *, n_domains: int, ghost: float, part: int = 0, n_parts: int = 1,
                       chunk_size: int = 2**22) -> None:
    """File particles ``[part * N / n_parts, (part + 1) * N / n_parts)`` of a snapshot by domain region.

    Writes ``out_dir`` atomically: ``d{d}.pos`` (float64 (m, 3) Mpc/h, raw little-endian) and ``d{d}.id``
    (uint64) for every domain d, where the snapshot has velocities also ``d{d}.vel`` (float32 (m, 3) km/s),
    and ``partition.json`` (the parameters; ``velocity`` says whether the .vel files are there). Needs
    ghost < box / n_domains.
    """
    import json

    from srsim.io.atomic import atomic_path
    from srsim.io.snapshot import has_block, read_header, read_particles

    header = read_header(path)
    box = header.box_size
    has_vel = has_block(path, "Velocity")
    blocks = ("Position", "ID", "Velocity") if has_vel else ("Position", "ID")
    if n_domains < 2:
        raise SrsimError(f"FOF partition: needs at least 2 domains per side, got {n_domains}")
    if not 0 < ghost < box / n_domains:
        raise SrsimError(f"FOF partition: ghost zone {ghost} Mpc/h must be positive and narrower than a domain "
                         f"({box / n_domains:.4g} Mpc/h)")
    if not 0 <= part < n_parts:
        raise SrsimError(f"FOF partition: part {part} outside [0, {n_parts})")
    n = header.n_particles
    start, stop = part * n // n_parts, (part + 1) * n // n_parts
    n_dom = n_domains**3
    with atomic_path(out_dir, directory=True) as tmp:
        files = {}
        try:
            for d in range(n_dom):
                files[d] = tuple(open(tmp / f"d{d}.{ext}", "wb") for ext in ("pos", "id", "vel")[:len(blocks)])
            for s in range(start, stop, chunk_size):
                data = read_particles(path, blocks=blocks, start=s, stop=min(stop, s + chunk_size))
                pos, ids = data["Position"], data["ID"]
                pi, di = _region_memberships(pos, n_domains, ghost, box)
                order = np.argsort(di, kind="stable")
                pi, di = pi[order], di[order]
                bounds = np.searchsorted(di, np.arange(n_dom + 1))
                for d in range(n_dom):
                    sel = pi[bounds[d]:bounds[d + 1]]
                    if len(sel):
                        fs = files[d]
                        fs[0].write(np.ascontiguousarray(pos[sel], dtype="<f8").tobytes())
                        fs[1].write(np.ascontiguousarray(ids[sel], dtype="<u8").tobytes())
                        if has_vel:
                            fs[2].write(np.ascontiguousarray(data["Velocity"][sel], dtype="<f4").tobytes())
        finally:
            for fs in files.values():
                for fh in fs:
                    fh.close()
        meta = {"snapshot": os.fspath(path), "n_domains": n_domains, "ghost": ghost, "part": part,
                "n_parts": n_parts, "start": start, "stop": stop, "box_size": box, "n_particles": n,
                "velocity": has_vel}
        (tmp / "partition.json").write_text(json.dumps(meta, indent=1))


def _partition_meta(d) -> dict:
    import json

    try:
        with open(os.path.join(os.fspath(d), "partition.json")) as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise SrsimError(f"{os.fspath(d)}: not a FOF partition directory ({exc})") from None


def check_partitions(dirs: list, n_domains: int, ghost: float, n_particles: int) -> list[str]:
    """The partition directories of one snapshot, checked: same domains, ghost and particle count, and
    together covering particles [0, n_particles) exactly once, all with velocities or all without. Returns
    them ordered by particle range."""
    if not dirs:
        raise SrsimError("FOF domain: no partition directories given")
    found = []
    velocity = None
    for d in dirs:
        d = os.fspath(d)
        meta = _partition_meta(d)
        if meta["n_domains"] != n_domains or not np.isclose(meta["ghost"], ghost) or meta["n_particles"] != n_particles:
            raise SrsimError(f"{d}: partition made with n_domains={meta['n_domains']}, ghost={meta['ghost']}, "
                             f"{meta['n_particles']} particles; this job needs {n_domains}, {ghost}, {n_particles}")
        v = bool(meta.get("velocity", False))  # partitions made before velocities were carried have none
        if velocity is not None and v != velocity:
            raise SrsimError(f"{d}: partition {'with' if v else 'without'} velocities, unlike the others")
        velocity = v
        found.append((meta["start"], meta["stop"], d))
    found.sort()
    expect = 0
    for a, b, d in found:
        if a != expect:
            raise SrsimError(f"FOF domain: partitions do not cover particles [{expect}, {a}) exactly once "
                             f"(next: {d})")
        expect = b
    if expect != n_particles:
        raise SrsimError(f"FOF domain: partitions stop at particle {expect} of {n_particles}")
    return [d for _, _, d in found]


def write_partition_index(dirs: list, out) -> dict:
    """Check the partition directories of one snapshot (:func:`check_partitions`) and write their index.

    The index (JSON: ``parts``, absolute paths, and the shared ``n_domains``, ``ghost``, ``n_particles``,
    ``snapshot``) is what each domain job reads instead of naming every partition directory itself, so a
    workflow with D domain jobs and P partitions has D + P dependencies instead of D * P.
    """
    import json

    from srsim.io.atomic import atomic_path

    if not dirs:
        raise SrsimError("FOF partition index: no partition directories given")
    metas = [_partition_meta(d) for d in dirs]
    meta = metas[0]
    ordered = check_partitions(dirs, meta["n_domains"], meta["ghost"], meta["n_particles"])
    snapshots = {m["snapshot"] for m in metas}
    if len(snapshots) != 1:
        raise SrsimError(f"FOF partition index: partitions of different snapshots: {sorted(snapshots)}")
    index = {"snapshot": snapshots.pop(), "n_domains": meta["n_domains"], "ghost": meta["ghost"],
             "n_particles": meta["n_particles"], "parts": [os.path.abspath(d) for d in ordered]}
    with atomic_path(out) as tmp:
        Path(tmp).write_text(json.dumps(index, indent=1))
    return index


def read_partition_index(path) -> list[str]:
    """The partition directories listed by :func:`write_partition_index`."""
    import json

    try:
        with open(path) as f:
            index = json.load(f)
        return list(index["parts"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SrsimError(f"{os.fspath(path)}: not a FOF partition index ({exc})") from None


def iter_partition(dirs: list, index: int, n_domains: int, ghost: float, n_particles: int):
    """Yield (pos, ids), or (pos, ids, vel) for partitions with velocities, of domain ``index`` from the
    partition directories of every part of one snapshot."""
    for d in check_partitions(dirs, n_domains, ghost, n_particles):
        pos = np.fromfile(os.path.join(d, f"d{index}.pos"), dtype="<f8").reshape(-1, 3)
        ids = np.fromfile(os.path.join(d, f"d{index}.id"), dtype="<u8")
        if len(pos) != len(ids):
            raise SrsimError(f"{d}: d{index}.pos and d{index}.id hold different particle counts")
        if not _partition_meta(d).get("velocity", False):
            yield pos, ids
            continue
        vel = np.fromfile(os.path.join(d, f"d{index}.vel"), dtype="<f4").reshape(-1, 3)
        if len(vel) != len(ids):
            raise SrsimError(f"{d}: d{index}.vel and d{index}.id hold different particle counts")
        yield pos, ids, vel
