"""The paper's Figs. 1-6 and issue 15's velocity figure from files: one function per figure, taking input paths
and the config's `figures` section (`srsim.config.section(..., "figures")`: dpi, zoom and slab_thickness in
Mpc/h, smoothing in Mpc/h, adaptive_count, k_max in h/Mpc, tolerances). Each reads its inputs, checks that they share a redshift,
chooses the regions, renders and draws; `srsim figure` only parses its arguments and calls one of them.

Every function returns a `Drawn`: the written PNG and PDF paths, and notes worth printing (particles rendered
per region and how their halos were found; which panel of Fig. 2 is HR).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from srsim.errors import SrsimError
from srsim.plots.tables import hmf_item, matched_by_redshift, power_item, with_trivial


class Drawn(NamedTuple):
    """What a figure function made."""

    paths: list[Path]  #: the PNG, then the PDF
    notes: list[str]  #: one line per fact for the log


def same_redshift(paths_z: dict, figure: str) -> float:
    """The common redshift of {path: z} (rounded to 6 decimals); SrsimError naming each input when they differ."""
    zs = {round(z, 6) for z in paths_z.values()}
    if len(zs) != 1:
        raise SrsimError(f"{figure}: inputs are at different redshifts: " +
                         ", ".join(f"{p} (z={z:g})" for p, z in paths_z.items()))
    return zs.pop()


def _halos(fof_path):
    """(pos (h, 3) Mpc/h, mass (h,) Msun/h) of a catalogue's halos, or (None, None) without one."""
    from srsim.io.catalog import read_catalog

    if not fof_path:
        return None, None
    cat, _ = read_catalog(fof_path, max_members=0)  # the halo centres choose regions; members are not needed
    return cat["pos"], cat["mass"]


def _render_kw(settings: dict, collect_limit: int) -> dict:
    return dict(smoothing=settings["smoothing"], adaptive_count=settings["adaptive_count"],
                collect_limit=collect_limit)


def fig1(snapshots: dict, fofs: dict, out, settings: dict, *, collect_limit: int) -> Drawn:
    """Fig. 1: LR / HR / SR slab and zooms. snapshots, fofs: {'LR', 'HR', 'SR': path} (fofs' values may be
    None); the zooms sit on the HR catalogue's massive halos (else chosen from the slab)."""
    from srsim.io.snapshot import read_header
    from srsim.plots.projection import render_snapshot
    from srsim.plots.slices import fig1_regions, plot_fig1

    headers = {k: read_header(p) for k, p in snapshots.items()}
    z = same_redshift({p: headers[k].redshift for k, p in snapshots.items()}, "fig1")
    box = headers["HR"].box_size
    pos, mass = _halos(fofs.get("HR"))
    dpi = settings["dpi"]
    regions = fig1_regions(box, pos, mass, slab_thickness=settings["slab_thickness"], zoom=settings["zoom"],
                           npix_slab=int(3.2 * dpi), npix_zoom=int(3.2 * dpi))
    cols, notes = {}, []
    for k, p in snapshots.items():
        cols[k] = render_snapshot(p, regions, fof_path=fofs.get(k), **_render_kw(settings, collect_limit))
        notes.append(f"fig1: {k} {p}: " + ", ".join(f"{n} {v.n_particles} particles ({v.method})"
                                                    for n, v in cols[k].items()))
    return Drawn(plot_fig1(cols, box, out, redshift=z, dpi=dpi), notes)


def fig2(lr, hr, sr: list, out, settings: dict, *, lr_fof=None, hr_fof=None, sr_fofs=(), seed: int,
         collect_limit: int) -> Drawn:
    """Fig. 2: one zoom of HR and of each SR realization of one LR box, in an order shuffled with `seed`.
    sr, sr_fofs: one path per realization (sr_fofs may be empty)."""
    from srsim.io.snapshot import read_header, read_particles
    from srsim.plots.projection import render_snapshot
    from srsim.plots.slices import fig2_region, plot_fig2

    snaps = [lr, hr] + list(sr)
    headers = [read_header(p) for p in snaps]
    z = same_redshift({p: h.redshift for p, h in zip(snaps, headers)}, "fig2")
    box = headers[1].box_size
    lr_pos = read_particles(lr, blocks=("Position",))["Position"]
    region = fig2_region(box, lr_pos, zoom=settings["zoom"], npix=int(3.0 * settings["dpi"]))

    def render(path, fof):
        return render_snapshot(path, [region], fof_path=fof, **_render_kw(settings, collect_limit))["zoom"]

    sr_fofs = list(sr_fofs)
    p_lr, p_hr = render(lr, lr_fof), render(hr, hr_fof)
    p_sr = [render(p, sr_fofs[i] if i < len(sr_fofs) else None) for i, p in enumerate(sr)]
    paths, answer = plot_fig2(p_lr, p_hr, p_sr, out, redshift=z, dpi=settings["dpi"], seed=seed)
    return Drawn(paths, [f"fig2: HR is panel {answer}"])


