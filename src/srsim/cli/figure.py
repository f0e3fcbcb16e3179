"""`srsim figure`: one of the paper's Figs. 1-6 as PNG + PDF (same stem)."""

from __future__ import annotations

COMMAND = "figure"
HELP = "make one of the paper's figures (fig1..fig6) or the velocity figure as PNG and PDF"

FIGS = ("fig1", "fig2", "fig3", "fig4", "fig5", "fig6", "velocity")


def add_arguments(parser) -> None:
    parser.add_argument("figure", choices=FIGS, help=(
        "fig1: LR/HR/SR projections (snapshots); fig2: HR + SR realizations (snapshots); fig3: power spectra; "
        "fig4: mass functions; fig5: big-box slice (snapshots); fig6: big-box mass functions; velocity: "
        "redshift-space multipoles and momentum power (--rsd-*, --momentum-* tables)"))
    parser.add_argument("--lr", nargs="+", default=[], help="LR inputs: snapshot (fig1, 2, 5), power tables (fig3, "
                        "any redshifts), HMF tables (fig4; fig6: the big box's)")
    parser.add_argument("--hr", nargs="+", default=[], help="HR inputs (fig6: the small box's HMF table)")
    parser.add_argument("--sr", nargs="+", default=[], help="SR inputs: one per realization for fig2 and fig3; the "
                        "combined HMF tables for fig4")
    parser.add_argument("--trivial", nargs="+", default=[], help="fig3, fig4: power / HMF tables of the trivial "
                        "predictor (srsim generate --trivial), one per redshift; drawn as a thin grey line")
    parser.add_argument("--lr-fof", nargs="+", default=[], help="FOF catalogues matching --lr (fig1, 2, 5)")
    parser.add_argument("--hr-fof", nargs="+", default=[], help="FOF catalogue matching --hr (fig1, 2)")
    parser.add_argument("--sr-fof", nargs="+", default=[], help="FOF catalogues matching --sr (fig1, 2, 5)")
    for kind, what in (("rsd", "redshift-space multipole tables (srsim power --rsd AXIS)"),
                       ("momentum", "momentum power tables (srsim power --momentum)")):
        parser.add_argument(f"--{kind}-lr", nargs="+", default=[], help=f"velocity: LR {what}, one per redshift")
        parser.add_argument(f"--{kind}-hr", nargs="+", default=[], help=f"velocity: HR {what}, one per redshift")
        parser.add_argument(f"--{kind}-sr", nargs="+", default=[], help=f"velocity: SR {what}, every realization "
                            "(optional: without them LR and HR alone are drawn)")
    parser.add_argument("--out", required=True, help="output PNG (the PDF gets the same stem)")
    parser.add_argument("--config", default=None, help="JSON string or YAML file with a 'figures' section")
    parser.add_argument("--seed", type=int, default=2, help="fig2: seed of the panel order")
    parser.add_argument("--collect-limit", type=int, default=4_000_000,
                        help="largest region (particles, margin included) held in memory for a local FOF when a "
                        "catalogue lacks member IDs; larger regions highlight halos at their centres")


def _one(args, name, what):
    from srsim.errors import SrsimError

    values = getattr(args, name.replace("-", "_"))
    if len(values) != 1:
        raise SrsimError(f"{args.figure}: --{name} needs exactly one {what}, got {len(values)}")
    return values[0]


def _opt(args, name, index=0):
    values = getattr(args, name.replace("-", "_"))
    return values[index] if len(values) > index else None


def _draw(args, fig):
    from srsim.errors import SrsimError
    from srsim.plots import figures

    limit = args.collect_limit
    if args.figure == "fig1":
        snaps = {"LR": _one(args, "lr", "snapshot"), "HR": _one(args, "hr", "snapshot"),
                 "SR": _one(args, "sr", "snapshot")}
        fofs = {"LR": _opt(args, "lr-fof"), "HR": _opt(args, "hr-fof"), "SR": _opt(args, "sr-fof")}
        return figures.fig1(snaps, fofs, args.out, fig, collect_limit=limit)
    if args.figure == "fig2":
        lr, hr = _one(args, "lr", "snapshot"), _one(args, "hr", "snapshot")
        if not args.sr:
            raise SrsimError("fig2: --sr needs at least one SR snapshot")
        if args.sr_fof and len(args.sr_fof) != len(args.sr):
            raise SrsimError(f"fig2: {len(args.sr_fof)} --sr-fof catalogues for {len(args.sr)} --sr snapshots")
        return figures.fig2(lr, hr, args.sr, args.out, fig, lr_fof=_opt(args, "lr-fof"), hr_fof=_opt(args, "hr-fof"),
                            sr_fofs=args.sr_fof, seed=args.seed, collect_limit=limit)
    if args.figure == "fig3":
        return figures.fig3(args.lr, args.hr, args.sr, args.trivial, args.out, fig)
    if args.figure == "fig4":
        return figures.fig4(args.lr, args.hr, args.sr, args.trivial, args.out, fig)
    if args.figure == "velocity":
        tables = {kind: {n: getattr(args, f"{kind}_{n}") for n in ("lr", "hr", "sr")} for kind in ("rsd", "momentum")}
        return figures.velocity(tables["rsd"], tables["momentum"], args.out, fig)
    if args.figure == "fig5":
        return figures.fig5(_one(args, "lr", "snapshot"), _one(args, "sr", "snapshot"), args.out, fig,
                            lr_fof=_opt(args, "lr-fof"), sr_fof=_opt(args, "sr-fof"), collect_limit=limit)
    return figures.fig6(*(_one(args, k, "HMF table") for k in ("lr", "sr", "hr")), args.out, fig)


def run(args) -> int:
    from srsim.config import section

    drawn = _draw(args, section(args.config, "figures"))
    for note in drawn.notes:
        print(note)
    for p in drawn.paths:
        print(f"wrote {p}")
    return 0
