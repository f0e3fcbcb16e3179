"""`srsim linear-power`: the CAMB linear matter power spectrum of the configured cosmology, as a text table."""

from __future__ import annotations

COMMAND = "linear-power"
HELP = "write the linear matter power spectrum P(k) (CAMB, normalised to sigma8) as a two-column table"


def add_arguments(parser) -> None:
    parser.add_argument("--config", required=True, help="config with a 'cosmology' section (JSON string or YAML path)")
    parser.add_argument("--out", required=True, help="output text file: k [h/Mpc], P [(Mpc/h)^3] (MP-GenIC format)")
    parser.add_argument("--redshift", type=float, default=0.0, help="redshift of the spectrum (default %(default)g)")
    parser.add_argument("--kmin", type=float, default=1e-4, help="smallest k in h/Mpc (default %(default)g)")
    parser.add_argument("--kmax", type=float, default=1e3, help="largest k in h/Mpc (default %(default)g)")
    parser.add_argument("--n", type=int, default=1000, help="number of log-spaced rows (default %(default)d)")


def run(args) -> int:
    from srsim.config import load_config
    from srsim.cosmology import Cosmology, write_power_table
    from srsim.errors import SrsimError

    cfg = load_config(args.config, partial=True)
    if "cosmology" not in cfg:
        raise SrsimError("--config: section 'cosmology' is required by srsim linear-power")
    if not (0 < args.kmin < args.kmax) or args.n < 2 or args.redshift < 0:
        raise SrsimError(f"{args.out}: need 0 < kmin < kmax, n >= 2 and redshift >= 0 "
                         f"(got kmin={args.kmin}, kmax={args.kmax}, n={args.n}, redshift={args.redshift})")
    cosmo = Cosmology.from_config(cfg["cosmology"])
    write_power_table(args.out, cosmo, kmin=args.kmin, kmax=args.kmax, n=args.n, z=args.redshift)
    return 0
