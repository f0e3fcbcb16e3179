"""`srsim fof-partition-index`: check the partition slices of one snapshot and list them for the domain jobs."""

from __future__ import annotations

COMMAND = "fof-partition-index"
HELP = ("check that the `srsim fof-partition` slices of one snapshot cover it exactly once and write their index "
        "(JSON), which `srsim fof-domain --index` reads")


def add_arguments(parser) -> None:
    parser.add_argument("parts", nargs="+", help="directories written by `srsim fof-partition`, one per slice")
    parser.add_argument("out", help="output index (JSON)")


def run(args) -> int:
    from srsim.analysis.domains import write_partition_index

    index = write_partition_index(args.parts, args.out)
    print(f"{len(index['parts'])} partitions of {index['snapshot']} ({index['n_particles']} particles, "
          f"{index['n_domains']}^3 domains) -> {args.out}")
    return 0
