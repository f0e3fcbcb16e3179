"""`srsim fof-merge`: join the per-domain FOF catalogues of one snapshot into one catalogue."""

from __future__ import annotations

COMMAND = "fof-merge"
HELP = "merge the catalogues written by `srsim fof-domain` for every domain into one halo catalogue"


def add_arguments(parser) -> None:
    parser.add_argument("parts", nargs="+", help="domain catalogues (all n^3 of them)")
    parser.add_argument("out", help="output HDF5 halo catalogue")


def run(args) -> int:
    from srsim.analysis.domains import merge_catalogs
    from srsim.io.catalog import read_catalog, write_catalog

    cat, attrs = merge_catalogs([read_catalog(p) for p in args.parts], names=list(args.parts))
    write_catalog(args.out, cat, attrs)
    return 0
