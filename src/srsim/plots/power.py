"""Fig. 3: dimensionless power spectra Delta^2(k) of LR, HR and SR per redshift, with ratio panels."""

from __future__ import annotations

import math

import numpy as np

from srsim.plots.common import COLORS, figure_note, plt, save_figure, zlabel


def particle_nyquist(meta: dict) -> float | None:
    """pi * N^(1/3) / L of the particle grid (h/Mpc), from a power table's header (None if unknown)."""
    n, box = meta.get("n_particles"), meta.get("box_size")
    if not n or not box:
        return None
    return math.pi * round(float(n) ** (1 / 3)) / float(box)


def _valid(t: dict) -> np.ndarray:
    ok = (t["k"] > 0) & np.isfinite(t["P"]) & (t["P"] > 0)
    if "n_modes" in t:
        ok &= t["n_modes"] > 0
    return ok


def plot_fig3(groups: dict, out, *, k_max: float | None = None, tolerance: float | None = None, dpi: int = 150,
              panel: tuple[float, float] = (3.6, 5.4)) -> list:
    """Fig. 3. groups: {z: {'lr': item, 'hr': item, 'sr': [items]}} with `Table` items from
    `srsim.plots.tables.power_item` (Delta2 dimensionless, k in h/Mpc), optionally 'trivial': item (the trivial predictor, drawn as a
    thin grey line in every panel). One column per redshift (high to low): Delta^2(k) above
    (SR realizations thin, their mean dashed), SR/HR and LR/HR in the middle, SR/HR magnified below; the mesh Nyquist k dashed, the LR and HR
    particle Nyquist k dotted, k_max and the +-tolerance band marked when given.
    Figure (panel[0] * n_z + 0.6) x panel[1] inches at dpi. Returns the written paths."""
    zs = sorted(groups, key=lambda z: -z)
    W, H = panel[0] * len(zs) + 0.6, panel[1]
    fig, axes = plt.subplots(3, len(zs), figsize=(W, H), sharex="col", squeeze=False,
                             gridspec_kw={"height_ratios": [2.6, 1, 1], "hspace": 0.06, "wspace": 0.3,
                                          "left": 0.8 / W, "right": 1 - 0.15 / W, "top": 0.92, "bottom": 0.1})
    zoom_half = 2 * tolerance if tolerance else 0.1
    for j, z in enumerate(zs):
        g = groups[z]
        top, bot, fine = axes[0, j], axes[1, j], axes[2, j]
        t_hr = g["hr"].table
        ok_hr = _valid(t_hr)
        k = t_hr["k"]
        for item in g["sr"]:
            t = item.table
            ok = _valid(t)
            if len(g["sr"]) > 1:
                top.loglog(t["k"][ok], t["Delta2"][ok], color=COLORS["sr"], lw=0.5, alpha=0.45)
                fine.semilogx(t["k"][ok & ok_hr], t["P"][ok & ok_hr] / t_hr["P"][ok & ok_hr], color=COLORS["sr"],
                              lw=0.5, alpha=0.45)
        sr_p = np.mean([s.table["P"] for s in g["sr"]], axis=0)
        sr_d = np.mean([s.table["Delta2"] for s in g["sr"]], axis=0)
        ok_sr = ok_hr & np.isfinite(sr_p) & (sr_p > 0)
        t_lr = g["lr"].table
        ok_lr = _valid(t_lr)
        top.loglog(t_lr["k"][ok_lr], t_lr["Delta2"][ok_lr], color=COLORS["lr"], lw=1.4, label="LR")
        top.loglog(k[ok_hr], t_hr["Delta2"][ok_hr], color=COLORS["hr"], lw=2.2, label="HR")
        n_sr = len(g["sr"])
        top.loglog(k[ok_sr], sr_d[ok_sr], color=COLORS["sr"], lw=1.2, ls="--",
                   label="SR" if n_sr == 1 else f"SR (mean of {n_sr})")
        if g.get("trivial") is not None:
            t_tr = g["trivial"].table
            ok_tr = ok_hr & _valid(t_tr)
            top.loglog(k[ok_tr], t_tr["Delta2"][ok_tr], color=COLORS["trivial"], lw=0.8, label="trivial")
            for ax in (bot, fine):
                ax.semilogx(k[ok_tr], t_tr["P"][ok_tr] / t_hr["P"][ok_tr], color=COLORS["trivial"], lw=0.8,
                            label="trivial / HR")
        both = ok_hr & ok_lr
        bot.semilogx(k[both], t_lr["P"][both] / t_hr["P"][both], color=COLORS["lr"], lw=1.4, label="LR / HR")
        for ax in (bot, fine):
            ax.semilogx(k[ok_sr], sr_p[ok_sr] / t_hr["P"][ok_sr], color=COLORS["sr"], lw=1.4, label="SR / HR")
            ax.axhline(1.0, color="0.5", lw=0.7, zorder=0)
            if tolerance:
                ax.axhspan(1 - tolerance, 1 + tolerance, color="0.88", zorder=0)
        meta = g["hr"].meta
        kn = meta.get("k_nyquist")
        for ax in (top, bot, fine):
            if kn:
                ax.axvline(float(kn), color="0.3", ls="--", lw=0.9)
            for kind, m in (("lr", g["lr"].meta), ("hr", meta)):
                kp = particle_nyquist(m)
                if kp and (not kn or kp < float(kn) * 1.5):
                    ax.axvline(kp, color=COLORS[kind], ls=":", lw=0.9)
            if k_max:
                ax.axvline(k_max, color="0.6", ls="-.", lw=0.7)
        top.set_title(zlabel(z), fontsize=11)
        top.axhline(1.0, color="0.8", lw=0.6, zorder=0)
        kpos = k[ok_hr]
        if kpos.size:
            top.set_xlim(kpos.min() * 0.9, max(kpos.max(), float(kn or 0)) * 1.1)
            lo = np.nanmin(t_hr["Delta2"][ok_hr])
            top.set_ylim(lo * 0.5, np.nanmax(t_hr["Delta2"][ok_hr]) * 3)
        bot.set_ylim(0.0, 1.6)
        fine.set_ylim(1 - zoom_half, 1 + zoom_half)
        fine.set_xlabel(r"$k$ [$h\,\mathrm{Mpc}^{-1}$]")
        if j == 0:
            top.set_ylabel(r"$\Delta^2(k)$")
            bot.set_ylabel("ratio to HR")
            fine.set_ylabel("SR / HR")
    axes[0, 0].legend(loc="upper left", fontsize=8, frameon=False)
    axes[1, 0].legend(loc="lower left", fontsize=7, frameon=False)
    figure_note(fig, "dashed: mesh Nyquist; dotted: LR / HR particle Nyquist",
                f"dash-dot: k_max = {k_max:g} h/Mpc" if k_max else "", tolerance=tolerance)
    return save_figure(fig, out, dpi)