def fig3(lr, hr, sr, trivial, out, settings: dict) -> Drawn:
    """Fig. 3: power spectra. lr, hr: one table per redshift; sr: every realization's; trivial: the trivial
    predictor's, one per redshift (may be empty)."""
    from srsim.plots.power import plot_fig3

    groups = with_trivial(matched_by_redshift(lr, hr, sr, power_item, "fig3", sr_many=True), trivial, power_item,
                          "fig3")
    return Drawn(plot_fig3(groups, out, k_max=settings["k_max"], tolerance=settings["power_tolerance"],
                           dpi=settings["dpi"]), [])


def fig4(lr, hr, sr, trivial, out, settings: dict) -> Drawn:
    """Fig. 4: mass functions. lr, hr, sr (combined over realizations): one table per redshift; trivial: the
    trivial predictor's, one per redshift (may be empty)."""
    from srsim.plots.hmf import plot_fig4

    groups = with_trivial(matched_by_redshift(lr, hr, sr, hmf_item, "fig4", sr_many=False), trivial, hmf_item,
                          "fig4")
    return Drawn(plot_fig4(groups, out, tolerance=settings["hmf_tolerance"], min_halos=settings["hmf_min_halos"],
                           dpi=settings["dpi"]), [])


def fig5(lr, sr, out, settings: dict, *, lr_fof=None, sr_fof=None, collect_limit: int) -> Drawn:
    """Fig. 5: the big box's SR slab with the LR inset and a zoom on the SR catalogue's most massive halo."""
    from srsim.io.snapshot import read_header
    from srsim.plots.bigbox import fig5_regions, plot_fig5
    from srsim.plots.projection import render_snapshot

    h_lr, h_sr = read_header(lr), read_header(sr)
    z = same_redshift({lr: h_lr.redshift, sr: h_sr.redshift}, "fig5")
    pos, mass = _halos(sr_fof)
    dpi = settings["dpi"]
    regions = fig5_regions(h_sr.box_size, pos, mass, slab_thickness=settings["slab_thickness"],
                           zoom=settings["zoom"], npix_slab=int(8 * dpi), npix_zoom=int(2.4 * dpi))
    kw = _render_kw(settings, collect_limit)
    p_sr = render_snapshot(sr, regions, fof_path=sr_fof, **kw)
    p_lr = render_snapshot(lr, regions, fof_path=lr_fof, **kw)
    top = float(mass.max()) if mass is not None and len(mass) else None
    return Drawn(plot_fig5(p_sr, p_lr, h_sr.box_size, out, redshift=z, halo_mass=top, dpi=dpi), [])


def fig6(lr, sr, hr, out, settings: dict) -> Drawn:
    """Fig. 6: the big box's LR and SR mass functions against the small HR box's, one redshift."""
    from srsim.plots.hmf import plot_fig6

    items = {k: hmf_item(p) for k, p in (("lr", lr), ("sr", sr), ("hr", hr))}
    same_redshift({i.path: float(i.meta["redshift"]) for i in items.values()}, "fig6")
    return Drawn(plot_fig6(items["lr"], items["sr"], items["hr"], out, dpi=settings["dpi"]), [])


def velocity(rsd: dict, momentum: dict, out, settings: dict) -> Drawn:
    """The velocity figure (issue 15): redshift-space multipoles and momentum power of LR, HR and SR with ratio
    panels. rsd, momentum: {'lr', 'hr', 'sr': lists of table paths} of `srsim power --rsd` and `--momentum`
    tables; either may have no LR/HR paths (then its panels are left out), SR may be empty
    (LR and HR only). Both kinds present must cover the same redshifts."""
    from srsim.metrics import VELOCITY_TOLERANCE_KEYS
    from srsim.plots.tables import momentum_item, multipole_item, velocity_tables
    from srsim.plots.velocity import plot_velocity

    groups = {kind: velocity_tables(paths.get("lr"), paths.get("hr"), paths.get("sr"), None, loader,
                                    f"velocity ({kind})", kind)[0]
              for kind, paths, loader in (("rsd", rsd, multipole_item), ("momentum", momentum, momentum_item))}
    present = {k: g for k, g in groups.items() if g is not None}
    if not present:
        raise SrsimError("velocity: no tables given (--rsd-lr/--rsd-hr and/or --momentum-lr/--momentum-hr)")
    if len(present) == 2:
        z_rsd, z_mom = set(present["rsd"]), set(present["momentum"])
        if z_rsd != z_mom:
            raise SrsimError("velocity: redshifts differ: the multipole tables are at z = "
                             f"{', '.join(f'{z:g}' for z in sorted(z_rsd))}, the momentum tables at z = "
                             f"{', '.join(f'{z:g}' for z in sorted(z_mom))}")
        for z in z_rsd:
            a, b = present["rsd"][z]["hr"], present["momentum"][z]["hr"]
            if not np.isclose(float(a.meta["box_size"]), float(b.meta["box_size"]), rtol=1e-6):
                raise SrsimError(f"velocity: box size differs: {a.path} has box_size = {a.meta['box_size']}, "
                                 f"{b.path} has box_size = {b.meta['box_size']}")
    tol = {column: settings[key] for column, key in VELOCITY_TOLERANCE_KEYS.items()}
    return Drawn(plot_velocity(groups["rsd"], groups["momentum"], out, k_max=settings["k_max"], tolerances=tol,
                               dpi=settings["dpi"]), [])
