"""The velocity figure (issue 15): redshift-space multipoles P0, P2 and the momentum power P_pp of LR, HR and SR
per redshift, with ratio panels to HR."""

from __future__ import annotations

import numpy as np
from matplotlib.lines import Line2D

from srsim.plots.common import COLORS, figure_note, plt, save_figure, zlabel
from srsim.plots.hmf import RATIO_CAP
from srsim.plots.power import particle_nyquist

#: (row kind, height ratio) of the panels of one column, top to bottom, by the tables present
RSD_ROWS = (("multipoles", 2.2), ("P0", 1.0), ("P2", 1.0))
MOMENTUM_ROWS = (("momentum", 2.2), ("P_pp", 1.0))
_YLABEL = {"multipoles": r"$P_\ell(k)$ [$(h^{-1}\mathrm{Mpc})^3$]", "P0": r"$P_0 / P_0^{\rm HR}$",
           "P2": r"$P_2 / P_2^{\rm HR}$", "momentum": r"$P_{pp}(k)$ [$(\mathrm{km/s})^2\,(h^{-1}\mathrm{Mpc})^3$]",
           "P_pp": r"$P_{pp} / P_{pp}^{\rm HR}$"}


def _ok(t: dict, column: str, positive: bool = True) -> np.ndarray:
    ok = (t["k"] > 0) & np.isfinite(t[column]) & (t["n_modes"] > 0)
    return ok & (t[column] > 0) if positive else ok


def _sr_mean(items, column: str):
    """Realization mean of one column, or None without SR tables."""
    return np.mean([s.table[column] for s in items], axis=0) if items else None


def _spectra(ax, group: dict, columns) -> None:
    """Log-log spectra of LR, HR and SR (mean; realizations thin when several). columns: (column, linestyle);
    a column that changes sign (P2) is drawn as its modulus where positive, open circles where negative."""
    n_sr = len(group["sr"])
    for name, lw in (("lr", 1.4), ("hr", 2.2), ("sr", 1.2)):
        if name == "sr":
            if not n_sr:
                continue
            t = {"k": group["hr"].table["k"], "n_modes": group["hr"].table["n_modes"],
                 **{c: _sr_mean(group["sr"], c) for c, _ in columns}}
        else:
            t = group[name].table
        for c, ls in columns:
            ok = _ok(t, c)
            y = np.where(ok, t[c], np.nan)  # gaps at non-positive bins, not lines across them
            ax.loglog(t["k"], y, color=COLORS[name], lw=lw, ls=ls)
            neg = _ok(t, c, positive=False) & (t[c] < 0)
            if neg.any():
                ax.loglog(t["k"][neg], -t[c][neg], ls="none", marker="o", ms=3.5, mfc="none", mec=COLORS[name],
                          mew=0.8)
        if name == "sr" and n_sr > 1:
            for s in group["sr"]:
                c = columns[0][0]
                ok = _ok(s.table, c)
                ax.loglog(s.table["k"][ok], s.table[c][ok], color=COLORS["sr"], lw=0.5, alpha=0.45)


def _ratios(ax, group: dict, column: str) -> None:
    """LR / HR and SR / HR of one column on the bins where HR's value is > 0 (ratios across P2's zero
    crossing mean nothing)."""
    t_hr = group["hr"].table
    ref_ok = _ok(t_hr, column)
    k = t_hr["k"]
    sr = _sr_mean(group["sr"], column)
    for name, y in (("lr", group["lr"].table[column]), ("sr", sr)):
        if y is None:
            continue
        ok = ref_ok & np.isfinite(y)
        n_sr = len(group["sr"])
        label = f"{'LR' if name == 'lr' else 'SR' if n_sr == 1 else f'SR (mean of {n_sr})'} / HR"
        # NaN where a bin is skipped, so the line breaks there instead of bridging it
        r = np.where(ok, y / np.where(ref_ok, t_hr[column], 1.0), np.nan)
        ax.semilogx(k, r, color=COLORS[name], lw=1.4, marker="o", ms=2, label=label)
    ax.axhline(1.0, color="0.5", lw=0.7, zorder=0)


def ratio_limits(ax, tolerance: float | None = None) -> None:
    """A ratio panel's y range: 0..2 unless a ratio is outside; then it grows to show it, up to +-RATIO_CAP,
    and a ratio beyond the cap is drawn as a triangle at the edge (never silently clipped), the most extreme
    one of each line and edge labelled with its value."""
    lines = [line for line in ax.get_lines() if line.get_marker() == "o"]
    ys = np.concatenate([np.asarray(line.get_ydata(), dtype=float) for line in lines] or [np.zeros(0)])
    ys = ys[np.isfinite(ys)]
    top = 2.0 if not ys.size or ys.max() <= 1.9 else min(RATIO_CAP, 1.12 * float(ys.max()))
    bottom = 0.0 if not ys.size or ys.min() >= 0 else max(-RATIO_CAP, 1.12 * float(ys.min()))
    ax.set_ylim(bottom, top)
    if tolerance:
        ax.axhspan(1 - tolerance, 1 + tolerance, color="0.88", zorder=0)
    for n, line in enumerate(lines):
        x, y = np.asarray(line.get_xdata(), dtype=float), np.asarray(line.get_ydata(), dtype=float)
        for edge, over, marker in ((top, y > top, "^"), (bottom, y < bottom, "v")):
            at = edge - 0.03 * (top - bottom) * np.sign(edge or 1)
            over &= np.isfinite(y)
            if not over.any():
                continue
            ax.plot(x[over], np.full(int(over.sum()), at), ls="none", marker=marker, color=line.get_color(), ms=4,
                    clip_on=False)
            worst = int(np.argmax(np.where(over, np.abs(y), -np.inf)))
            dy = -9 - 8 * n if edge > 0 else 3 + 8 * n  # staggered: one label per line
            ax.annotate(f"{y[worst]:.3g}", (x[worst], at), textcoords="offset points", xytext=(-4, dy), ha="right",
                        fontsize=6, color=line.get_color(),
                        bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8})


