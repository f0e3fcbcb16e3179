"""The optional nbodykit analysis engine (``analysis.engine: nbodykit``): P(k) and FOF with nbodykit, under MPI.

nbodykit (Hand et al. 2018) is the field's distributed analysis toolkit: launched as ``mpirun -n N srsim
power ...`` (or ``srun``) every rank reads its share of the snapshot through nbodykit's ``BigFileCatalog``,
and the mesh, the FFT and the FOF are spread over the ranks. This module runs it with srsim's own settings and
writes srsim's own formats, so the rest of the pipeline cannot tell the engines apart:

* Positions: MP-Gadget-layout ``1/Position`` in comoving kpc/h, converted to Mpc/h (``/ KPC_PER_MPC``).
* P(k): CIC (``resampler='cic'``), no window compensation, no interlacing, float64 mesh; shells of width
  k_F = 2 pi / box with edges at (i + 1/2) k_F out to the mesh corner (``srsim.analysis.power.default_k_edges``);
  ``k`` is the mean |k| of each shell's modes, P = <|delta_k|^2> V with no shot-noise subtraction, and a mode
  and its conjugate both count in ``n_modes``: the conventions of ``srsim.analysis.power``.
* FOF: linking length b times the mean separation (nbodykit's ``absolute=False`` is the same definition), and
  groups of at least ``min_members`` particles. nbodykit's ``nmin`` keeps groups of *more than* nmin
  particles (``_assign_labels`` drops ``N <= nmin``), so it is called with ``nmin = min_members - 1``. The
  catalogue (size, mass, periodic centre of mass, smallest member ID, optional member IDs) is reduced from
  nbodykit's particle labels with MPI reductions over a dense per-group array, with srsim's definitions
  (``srsim.analysis.fof``): the centre is the mean minimum-image offset from the group's smallest-ID member.
  Where the snapshot has `1/Velocity`, the bulk velocity ``vel`` and dispersion ``sigma_v`` (km/s) come from
  ``srsim.analysis.fof.group_velocities`` with its sums reduced over the ranks; without it, neither column.

Under MPI only rank 0 writes. An exception on any rank prints ``rank r of n: ...`` and aborts every rank
(``MPI_Abort``), so a failed rank never leaves the others waiting in a collective.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager

import numpy as np

from srsim.errors import SrsimError

__all__ = ["INSTALL_HINT", "available", "require", "mpi_comm", "collective_errors", "read_snapshot",
           "power_spectrum_snapshot", "group_table", "fof_snapshot"]

#: what to install for this engine (pyproject's optional dependencies)
INSTALL_HINT = 'pip install -e ".[nbodykit]" (see docs/cluster.md: conda-forge/bccp or the site MPI)'


def available() -> bool:
    """Whether nbodykit can be imported here (cheap: finds the package without importing it)."""
    import importlib.util

    return importlib.util.find_spec("nbodykit") is not None


def require() -> None:
    """Fail at once, naming the extra to install, where nbodykit is missing (never in the middle of a run)."""
    if not available():
        raise SrsimError(f"analysis.engine nbodykit: nbodykit is not installed in {sys.prefix}; install the "
                         f"extra: {INSTALL_HINT}")


def mpi_comm():
    """The MPI communicator nbodykit uses (COMM_WORLD under mpirun/srun; one rank otherwise)."""
    from nbodykit import CurrentMPIComm

    return CurrentMPIComm.get()


@contextmanager
def collective_errors(comm):
    """Turn an exception on one rank into an abort of all ranks (one rank: re-raise as usual)."""
    try:
        yield
    except BaseException as err:  # noqa: BLE001 (KeyboardInterrupt and SystemExit must not hang the others either)
        if comm.size == 1:
            raise
        sys.stderr.write(f"srsim (nbodykit engine), rank {comm.rank} of {comm.size}: {type(err).__name__}: {err}\n")
        sys.stderr.flush()
        # MPI_Abort kills the launcher's output forwarding too: give it a moment to pass the message on
        time.sleep(2.0)
        comm.Abort(2)


def read_snapshot(path, comm):
    """(catalogue, srsim Header) of a bigfile snapshot: nbodykit BigFileCatalog, Position in Mpc/h (float64).

    Each rank holds a contiguous share of the particles. The header is read with srsim's reader, so its checks
    (layout, units, counts) are the same as for the srsim engine.
    """
    from nbodykit.lab import BigFileCatalog

    from srsim.io.snapshot import KPC_PER_MPC, read_header

    header = read_header(path)
    cat = BigFileCatalog(os.fspath(path), dataset="1/", header="Header", comm=comm)
    if cat.csize != header.n_particles:
        raise SrsimError(f"{path}: header says {header.n_particles} particles, nbodykit reads {cat.csize}")
    cat["Position"] = cat["Position"].astype("f8") / KPC_PER_MPC
    # a 3-vector: FOF.to_halos and some meshes fail on a scalar BoxSize
    cat.attrs["BoxSize"] = np.full(3, header.box_size)
    return cat, header


def power_spectrum_snapshot(path, n_mesh: int, *, deconvolve: bool = False, comm=None):
    """P(k) of a snapshot with nbodykit -> srsim.analysis.power.PowerResult (same bins and conventions).

    n_mesh: CIC mesh cells per side. deconvolve: divide by the CIC window (nbodykit's compensation), off by
    default as in the paper. Collective: every rank of ``comm`` must call it; every rank gets the result.
    """
    from nbodykit.lab import FFTPower

    from srsim.analysis.power import PowerResult, default_k_edges, power_meta

    comm = comm or mpi_comm()
    cat, header = read_snapshot(path, comm)
    box = header.box_size
    mesh = cat.to_mesh(Nmesh=int(n_mesh), BoxSize=box, resampler="cic", compensated=bool(deconvolve),
                       interlaced=False, position="Position", dtype="f8")
    edges = default_k_edges(n_mesh, box)
    kf = 2 * np.pi / box
    # arange(kmin, kmax, dk) with kmax half a shell past the last edge: exactly srsim's edges
    r = FFTPower(mesh, mode="1d", dk=kf, kmin=edges[0], kmax=edges[-1] + 0.5 * kf).power
    got = np.asarray(r.edges["k"])
    if len(got) != len(edges) or not np.allclose(got, edges, rtol=1e-12, atol=0):
        raise SrsimError(f"nbodykit engine: k shells {got[:3]}... differ from srsim's {edges[:3]}...")
    modes = np.asarray(r["modes"], dtype=np.float64)
    keep = modes > 0
    k = np.asarray(r["k"])[keep]
    P = np.asarray(r["power"]).real[keep]
    meta = power_meta(box, n_mesh, header.n_particles, deconvolve, "nbodykit")
    meta.update(redshift=float(header.redshift), source=os.fspath(path), mpi_ranks=int(comm.size))
    return PowerResult(k=k, P=P, n_modes=np.rint(modes[keep]).astype(np.int64), Delta2=k**3 * P / (2 * np.pi**2),
                       meta=meta)


def _allreduce(comm, arr, op):
    out = np.empty_like(arr)
    comm.Allreduce(np.ascontiguousarray(arr), out, op=op)
    return out


def group_table(labels, pos, ids, box: float, comm, vel=None) -> dict:
    """Per-group sums over all ranks from nbodykit FOF labels (1..G; 0 = in no kept group).

    labels (n,) int, pos (n, 3) float64 Mpc/h, ids (n,) uint64, vel (n, 3) km/s or None: this rank's
    particles. Returns, on every rank, npart (G,) int64, pos (G, 3) float64 Mpc/h in [0, box), min_id (G,)
    uint64, with ``vel`` also vel (G, 3) and sigma_v (G,) float64 km/s, ordered by decreasing npart and then
    increasing min_id (srsim's catalogue order), and ``order`` (G,): the nbodykit label - 1 of each row.
    """
    from mpi4py import MPI

    from srsim.analysis.fof import group_velocities

    labels = np.asarray(labels, dtype=np.int64)
    n_groups = comm.allreduce(int(labels.max()) if len(labels) else 0, op=MPI.MAX)
    sel = labels > 0
    lab = labels[sel] - 1
    p = np.asarray(pos, dtype=np.float64)[sel]
    # int64, not uint64: MPI's MIN on a uint64 buffer may compare as signed, and the identity (all bits set)
    # would then win over every ID (grid IDs are far below 2^63)
    i = np.asarray(ids, dtype=np.uint64)[sel].astype(np.int64)
    npart = _allreduce(comm, np.bincount(lab, minlength=n_groups).astype(np.int64), MPI.SUM)
    min_id = np.full(n_groups, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(min_id, lab, i)
    min_id = _allreduce(comm, min_id, MPI.MIN)
    # the smallest-ID member is the reference of the minimum-image offsets; exactly one rank holds it
    ref = np.zeros((n_groups, 3))
    is_ref = i == min_id[lab]
    ref[lab[is_ref]] = p[is_ref]
    ref = _allreduce(comm, ref, MPI.SUM)
    d = p - ref[lab]
    d -= box * np.round(d / box)
    s = np.stack([np.bincount(lab, weights=d[:, a], minlength=n_groups) for a in range(3)], axis=1)
    s = _allreduce(comm, s, MPI.SUM)
    com = np.mod(ref + s / np.maximum(npart, 1)[:, None], box) if n_groups else np.zeros((0, 3))
    com[com >= box] = 0.0
    order = np.lexsort((min_id, -npart))
    out = {"npart": npart[order], "pos": com[order], "min_id": min_id[order].astype(np.uint64), "order": order}
    if vel is not None:
        v, sig = group_velocities(labels - 1, vel, n_groups, allreduce=lambda a: _allreduce(comm, a, MPI.SUM))
        out["vel"], out["sigma_v"] = v[order], sig[order]
    return out


def fof_snapshot(path, b: float, min_members: int, *, members: bool = False, comm=None) -> tuple[dict, dict]:
    """FOF of a snapshot with nbodykit -> (catalogue datasets, attributes) for srsim.io.catalog.write_catalog.

    b: linking length in units of the mean separation; min_members: smallest group kept, in particles.
    Collective; every rank gets the catalogue (member IDs, with ``members``, on rank 0 only; None elsewhere).
    """
    from nbodykit.lab import FOF

    from srsim.analysis.fof import catalog_attrs, linking_length
    from srsim.io.snapshot import has_block

    if min_members < 2:
        raise SrsimError(f"FOF: min_members must be >= 2, got {min_members}")
    comm = comm or mpi_comm()
    cat, header = read_snapshot(path, comm)
    fof = FOF(cat, linking_length=float(b), nmin=int(min_members) - 1, absolute=False, periodic=True)
    labels = np.asarray(fof.labels)
    pos = np.asarray(cat["Position"].compute())
    ids = np.asarray(cat["ID"].compute(), dtype=np.uint64).reshape(-1)  # bigfile gives (n, 1)
    has_vel = has_block(path, "Velocity")
    # the stored Velocity in peculiar km/s, converted as srsim.io.snapshot does (float32 times the factor)
    vel = None
    if has_vel:
        vel = np.asarray(cat["Velocity"].compute(), dtype=np.float32) * np.float32(header.velocity_factor)
    t = group_table(labels, pos, ids, header.box_size, comm, vel=vel)
    if len(t["npart"]) and t["npart"].min() < min_members:
        raise SrsimError(f"nbodykit FOF kept a group of {t['npart'].min()} < {min_members} particles")
    out = {"npart": t["npart"], "mass": t["npart"] * header.particle_mass, "pos": t["pos"], "min_id": t["min_id"]}
    if has_vel:
        out["vel"], out["sigma_v"] = t["vel"], t["sigma_v"]
    if members:
        # row of each nbodykit label in the catalogue order, then every rank's (row, id) pairs to rank 0
        row = np.empty(len(t["order"]), dtype=np.int64)
        row[t["order"]] = np.arange(len(t["order"]))
        sel = labels > 0
        parts = comm.gather((row[labels[sel] - 1], ids[sel]), root=0)
        if comm.rank == 0:
            r = np.concatenate([q[0] for q in parts])
            m = np.concatenate([q[1] for q in parts])
            o = np.lexsort((m, r))
            offsets = np.zeros(len(t["npart"]) + 1, dtype=np.int64)
            np.cumsum(t["npart"], out=offsets[1:])
            out["members_offset"], out["members_id"] = offsets, m[o]
    attrs = catalog_attrs(header, b, linking_length(b, header.box_size, header.n_particles), min_members,
                          os.fspath(path), has_velocity=has_vel)
    attrs["engine"] = "nbodykit"
    attrs["mpi_ranks"] = int(comm.size)
    return out, attrs
