"""`srsim displacement`: snapshot -> displacement field on the Lagrangian grid (HDF5)."""

from __future__ import annotations

COMMAND = "displacement"
HELP = "convert a grid-particle snapshot to its displacement field (3, N, N, N) float32 Mpc/h in HDF5"


def add_arguments(parser) -> None:
    parser.add_argument("snapshot", help="bigfile snapshot directory (MP-Gadget layout)")
    parser.add_argument("out", help="output HDF5 file")


def run(args) -> int:
    from srsim.displacement import snapshot_to_displacement_file

    snapshot_to_displacement_file(args.snapshot, args.out)
    return 0