def _markers(ax, group: dict, k_max: float | None) -> None:
    """Mesh Nyquist (dashed), LR and HR particle Nyquist (dotted, when within 1.5 x the mesh's), k_max (dash-dot)."""
    meta = group["hr"].meta
    kn = meta.get("k_nyquist")
    if kn:
        ax.axvline(float(kn), color="0.3", ls="--", lw=0.9)
    for kind in ("lr", "hr"):
        kp = particle_nyquist(group[kind].meta)
        if kp and (not kn or kp < float(kn) * 1.5):
            ax.axvline(kp, color=COLORS[kind], ls=":", lw=0.9)
    if k_max:
        ax.axvline(k_max, color="0.6", ls="-.", lw=0.7)


def plot_velocity(rsd: dict | None, momentum: dict | None, out, *, k_max: float | None = None,
                  tolerances: dict | None = None, dpi: int = 150, panel: tuple[float, float] = (3.6, 1.25)) -> list:
    """The velocity figure. rsd, momentum: {z: {'lr': Table, 'hr': Table, 'sr': [Table, ...] (may be empty)}}
    of `srsim power --rsd` multipole tables (P0, P2 in (Mpc/h)^3) and `--momentum` tables (P_pp in
    (km/s)^2 (Mpc/h)^3) (`srsim.plots.tables.velocity_by_redshift`), either None, both on the same redshifts.
    One column per redshift (high to low): P0 (solid) and |P2| (dashed; open circles where P2 < 0) of LR, HR
    and SR (realization mean), P0 and P2 ratios to HR; P_pp and its ratio to HR. Mesh Nyquist dashed, particle
    Nyquist dotted, k_max dash-dot; tolerances {'P0', 'P2', 'P_pp': fraction} draw grey bands.
    Figure (panel[0] * n_z + 0.9) x (panel[1] * sum of height ratios + 0.9) inches at dpi. Returns the paths."""
    sets = {k: v for k, v in (("rsd", rsd), ("momentum", momentum)) if v is not None}
    zs = sorted(next(iter(sets.values())), key=lambda z: -z)
    rows = (RSD_ROWS if rsd is not None else ()) + (MOMENTUM_ROWS if momentum is not None else ())
    heights = [h for _, h in rows]
    W, H = panel[0] * len(zs) + 0.9, panel[1] * sum(heights) + 0.9
    fig, axes = plt.subplots(len(rows), len(zs), figsize=(W, H), sharex="col", squeeze=False,
                             gridspec_kw={"height_ratios": heights, "hspace": 0.08, "wspace": 0.32,
                                          "left": 0.85 / W, "right": 1 - 0.15 / W, "top": 1 - 0.6 / H,
                                          "bottom": 0.45 / H})
    tolerances = tolerances or {}
    for j, z in enumerate(zs):
        for i, (row, _) in enumerate(rows):
            ax = axes[i, j]
            group = sets["rsd" if row in ("multipoles", "P0", "P2") else "momentum"][z]
            if row == "multipoles":
                _spectra(ax, group, (("P0", "-"), ("P2", "--")))
            elif row == "momentum":
                _spectra(ax, group, (("P_pp", "-"),))
            else:
                _ratios(ax, group, row)
                ratio_limits(ax, tolerances.get(row))
            _markers(ax, group, k_max)
            if j == 0:
                ax.set_ylabel(_YLABEL[row], fontsize=8)
        first = sets["rsd" if rsd is not None else "momentum"][z]
        axis = first["hr"].meta.get("axis") if rsd is not None else None
        axes[0, j].set_title(zlabel(z) + (f", line of sight {axis}" if axis else ""), fontsize=10)
        k = first["hr"].table["k"]
        kpos = k[(k > 0) & (first["hr"].table["n_modes"] > 0)]
        if kpos.size:
            kn = float(first["hr"].meta.get("k_nyquist") or 0)
            axes[0, j].set_xlim(kpos.min() * 0.9, max(kpos.max(), kn) * 1.1)
        axes[-1, j].set_xlabel(r"$k$ [$h\,\mathrm{Mpc}^{-1}$]")
    has_sr = any(g["sr"] for s in sets.values() for g in s.values())
    handles = [Line2D([], [], color=COLORS[n], lw=2, label=n.upper()) for n in ("lr", "hr", "sr")
               if n != "sr" or has_sr]
    if rsd is not None:
        handles += [Line2D([], [], color="0.3", lw=1.2, ls="-", label=r"$P_0$"),
                    Line2D([], [], color="0.3", lw=1.2, ls="--", label=r"$|P_2|$"),
                    Line2D([], [], color="0.3", ls="none", marker="o", mfc="none", label=r"$P_2 < 0$")]
    axes[0, 0].legend(handles=handles, loc="lower left", fontsize=7, frameon=False, ncol=2)
    for i, (row, _) in enumerate(rows):
        if row in ("P0", "P2", "P_pp"):
            axes[i, 0].legend(loc="upper left", fontsize=6, frameon=False)
    figure_note(fig, "dashed: mesh Nyquist; dotted: LR / HR particle Nyquist",
                f"dash-dot: k_max = {k_max:g} h/Mpc" if k_max else "",
                "grey bands: SR tolerances" if tolerances else "", "no SR tables" if not has_sr else "")
    return save_figure(fig, out, dpi)
