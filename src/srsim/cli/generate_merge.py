"""`srsim generate-merge`: complete an SR snapshot written by several `srsim generate --jobs J` runs."""

from __future__ import annotations

COMMAND = "generate-merge"
HELP = "check that every chunk job of a split SR generation finished, then rename the snapshot into place"


def add_arguments(parser) -> None:
    parser.add_argument("out", help="the SR snapshot directory given to the jobs as --out")
    parser.add_argument("--jobs", type=int, required=True, help="number of jobs the generation was split into")
    parser.add_argument("--verify", action="store_true",
                        help="re-read every chunk and check its checksums (reads the whole snapshot once)")
    parser.add_argument("--quiet", action="store_true")


def run(args) -> int:
    from srsim.generate import finalize

    finalize(args.out, args.jobs, verify=args.verify, progress=not args.quiet)
    return 0
