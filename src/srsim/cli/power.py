"""`srsim power`: matter power spectrum of a snapshot (CIC, no window deconvolution) as a text table; with
--rsd AXIS the redshift-space multipoles P0, P2, P4, with --momentum the momentum power spectrum."""

from __future__ import annotations

COMMAND = "power"
HELP = "matter power spectrum P(k) and Delta^2(k) of a snapshot: CIC on an N_mesh^3 grid, shells of width k_F"


def add_arguments(parser) -> None:
    parser.add_argument("snapshot", help="bigfile snapshot directory (MP-Gadget layout)")
    parser.add_argument("out", help="output text table (k [h/Mpc], P [(Mpc/h)^3], n_modes, Delta2; with --rsd or "
                        "--momentum the columns listed there)")
    parser.add_argument("--mesh", type=int, default=None, help="mesh cells per side (default analysis.power_mesh)")
    parser.add_argument("--config", default=None, help="JSON string or YAML file with an 'analysis' section")
    parser.add_argument("--device", default=None,
                        help="numpy (numba CPU), cpu/cuda/cuda:N (torch) or auto (default analysis.device)")
    parser.add_argument("--chunk-size", type=int, default=2**22, help="particles read and painted at a time")
    parser.add_argument("--deconvolve", action="store_true",
                        help="divide by the CIC window (off by default, as in the paper)")
    parser.add_argument("--engine", choices=("srsim", "nbodykit"), default=None,
                        help="srsim (numba/torch, one process) or nbodykit (MPI: run under mpirun/srun) "
                        "(default analysis.engine)")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--rsd", metavar="AXIS", default=None,
                      help="redshift-space multipoles P0, P2, P4 [(Mpc/h)^3] along AXIS (x|y|z or 0|1|2): particles "
                      "moved by v_los / (100 a E(a)) Mpc/h (plane-parallel); needs 1/Velocity; srsim engine")
    kind.add_argument("--momentum", action="store_true",
                      help="momentum power of p = (1 + delta) v: P_pp and its longitudinal part "
                      "[(km/s)^2 (Mpc/h)^3]; needs 1/Velocity; srsim engine")


def run(args) -> int:
    from srsim.config import apply_overrides, section
    from srsim.errors import SrsimError
    from srsim.io.power import write_power

    s = apply_overrides(section(args.config, "analysis"), args,
                        {"mesh": "power_mesh", "device": "device", "engine": "engine"})
    n_mesh = s["power_mesh"]
    if n_mesh < 2:
        raise SrsimError(f"--mesh must be >= 2, got {n_mesh}")
    velocity = args.rsd is not None or args.momentum
    if velocity and s["engine"] == "nbodykit":
        raise SrsimError("--rsd and --momentum are not supported by the nbodykit engine (use --engine srsim)")
    if velocity:
        from srsim.analysis import velocity_power as vp
        from srsim.io.power import write_momentum_power, write_multipoles

        if args.momentum:
            write_momentum_power(args.out, vp.momentum_power_snapshot(
                args.snapshot, n_mesh, device=s["device"], chunk_size=args.chunk_size, deconvolve=args.deconvolve))
        else:
            axis = vp.parse_axis(args.rsd)  # a bad axis fails before the snapshot is read
            write_multipoles(args.out, vp.multipoles_snapshot(
                args.snapshot, n_mesh, axis, device=s["device"], chunk_size=args.chunk_size,
                deconvolve=args.deconvolve))
        return 0
    if s["engine"] == "nbodykit":
        from srsim.analysis import nbodykit_engine as nbk
        from srsim.io.snapshot import read_header

        nbk.require()
        read_header(args.snapshot)  # a missing or malformed input fails on every rank alike, before any collective
        comm = nbk.mpi_comm()
        with nbk.collective_errors(comm):
            res = nbk.power_spectrum_snapshot(args.snapshot, n_mesh, deconvolve=args.deconvolve, comm=comm)
            if comm.rank == 0:
                write_power(args.out, res)
        return 0
    from srsim.analysis.power import power_spectrum_snapshot  # numba: not needed by the nbodykit engine

    res = power_spectrum_snapshot(args.snapshot, n_mesh, device=s["device"], chunk_size=args.chunk_size,
                                  deconvolve=args.deconvolve)
    write_power(args.out, res)
    return 0
