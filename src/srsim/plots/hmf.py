"""Figs. 4 and 6: halo mass functions with Poisson errors and ratio panels."""

from __future__ import annotations

import numpy as np

from srsim.metrics import hmf_ratio
from srsim.plots.common import COLORS, figure_note, plt, save_figure, zlabel


def _plot_hmf(ax, table, color, label, lw=1.4, ls="-", offset=0.0):
    """dn/dlog10M vs M with Poisson error bars, on the bins holding halos; offset shifts x (dex) to avoid
    overlapping error bars."""
    ok = table["n_halos"] > 0
    m = 10 ** (table["log10M_mid"][ok] + offset)
    ax.errorbar(m, table["dn_dlog10M"][ok], yerr=table["err"][ok], color=color, lw=lw, ls=ls, marker="o", ms=3,
                capsize=2, label=label)
    return ok


def _plot_ratio(ax, table, ref, color, label, offset=0.0):
    r, e = hmf_ratio(table["dn_dlog10M"], table["err"], ref["dn_dlog10M"], ref["err"])
    ok = np.isfinite(r) & (table["n_halos"] > 0)  # a bin without test halos has ratio 0: shown by its absence
    ax.errorbar(10 ** (table["log10M_mid"][ok] + offset), r[ok], yerr=np.nan_to_num(e[ok]), color=color, lw=1.2,
                marker="o", ms=3, capsize=2, label=label)


#: the ratio panels show 0..2 unless a plotted ratio is larger; they grow to show it, up to RATIO_CAP, and a
#: ratio beyond the cap is drawn as an upward triangle at the top edge with its value (never silently clipped)
RATIO_CAP = 12.0


def _ratio_limits(ax) -> None:
    # the ratios themselves, not the caps of their error bars (Line2D objects with '_' markers)
    data = [line for line in ax.get_lines() if line.get_marker() not in ("_", "|")]
    ys = np.concatenate([np.asarray(line.get_ydata(), dtype=float) for line in data] or [np.zeros(0)])
    ys = ys[np.isfinite(ys)]
    top = 2.0 if not ys.size or ys.max() <= 1.9 else min(RATIO_CAP, 1.12 * float(ys.max()))
    ax.set_ylim(0, top)
    for line in data:
        x, y = np.asarray(line.get_xdata(), dtype=float), np.asarray(line.get_ydata(), dtype=float)
        over = np.isfinite(y) & (y > top)
        for xi, yi in zip(x[over], y[over]):
            ax.plot([xi], [0.97 * top], marker="^", color=line.get_color(), ms=5, clip_on=False)
            ax.annotate(f"{yi:.3g}", (xi, 0.97 * top), textcoords="offset points", xytext=(4, -3), fontsize=6,
                        color=line.get_color())


def _mass_limits(ax, tables):
    mids = np.concatenate([t["log10M_mid"][t["n_halos"] > 0] for t in tables] or [np.zeros(0)])
    widths = np.concatenate([t["log10M_hi"] - t["log10M_lo"] for t in tables])
    if mids.size:
        w = float(np.max(widths)) if widths.size else 0.2
        ax.set_xlim(10 ** (mids.min() - w), 10 ** (mids.max() + w))


