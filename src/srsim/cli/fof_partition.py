"""`srsim fof-partition`: file a slice of a big snapshot's particles under the FOF domains that need them."""

from __future__ import annotations

COMMAND = "fof-partition"
HELP = "split particles [part*N/n, (part+1)*N/n) of a snapshot into per-domain files (domain + ghost zone) for fof-domain"


def add_arguments(parser) -> None:
    parser.add_argument("snapshot", help="bigfile snapshot directory (MP-Gadget layout)")
    parser.add_argument("out", help="output directory (d{domain}.pos, d{domain}.id, d{domain}.vel with velocities, partition.json)")
    parser.add_argument("--part", type=int, default=0, help="which slice of the particles, in [0, n-parts)")
    parser.add_argument("--n-parts", type=int, default=1, help="number of slices (independent jobs)")
    parser.add_argument("--n-domains", type=int, default=None, help="domains per side (default analysis.fof_domains)")
    parser.add_argument("--ghost", type=float, default=None, help="ghost-zone width in Mpc/h (default analysis.fof_ghost)")
    parser.add_argument("--chunk-size", type=int, default=2**22, help="particles read at a time")
    parser.add_argument("--config", default=None, help="JSON string or YAML file with an 'analysis' section")


def run(args) -> int:
    from srsim.analysis.domains import partition_snapshot
    from srsim.config import apply_overrides, section

    s = apply_overrides(section(args.config, "analysis"), args, {"n_domains": "fof_domains", "ghost": "fof_ghost"})
    partition_snapshot(
        args.snapshot,
        args.out,
        n_domains=s["fof_domains"],
        ghost=s["fof_ghost"],
        part=args.part,
        n_parts=args.n_parts,
        chunk_size=args.chunk_size,
    )
    return 0
