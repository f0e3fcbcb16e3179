"""`srsim hmf`: halo mass function dn/dlog10M with Poisson errors from one or several halo catalogues."""

from __future__ import annotations

COMMAND = "hmf"
HELP = "halo mass function dn/dlog10M [(Mpc/h)^-3 dex^-1] with Poisson errors from one or more FOF catalogues"


def add_arguments(parser) -> None:
    parser.add_argument("halos", nargs="+", help="halo catalogue(s) of one box size and redshift (e.g. SR realizations)")
    parser.add_argument("out", help="output text table")
    parser.add_argument("--log10m-min", type=float, default=None, help="lower bin edge, log10(M/(Msun/h))")
    parser.add_argument("--log10m-max", type=float, default=None, help="upper bin edge, log10(M/(Msun/h))")
    parser.add_argument("--bins", type=int, default=None, help="number of log10 M bins")
    parser.add_argument("--config", default=None, help="JSON string or YAML file with an 'analysis' section")


def run(args) -> int:
    import numpy as np

    from srsim.analysis import analysis_settings
    from srsim.analysis.hmf import hmf_from_catalogs, write_hmf
    from srsim.errors import SrsimError

    s = analysis_settings(args.config)
    lo = args.log10m_min if args.log10m_min is not None else s["hmf_log10m_min"]
    hi = args.log10m_max if args.log10m_max is not None else s["hmf_log10m_max"]
    nb = args.bins if args.bins is not None else s["hmf_bins"]
    if not hi > lo or nb < 1:
        raise SrsimError(f"HMF bins: need log10m_max > log10m_min and bins >= 1 (got {lo}, {hi}, {nb})")
    table = hmf_from_catalogs(args.halos, np.linspace(lo, hi, nb + 1))
    write_hmf(args.out, table)
    return 0
