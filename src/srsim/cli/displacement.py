"""`srsim displacement`: snapshot -> displacement field on the Lagrangian grid (HDF5)."""

from __future__ import annotations

COMMAND = "displacement"
HELP = ("convert a grid-particle snapshot to its displacement field (3, N, N, N) float32 Mpc/h in HDF5 "
        "(and its velocity field, --velocity)")


def add_arguments(parser) -> None:
    parser.add_argument("snapshot", help="bigfile snapshot directory (MP-Gadget layout)")
    parser.add_argument("out", help="output HDF5 file")
    parser.add_argument("--config", default=None,
                        help="JSON string or YAML file with a 'cosmology' section: recorded with the field (MP-Gadget "
                             "snapshots lack sigma8 and n_s) once the snapshot's header agrees with it")
    parser.add_argument("--velocity", action="store_true",
                        help="also write the snapshot's peculiar velocities on the same grid: dataset 'vel', "
                             "(3, N, N, N) float32 km/s (the snapshot needs a 1/Velocity block)")


def run(args) -> int:
    from srsim.config import load_config
    from srsim.displacement import snapshot_to_displacement_file

    cosmology = load_config(args.config, partial=True).get("cosmology") if args.config else None
    snapshot_to_displacement_file(args.snapshot, args.out, cosmology, velocity=args.velocity)
    return 0
