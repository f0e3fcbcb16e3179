"""`srsim figure`: one of the paper's Figs. 1-6 as PNG + PDF (same stem)."""

from __future__ import annotations

COMMAND = "figure"
HELP = "make one of the paper's figures (fig1..fig6) as PNG and PDF"

FIGS = ("fig1", "fig2", "fig3", "fig4", "fig5", "fig6")


def add_arguments(parser) -> None:
    parser.add_argument("figure", choices=FIGS, help=(
        "fig1: LR/HR/SR projections (snapshots); fig2: HR + SR realizations (snapshots); fig3: power spectra; "
        "fig4: mass functions; fig5: big-box slice (snapshots); fig6: big-box mass functions"))
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


def _same_redshift(paths_z: dict, figure: str):
    from srsim.errors import SrsimError

    zs = {round(z, 6) for z in paths_z.values()}
    if len(zs) != 1:
        raise SrsimError(f"{figure}: inputs are at different redshifts: " +
                         ", ".join(f"{p} (z={z:g})" for p, z in paths_z.items()))
    return zs.pop()


def _fig1(args, fig):
    from srsim.io.snapshot import read_header
    from srsim.plots.projection import read_fof, render_snapshot
    from srsim.plots.slices import fig1_regions, plot_fig1

    snaps = {"LR": _one(args, "lr", "snapshot"), "HR": _one(args, "hr", "snapshot"), "SR": _one(args, "sr", "snapshot")}
    fofs = {"LR": _opt(args, "lr-fof"), "HR": _opt(args, "hr-fof"), "SR": _opt(args, "sr-fof")}
    headers = {k: read_header(p) for k, p in snaps.items()}
    z = _same_redshift({p: headers[k].redshift for k, p in snaps.items()}, "fig1")
    box = headers["HR"].box_size
    halos = read_fof(fofs["HR"]) if fofs["HR"] else None
    dpi = fig["dpi"]
    regions = fig1_regions(box, None if halos is None else halos["pos"], None if halos is None else halos["mass"],
                           slab_thickness=fig["slab_thickness"], zoom=fig["zoom"], npix_slab=int(3.2 * dpi),
                           npix_zoom=int(3.2 * dpi))
    cols = {}
    for k, p in snaps.items():
        cols[k] = render_snapshot(p, regions, fof_path=fofs[k], smoothing=fig["smoothing"],
                                  adaptive_count=fig["adaptive_count"], collect_limit=args.collect_limit)
        print(f"fig1: {k} {p}: " + ", ".join(f"{n} {v.n_particles} particles ({v.method})"
                                             for n, v in cols[k].items()))
    return plot_fig1(cols, box, args.out, redshift=z, dpi=dpi)


def _fig2(args, fig):
    from srsim.errors import SrsimError
    from srsim.io.snapshot import read_header, read_particles
    from srsim.plots.projection import render_snapshot
    from srsim.plots.slices import fig2_region, plot_fig2

    lr, hr = _one(args, "lr", "snapshot"), _one(args, "hr", "snapshot")
    if not args.sr:
        raise SrsimError("fig2: --sr needs at least one SR snapshot")
    if args.sr_fof and len(args.sr_fof) != len(args.sr):
        raise SrsimError(f"fig2: {len(args.sr_fof)} --sr-fof catalogues for {len(args.sr)} --sr snapshots")
    snaps = [lr, hr] + list(args.sr)
    headers = [read_header(p) for p in snaps]
    z = _same_redshift({p: h.redshift for p, h in zip(snaps, headers)}, "fig2")
    box = headers[1].box_size
    lr_pos = read_particles(lr, blocks=("Position",))["Position"]
    region = fig2_region(box, lr_pos, zoom=fig["zoom"], npix=int(3.0 * fig["dpi"]))

    def render(path, fof):
        return render_snapshot(path, [region], fof_path=fof, smoothing=fig["smoothing"],
                               adaptive_count=fig["adaptive_count"], collect_limit=args.collect_limit)["zoom"]

    p_lr = render(lr, _opt(args, "lr-fof"))
    p_hr = render(hr, _opt(args, "hr-fof"))
    p_sr = [render(p, _opt(args, "sr-fof", i)) for i, p in enumerate(args.sr)]
    paths, answer = plot_fig2(p_lr, p_hr, p_sr, args.out, redshift=z, dpi=fig["dpi"], seed=args.seed)
    print(f"fig2: HR is panel {answer}")
    return paths


def _grouped(paths, loader, kind, figure):
    from srsim.errors import SrsimError

    out = {}
    for p in paths:
        item = loader(p)
        out.setdefault(round(float(item[1]["redshift"]), 6), []).append(item)
    if not out:
        raise SrsimError(f"{figure}: no --{kind} tables given")
    return out


