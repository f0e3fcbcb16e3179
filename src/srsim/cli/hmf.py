"""`srsim hmf`: halo mass function dn/dlog10M with Poisson errors from one or several halo catalogues."""

from __future__ import annotations

COMMAND = "hmf"
HELP = "halo mass function dn/dlog10M [(Mpc/h)^-3 dex^-1] with Poisson errors from one or more FOF catalogues"


def add_arguments(parser) -> None:
    parser.add_argument("halos", nargs="+", help="halo catalogue(s) of one box size and redshift (e.g. SR realizations)")
    parser.add_argument("out", help="output text table")
    parser.add_argument("--log10m-min", type=float, default=None, help="lower bin edge, log10(M/(Msun/h)) (default analysis.hmf_log10m_min)")
    parser.add_argument("--log10m-max", type=float, default=None, help="upper bin edge, log10(M/(Msun/h)) (default analysis.hmf_log10m_max)")
    parser.add_argument("--bins", type=int, default=None, help="number of log10 M bins (default analysis.hmf_bins)")
    parser.add_argument("--config", default=None, help="JSON string or YAML file with an 'analysis' section")


def run(args) -> int:
    from srsim.analysis.hmf import hmf_edges, hmf_from_catalogs
    from srsim.config import apply_overrides, section
    from srsim.io.hmf import write_hmf

    s = apply_overrides(section(args.config, "analysis"), args,
                        {"log10m_min": "hmf_log10m_min", "log10m_max": "hmf_log10m_max", "bins": "hmf_bins"})
    table = hmf_from_catalogs(args.halos, hmf_edges(s))
    write_hmf(args.out, table)
    return 0