def plot_fig4(groups: dict, out, *, tolerance: float | None = None, min_halos: int | None = None, dpi: int = 150,
              panel: tuple[float, float] = (3.6, 4.6)) -> list:
    """Fig. 4. groups: {z: {'lr': item, 'hr': item, 'sr': item}} with `Table` items from
    `srsim.plots.tables.hmf_item` (SR: the combined table over realizations), optionally 'trivial': item (the trivial predictor,
    a thin grey line without error bars). One column per redshift (high to low): dn/dlog10M
    of LR, HR, SR with Poisson errors above; SR/HR and LR/HR with propagated errors below, the +-tolerance band
    shaded and bins where HR has fewer than min_halos halos hatched.
    Figure (panel[0] * n_z + 0.6) x panel[1] inches at dpi. Returns the written paths."""
    zs = sorted(groups, key=lambda z: -z)
    W, H = panel[0] * len(zs) + 0.6, panel[1]
    fig, axes = plt.subplots(2, len(zs), figsize=(W, H), sharex="col", squeeze=False,
                             gridspec_kw={"height_ratios": [2.6, 1], "hspace": 0.05, "wspace": 0.3,
                                          "left": 0.8 / W, "right": 1 - 0.15 / W, "top": 0.92, "bottom": 0.12})
    for j, z in enumerate(zs):
        g = groups[z]
        top, bot = axes[0, j], axes[1, j]
        t_lr, t_hr, t_sr = g["lr"].table, g["hr"].table, g["sr"].table
        n_sr = int(g["sr"].meta.get("n_catalogs", 1))
        _plot_hmf(top, t_lr, COLORS["lr"], "LR", offset=-0.015)
        _plot_hmf(top, t_hr, COLORS["hr"], "HR", lw=2.0)
        _plot_hmf(top, t_sr, COLORS["sr"], "SR" if n_sr == 1 else f"SR ({n_sr} realizations)", ls="--",
                  offset=0.015)
        top.set_xscale("log")
        top.set_yscale("log")
        top.set_title(zlabel(z), fontsize=11)
        if not np.any(t_lr["n_halos"] > 0):
            top.text(0.97, 0.95, "no LR halos", transform=top.transAxes, ha="right", va="top", fontsize=8,
                     color=COLORS["lr"])
        _plot_ratio(bot, t_lr, t_hr, COLORS["lr"], "LR / HR", offset=-0.015)
        _plot_ratio(bot, t_sr, t_hr, COLORS["sr"], "SR / HR", offset=0.015)
        if g.get("trivial") is not None:
            t_tr = g["trivial"].table
            ok = t_tr["n_halos"] > 0
            top.plot(10 ** t_tr["log10M_mid"][ok], t_tr["dn_dlog10M"][ok], color=COLORS["trivial"], lw=0.8,
                     label="trivial")
            r, _ = hmf_ratio(t_tr["dn_dlog10M"], t_tr["err"], t_hr["dn_dlog10M"], t_hr["err"])
            ok &= np.isfinite(r)
            bot.plot(10 ** t_tr["log10M_mid"][ok], r[ok], color=COLORS["trivial"], lw=0.8, label="trivial / HR")
        bot.axhline(1.0, color="0.5", lw=0.7)
        if tolerance:
            bot.axhspan(1 - tolerance, 1 + tolerance, color="0.85", zorder=0)
        if min_halos:
            for lo, hi, n in zip(t_hr["log10M_lo"], t_hr["log10M_hi"], t_hr["n_halos"]):
                if 0 < n < min_halos:
                    bot.axvspan(10**lo, 10**hi, color="0.9", hatch="///", fill=False, lw=0, zorder=0)
        _ratio_limits(bot)
        bot.set_xscale("log")
        bot.set_xlabel(r"$M_\mathrm{h}$ [$h^{-1}M_\odot$]")
        _mass_limits(top, [t_lr, t_hr, t_sr])
        if j == 0:
            top.set_ylabel(r"$\mathrm{d}n/\mathrm{d}\log_{10}M_\mathrm{h}$ [$h^3\mathrm{Mpc}^{-3}$]")
            bot.set_ylabel("ratio to HR")
    axes[0, 0].legend(loc="lower left", fontsize=8, frameon=False)
    axes[1, 0].legend(loc="upper left", fontsize=7, frameon=False, ncol=2)
    figure_note(fig, "Poisson errors", f"hatched: HR bins with < {min_halos} halos (not tested)" if min_halos else "",
                tolerance=tolerance)
    return save_figure(fig, out, dpi)


def plot_fig6(lr_big, sr_big, hr_small, out, *, dpi: int = 150, size: tuple[float, float] = (5.0, 5.2)) -> list:
    """Fig. 6: the big box's LR (blue) and SR (black) mass functions against the small HR box's (orange) at one
    redshift, Poisson errors; ratio panel to the big LR where it is resolved and to the small HR.
    `Table` items from `srsim.plots.tables.hmf_item`; all on the same mass bins. Figure `size` inches at dpi."""
    t_lr, t_sr, t_hr = lr_big.table, sr_big.table, hr_small.table
    fig, (top, bot) = plt.subplots(2, 1, figsize=size, sharex=True,
                                   gridspec_kw={"height_ratios": [2.6, 1], "hspace": 0.05, "left": 0.18,
                                                "right": 0.96, "top": 0.93, "bottom": 0.11})
    v_big = lr_big.meta.get("volume")
    v_hr = hr_small.meta.get("volume")

    def vol(v):
        return "" if not v else f" ({float(v) ** (1 / 3):g} Mpc/h)$^3$"

    _plot_hmf(top, t_lr, COLORS["hr"], "LR" + vol(v_big), offset=-0.015)
    _plot_hmf(top, t_sr, COLORS["sr"], "SR" + vol(sr_big.meta.get("volume")))
    _plot_hmf(top, t_hr, COLORS["orange"], "HR" + vol(v_hr), offset=0.015)
    top.set_xscale("log")
    top.set_yscale("log")
    top.set_ylabel(r"$\mathrm{d}n/\mathrm{d}\log_{10}M_\mathrm{h}$ [$h^3\mathrm{Mpc}^{-3}$]")
    top.set_title(f"large volume, {zlabel(lr_big.meta['redshift'])}", fontsize=11)
    top.legend(loc="lower left", fontsize=8, frameon=False)
    _plot_ratio(bot, t_sr, t_hr, COLORS["orange"], "SR / HR")
    _plot_ratio(bot, t_sr, t_lr, COLORS["hr"], "SR / LR")
    bot.axhline(1.0, color="0.5", lw=0.7)
    _ratio_limits(bot)
    bot.set_xscale("log")
    bot.set_xlabel(r"$M_\mathrm{h}$ [$h^{-1}M_\odot$]")
    bot.set_ylabel("ratio")
    bot.legend(loc="upper left", fontsize=7, frameon=False, ncol=2)
    _mass_limits(top, [t_lr, t_sr, t_hr])
    return save_figure(fig, out, dpi)