def _by_z(args, loader, figure, sr_many):
    from srsim.errors import SrsimError

    lr = _grouped(args.lr, loader, "lr", figure)
    hr = _grouped(args.hr, loader, "hr", figure)
    sr = _grouped(args.sr, loader, "sr", figure)
    groups = {}
    for z in hr:
        for name, g in (("lr", lr), ("sr", sr)):
            if z not in g:
                raise SrsimError(f"{figure}: no --{name} table at z = {z:g} (HR has one)")
        for name, g in (("lr", lr), ("hr", hr)) + ((() if sr_many else (("sr", sr),))):
            if len(g[z]) != 1:
                raise SrsimError(f"{figure}: {len(g[z])} --{name} tables at z = {z:g}: " +
                                 ", ".join(i[2] for i in g[z]))
        groups[z] = {"lr": lr[z][0], "hr": hr[z][0], "sr": sr[z] if sr_many else sr[z][0]}
    extra = (set(lr) | set(sr)) - set(hr)
    if extra:
        raise SrsimError(f"{figure}: tables at z = {sorted(extra)} have no HR counterpart")
    return groups


def trivial_by_z(paths, loader, figure, zs=None):
    """{z: item} of the trivial predictor's tables, one per redshift (None when no paths); with zs, every
    redshift of zs must have one."""
    from srsim.errors import SrsimError

    if not paths:
        return None
    groups = _grouped(paths, loader, "trivial", figure)
    for z, items in groups.items():
        if len(items) != 1:
            raise SrsimError(f"{figure}: {len(items)} trivial tables at z = {z:g}: " + ", ".join(i[2] for i in items))
    for z in zs or ():
        if z not in groups:
            raise SrsimError(f"{figure}: no trivial table at z = {z:g} (HR has one)")
    return {z: items[0] for z, items in groups.items()}


def _with_trivial(groups, args, loader, figure):
    trivial = trivial_by_z(args.trivial, loader, figure, groups)
    for z, g in groups.items():
        g["trivial"] = trivial[z] if trivial else None
    return groups


def _fig5(args, fig):
    from srsim.io.snapshot import read_header
    from srsim.plots.bigbox import fig5_regions, plot_fig5
    from srsim.plots.projection import read_fof, render_snapshot

    lr, sr = _one(args, "lr", "snapshot"), _one(args, "sr", "snapshot")
    h_lr, h_sr = read_header(lr), read_header(sr)
    z = _same_redshift({lr: h_lr.redshift, sr: h_sr.redshift}, "fig5")
    halos = read_fof(args.sr_fof[0]) if args.sr_fof else None
    regions = fig5_regions(h_sr.box_size, None if halos is None else halos["pos"],
                           None if halos is None else halos["mass"], slab_thickness=fig["slab_thickness"],
                           zoom=fig["zoom"], npix_slab=int(8 * fig["dpi"]), npix_zoom=int(2.4 * fig["dpi"]))
    kw = dict(smoothing=fig["smoothing"], adaptive_count=fig["adaptive_count"], collect_limit=args.collect_limit)
    p_sr = render_snapshot(sr, regions, fof_path=_opt(args, "sr-fof"), **kw)
    p_lr = render_snapshot(lr, regions, fof_path=_opt(args, "lr-fof"), **kw)
    mass = float(halos["mass"].max()) if halos is not None and len(halos["mass"]) else None
    return plot_fig5(p_sr, p_lr, h_sr.box_size, args.out, redshift=z, halo_mass=mass, dpi=fig["dpi"])


def run(args) -> int:
    from srsim.config import section
    from srsim.plots.tables import hmf_item, power_item

    fig = section(args.config, "figures")
    if args.figure == "fig1":
        paths = _fig1(args, fig)
    elif args.figure == "fig2":
        paths = _fig2(args, fig)
    elif args.figure == "fig3":
        from srsim.plots.power import plot_fig3

        groups = _with_trivial(_by_z(args, power_item, "fig3", sr_many=True), args, power_item, "fig3")
        paths = plot_fig3(groups, args.out, k_max=fig["k_max"], tolerance=fig["power_tolerance"], dpi=fig["dpi"])
    elif args.figure == "fig4":
        from srsim.plots.hmf import plot_fig4

        groups = _with_trivial(_by_z(args, hmf_item, "fig4", sr_many=False), args, hmf_item, "fig4")
        paths = plot_fig4(groups, args.out, tolerance=fig["hmf_tolerance"], min_halos=fig["hmf_min_halos"],
                          dpi=fig["dpi"])
    elif args.figure == "fig5":
        paths = _fig5(args, fig)
    else:
        from srsim.plots.hmf import plot_fig6

        items = {k: hmf_item(_one(args, k, "HMF table")) for k in ("lr", "sr", "hr")}
        _same_redshift({i[2]: float(i[1]["redshift"]) for i in items.values()}, "fig6")
        paths = plot_fig6(items["lr"], items["sr"], items["hr"], args.out, dpi=fig["dpi"])
    for p in paths:
        print(f"wrote {p}")
    return 0
