"""`srsim metrics`: SR vs HR power-spectrum and mass-function metrics -> metrics.json + a summary table."""

from __future__ import annotations

COMMAND = "metrics"
HELP = ("SR/HR and LR/HR power and mass-function ratios (and the big box's SR/LR, SR/HR HMF) with pass/fail "
        "against the paper -> JSON + table")


def add_arguments(parser) -> None:
    parser.add_argument("--power-lr", nargs="+", required=True, help="LR power tables (any redshifts)")
    parser.add_argument("--power-hr", nargs="+", required=True, help="HR power tables")
    parser.add_argument("--power-sr", nargs="+", required=True, help="SR power tables, every realization")
    parser.add_argument("--hmf-lr", nargs="+", required=True, help="LR HMF tables")
    parser.add_argument("--hmf-hr", nargs="+", required=True, help="HR HMF tables")
    parser.add_argument("--hmf-sr", nargs="+", required=True, help="SR HMF tables (combined over realizations)")
    parser.add_argument("--power-trivial", nargs="+",
                        help="power tables of the trivial predictor (srsim generate --trivial), one per redshift")
    parser.add_argument("--hmf-trivial", nargs="+", help="HMF tables of the trivial predictor, one per redshift")
    parser.add_argument("--bigbox-hmf-lr", nargs="+",
                        help="HMF tables of the big box's LR snapshot, one per big-box redshift (Fig. 6's claim)")
    parser.add_argument("--bigbox-hmf-sr", nargs="+", help="HMF tables of the big box's SR snapshot, one per redshift "
                        "of --bigbox-hmf-lr (compared with them above the LR limit, with --hmf-hr below it)")
    for kind, what in (("rsd", "redshift-space multipole tables (srsim power --rsd AXIS)"),
                       ("momentum", "momentum power tables (srsim power --momentum)")):
        parser.add_argument(f"--{kind}-lr", nargs="+", help=f"LR {what}, one per redshift (optional: with "
                            f"--{kind}-hr, metrics.json gains a 'velocity' section)")
        parser.add_argument(f"--{kind}-hr", nargs="+", help=f"HR {what}, one per redshift")
        parser.add_argument(f"--{kind}-sr", nargs="+", help=f"SR {what}, every realization (optional)")
        parser.add_argument(f"--{kind}-trivial", nargs="+", help=f"{what} of the trivial predictor, one per redshift")
    parser.add_argument("--fof-hr", nargs="+", help="HR FOF catalogues with velocities (srsim fof of a snapshot "
                        "with 1/Velocity), one per redshift (optional: with --fof-sr, the 'velocity' section "
                        "compares the mean halo sigma_v per HMF mass bin)")
    parser.add_argument("--fof-sr", nargs="+", help="SR FOF catalogues with velocities, every realization")
    parser.add_argument("--fof-lr", nargs="+", help="LR FOF catalogues, one per redshift (optional; left out "
                        "where they have no velocities)")
    parser.add_argument("--fof-trivial", nargs="+", help="FOF catalogues of the trivial predictor (optional; left "
                        "out where they have no velocities, as its snapshots have none)")
    parser.add_argument("--sim", default="", help="name of the compared simulation (recorded in the JSON)")
    parser.add_argument("--out", required=True, help="output JSON; the table goes next to it as .txt")
    parser.add_argument("--config", default=None, help="JSON string or YAML file with a 'figures' section")


def run(args) -> int:
    import json
    from pathlib import Path

    from srsim.config import section
    from srsim.io.atomic import atomic_path
    from srsim.metrics import compute_metrics, summary_table
    from srsim.plots.tables import (bigbox_by_redshift, halo_tables, hmf_item, matched_by_redshift, momentum_item,
                                    multipole_item, power_item, trivial_by_redshift, velocity_tables)

    fig = section(args.config, "figures")
    power = matched_by_redshift(args.power_lr, args.power_hr, args.power_sr, power_item, "metrics (power)",
                                sr_many=True)
    hmf = matched_by_redshift(args.hmf_lr, args.hmf_hr, args.hmf_sr, hmf_item, "metrics (hmf)", sr_many=False)
    trivial_power = trivial_by_redshift(args.power_trivial, power_item, "metrics (power)")
    trivial_hmf = trivial_by_redshift(args.hmf_trivial, hmf_item, "metrics (hmf)")
    bigbox = bigbox_by_redshift(args.bigbox_hmf_lr, args.bigbox_hmf_sr, args.hmf_hr, hmf_item, "metrics (big box)")
    velocity = {kind: velocity_tables(*(getattr(args, f"{kind}_{n}") for n in ("lr", "hr", "sr", "trivial")),
                                      loader, f"metrics ({kind})", kind)
                for kind, loader in (("rsd", multipole_item), ("momentum", momentum_item))}
    halos = halo_tables(args.fof_lr, args.fof_hr, args.fof_sr, args.fof_trivial, "metrics (fof)")
    metrics = compute_metrics(power, hmf, fig, sim=args.sim, trivial_power=trivial_power, trivial_hmf=trivial_hmf,
                              bigbox_hmf=bigbox, rsd=velocity["rsd"][0], momentum=velocity["momentum"][0],
                              trivial_rsd=velocity["rsd"][1], trivial_momentum=velocity["momentum"][1],
                              halos=halos)
    table = summary_table(metrics)
    out = Path(args.out)
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(metrics, indent=1) + "\n")
    with atomic_path(out.with_suffix(".txt")) as tmp:
        tmp.write_text(table)
    print(table, end="")
    return 0

