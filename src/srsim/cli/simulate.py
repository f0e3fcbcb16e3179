"""`srsim simulate`: run one simulation of the suite with the configured backend."""

from __future__ import annotations

COMMAND = "simulate"
HELP = "run one LR or HR simulation (initial conditions + snapshots at every configured redshift)"
SECTIONS = ("cosmology", "redshifts", "suite", "sims")


def add_arguments(parser) -> None:
    parser.add_argument("--sim", required=True, help="simulation name: trainNN, valNN, testNN or bigbox")
    parser.add_argument("--kind", required=True, choices=["lr", "hr"], help="resolution")
    parser.add_argument("--out", required=True, help="output directory: receives IC/ and z<z>/ snapshots")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU cores of this job (mpgadget: shared among its MPI ranks as OMP_NUM_THREADS; "
                             "under slurm each rank takes cpus-per-task)")
    parser.add_argument("--config", required=True,
                        help="config sections cosmology, redshifts, z_init, suite, bigbox, sims (JSON or YAML path)")


def run(args) -> int:
    from pathlib import Path

    from srsim.config import load_config
    from srsim.errors import SrsimError
    from srsim.sims.suite import spec_for

    cfg = load_config(args.config, partial=True)
    missing = [key for key in SECTIONS if key not in cfg]
    if missing:
        raise SrsimError(f"--config: srsim simulate needs the section(s) {', '.join(missing)}")
    spec = spec_for(cfg, args.sim, args.kind)
    if spec.backend == "pm":
        from srsim.sims import pm

        pm.run(spec, Path(args.out))
    else:
        from srsim.sims import mpgadget

        mpgadget.run(spec, Path(args.out), threads=args.threads)
    return 0
