"""`srsim fof`: friends-of-friends halo catalogue of a snapshot (whole periodic box in memory)."""

from __future__ import annotations

COMMAND = "fof"
HELP = ("friends-of-friends halos of a snapshot (periodic box) -> HDF5 catalogue (npart, mass, pos, min_id; vel, "
        "sigma_v where the snapshot has velocities)")


def add_arguments(parser) -> None:
    parser.add_argument("snapshot", help="bigfile snapshot directory (MP-Gadget layout)")
    parser.add_argument("out", help="output HDF5 halo catalogue")
    parser.add_argument("--b", type=float, default=None,
                        help="linking length in units of the mean separation (default analysis.fof_b)")
    parser.add_argument("--min-members", type=int, default=None,
                        help="smallest halo kept, in particles (default analysis.fof_min_members)")
    parser.add_argument("--members", action="store_true", help="also store member IDs (members_offset, members_id)")
    parser.add_argument("--engine", choices=("srsim", "nbodykit"), default=None,
                        help="srsim (numba cell-list FOF, one process) or nbodykit (MPI: run under mpirun/srun) "
                        "(default analysis.engine)")
    parser.add_argument("--config", default=None, help="JSON string or YAML file with an 'analysis' section")


def run(args) -> int:
    from srsim.io.catalog import write_catalog
    from srsim.config import apply_overrides, section
    from srsim.errors import SrsimError

    s = apply_overrides(section(args.config, "analysis"), args,
                        {"b": "fof_b", "min_members": "fof_min_members", "engine": "engine"})
    b, nmin = s["fof_b"], s["fof_min_members"]
    if not b > 0 or nmin < 1:
        raise SrsimError(f"--b must be > 0 and --min-members >= 1 (got {b}, {nmin})")
    if s["engine"] == "nbodykit":
        from srsim.analysis import nbodykit_engine as nbk
        from srsim.io.snapshot import read_header

        nbk.require()
        read_header(args.snapshot)  # a missing or malformed input fails on every rank alike, before any collective
        comm = nbk.mpi_comm()
        with nbk.collective_errors(comm):
            cat, attrs = nbk.fof_snapshot(args.snapshot, b, nmin, members=args.members, comm=comm)
            if comm.rank == 0:
                write_catalog(args.out, cat, attrs)
        return 0
    from srsim.analysis.fof import fof_snapshot

    cat, attrs = fof_snapshot(args.snapshot, b=b, min_members=nmin, members=args.members)
    write_catalog(args.out, cat, attrs)
    return 0
