"""`srsim fof-domain`: FOF halos owned by one domain of a box split into n^3 domains with ghost zones."""

from __future__ import annotations

COMMAND = "fof-domain"
HELP = "FOF of one domain (plus ghost zone) of a large box; keeps the halos whose minimum-ID particle it holds"


def add_arguments(parser) -> None:
    parser.add_argument("snapshot", help="bigfile snapshot directory (MP-Gadget layout), streamed in chunks")
    parser.add_argument("out", help="output HDF5 catalogue of this domain's halos")
    parser.add_argument("--domain", type=int, required=True, help="domain index in [0, n^3), C order over x, y, z")
    parser.add_argument("--n-domains", type=int, default=None, help="domains per side (default analysis.fof_domains)")
    parser.add_argument("--ghost", type=float, default=None, help="ghost-zone width in Mpc/h (default analysis.fof_ghost)")
    parser.add_argument("--b", type=float, default=None, help="linking length / mean separation (default analysis.fof_b)")
    parser.add_argument("--min-members", type=int, default=None, help="smallest halo kept (default analysis.fof_min_members)")
    parser.add_argument("--members", action="store_true", help="also store member IDs")
    parser.add_argument("--chunk-size", type=int, default=2**22, help="particles read at a time")
    parts = parser.add_mutually_exclusive_group()
    parts.add_argument("--parts", nargs="+", default=None,
                       help="directories written by `srsim fof-partition` for this snapshot (read instead of the "
                            "whole snapshot)")
    parts.add_argument("--index", default=None,
                       help="index of those directories written by `srsim fof-partition-index` (instead of --parts)")
    parser.add_argument("--config", default=None, help="JSON string or YAML file with an 'analysis' section")


def run(args) -> int:
    from srsim.analysis.domains import fof_domain_snapshot, read_partition_index
    from srsim.config import apply_overrides, section
    from srsim.io.catalog import write_catalog

    s = apply_overrides(section(args.config, "analysis"), args, {"n_domains": "fof_domains", "ghost": "fof_ghost",
                                                                 "b": "fof_b", "min_members": "fof_min_members"})
    cat, attrs = fof_domain_snapshot(
        args.snapshot,
        index=args.domain,
        n_domains=s["fof_domains"],
        ghost=s["fof_ghost"],
        b=s["fof_b"],
        min_members=s["fof_min_members"],
        members=args.members,
        chunk_size=args.chunk_size,
        partitions=read_partition_index(args.index) if args.index else args.parts,
    )
    write_catalog(args.out, cat, attrs)
    return 0
