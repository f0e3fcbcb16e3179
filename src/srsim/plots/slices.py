"""Figs. 1 and 2: LR, HR and SR density projections (slab, zoom boxes) and HR vs SR realizations.

Region choice is deterministic: zoom A is centred on the most massive HR halo, the slab on A's depth, the four
smaller zooms B-E on the next most massive HR halos that lie within the slab and do not overlap each other.
"""

from __future__ import annotations

import numpy as np
from matplotlib.patches import Rectangle

from srsim.plots.common import plt, save_figure, zlabel
from srsim.plots.projection import Projection, Region, density_limits, nice_length, relative, show

SMALL = ("B", "C", "D", "E")


def _pick_centres(box_size, halo_pos, halo_mass, count, *, zc=None, depth=None, min_sep=0.0, exclude=()):
    """Centres (count, 3) of the most massive halos with |z - zc| <= depth/2 (periodic) and pairwise xy
    separation > min_sep; filled with points on a ring around the box centre when halos run out."""
    chosen = [np.asarray(e, float) for e in exclude]
    out = []
    if halo_pos is not None and len(halo_pos):
        order = np.argsort(-np.asarray(halo_mass))
        for i in order:
            p = np.asarray(halo_pos[i], float)
            if zc is not None and abs(relative(p[None], np.array([0, 0, zc]), box_size)[0, 2]) > depth / 2:
                continue
            if any(np.hypot(*relative(p[None], c, box_size)[0, :2]) <= min_sep for c in chosen):
                continue
            out.append(p)
            chosen.append(p)
            if len(out) == count:
                break
    k = 0
    while len(out) < count:  # a halo-poor box (tiny tests): spread the rest around the box centre
        ang = 2 * np.pi * k / max(count, 1) + 0.3
        out.append(np.array([box_size * (0.5 + 0.25 * np.cos(ang)), box_size * (0.5 + 0.25 * np.sin(ang)),
                             box_size / 2 if zc is None else zc]))
        k += 1
    return np.array(out).reshape(count, 3)


def fig1_regions(box_size: float, halo_pos=None, halo_mass=None, *, slab_thickness: float = 20.0,
                 zoom: float = 20.0, npix_slab: int = 600, npix_zoom: int = 500) -> list[Region]:
    """Regions of Fig. 1: 'slab' (box x box x slab_thickness), 'A' (zoom^3) and 'B'..'E' ((zoom/2)^3).
    halo_pos (h, 3) Mpc/h and halo_mass (h,) Msun/h: the HR catalogue (None: geometric fallback)."""
    thick = min(slab_thickness, box_size)
    zoom = min(zoom, box_size)
    a = _pick_centres(box_size, halo_pos, halo_mass, 1)[0]
    slab = Region("slab", [box_size / 2, box_size / 2, a[2]], [box_size, box_size, thick], npix_slab)
    small = zoom / 2
    bc = _pick_centres(box_size, halo_pos, halo_mass, 4, zc=a[2], depth=max(thick - small, 0.0), min_sep=small,
                       exclude=[a])
    regions = [slab, Region("A", a, [zoom] * 3, npix_zoom)]
    regions += [Region(n, c, [small] * 3, npix_zoom // 2) for n, c in zip(SMALL, bc)]
    return regions


def _mark_box(ax, center, side, box_size, color, label):
    """Outline a zoom box on a full-box panel, with its periodic images where it crosses the box edge."""
    x, y = np.mod(center[:2], box_size)
    for sx in (-box_size, 0.0, box_size):
        for sy in (-box_size, 0.0, box_size):
            x0, y0 = x - side / 2 + sx, y - side / 2 + sy
            if x0 > box_size or y0 > box_size or x0 + side < 0 or y0 + side < 0:
                continue
            ax.add_patch(Rectangle((x0, y0), side, side, fill=False, ec=color, lw=0.9, clip_on=True))
            ax.text(x0 + 0.02 * side, y0 + 0.98 * side, label, color=color, fontsize=7, ha="left", va="top",
                    clip_on=True)


def plot_fig1(columns: dict[str, dict[str, Projection]], box_size: float, out, *, redshift: float,
              dpi: int = 150, col_width: float = 3.2) -> list:
    """Fig. 1. columns: {'LR': {region name: Projection}, 'HR': ..., 'SR': ...} (column order kept) with regions
    'slab', 'A', 'B'..'E' from `fig1_regions`. Colour limits per row are shared by all columns (from HR and SR).
    Writes out (PNG, (3 * col_width + 0.4) x (3 * col_width + 0.7) inches at dpi) and the PDF; returns paths."""
    names = list(columns)
    ncol = len(names)
    W = ncol * col_width + 0.4
    H = 3 * col_width + 0.7
    fig = plt.figure(figsize=(W, H), facecolor="black")
    ref = [columns[n] for n in names if n.upper() != "LR"] or list(columns.values())
    rows = ["slab", "A"] + list(SMALL)
    limits = {r: density_limits([c[r].density for c in ref]) for r in rows}
    cw, ch = col_width / W, col_width / H
    gap = 0.03 / W
    for j, name in enumerate(names):
        x0 = (0.2 + j * col_width) / W
        col = columns[name]
        slab, a = col["slab"], col["A"]
        # top row: slab, absolute coordinates; zoom boxes marked
        ax = fig.add_axes([x0 + gap, 1 - (0.45 / H) - ch + gap, cw - 2 * gap, ch - 2 * gap])
        show(ax, slab, limits["slab"], absolute_extent=slab.region.extent(box_size, absolute=True),
             scalebar=nice_length(box_size))
        _mark_box(ax, a.region.center, a.region.size[0], box_size, "#ff9a1f", "A")
        for s in SMALL:
            _mark_box(ax, col[s].region.center, col[s].region.size[0], box_size, "white", s)
        ax.set_title(name, color="white", fontsize=12, pad=3)
        ax = fig.add_axes([x0 + gap, 1 - (0.45 / H) - 2 * ch + gap, cw - 2 * gap, ch - 2 * gap])
        show(ax, a, limits["A"], scalebar=nice_length(a.region.size[0]), label="A", label_color="#ff9a1f")
        for k, s in enumerate(SMALL):
            ix, iy = k % 2, k // 2
            ax = fig.add_axes([x0 + ix * cw / 2 + gap, 1 - (0.45 / H) - 2 * ch - (iy + 1) * ch / 2 + gap,
                               cw / 2 - 2 * gap, ch / 2 - 2 * gap])
            show(ax, col[s], limits[s], scalebar=nice_length(col[s].region.size[0]), label=s)
    slab_r = columns[names[0]]["slab"].region
    fig.text(0.5, 0.12 / H, f"{zlabel(redshift)}; slab {slab_r.size[2]:g} Mpc/h thick, zoom A "
             f"({columns[names[0]]['A'].region.size[0]:g} Mpc/h)^3, B-E "
             f"({columns[names[0]]['B'].region.size[0]:g} Mpc/h)^3; FOF members in orange",
             color="white", ha="center", va="bottom", fontsize=8)
    return save_figure(fig, out, dpi)


def fig2_region(box_size: float, lr_pos=None, *, zoom: float = 20.0, npix: int = 500) -> Region:
    """Fig. 2's cube of side `zoom`, centred on the densest spot of the LR field (the LR is shared by HR and every
    SR, so the choice favours none of the panels): LR positions (n, 3) Mpc/h are CIC-deposited on a grid of
    cells zoom/4 wide, smoothed by one cell, and the densest cell's centre taken. Box centre without LR."""
    side = min(zoom, box_size)
    if lr_pos is None or len(lr_pos) == 0:
        return Region("zoom", [box_size / 2] * 3, [side] * 3, npix)
    from scipy import ndimage

    n = max(4, int(round(4 * box_size / side)))
    grid = np.zeros((n, n, n))
    u = np.asarray(lr_pos, dtype=np.float64) / box_size * n - 0.5
    i0 = np.floor(u).astype(np.int64)
    f = u - i0
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                w = (np.where(dx, f[:, 0], 1 - f[:, 0]) * np.where(dy, f[:, 1], 1 - f[:, 1])
                     * np.where(dz, f[:, 2], 1 - f[:, 2]))
                np.add.at(grid, ((i0[:, 0] + dx) % n, (i0[:, 1] + dy) % n, (i0[:, 2] + dz) % n), w)
    grid = ndimage.gaussian_filter(grid, 1.0, mode="wrap")
    idx = np.unravel_index(int(np.argmax(grid)), grid.shape)
    return Region("zoom", (np.array(idx) + 0.5) * box_size / n, [side] * 3, npix)


def fig2_order(n_panels: int, seed: int = 2) -> np.ndarray:
    """Deterministic shuffle of [HR, SR0, SR1, ...] into the panel order A, B, ... (seeded)."""
    return np.random.default_rng(seed).permutation(n_panels)


def plot_fig2(lr: Projection, hr: Projection, sr: list[Projection], out, *, redshift: float, dpi: int = 150,
              seed: int = 2, panel: float = 3.0) -> tuple[list, str]:
    """Fig. 2: the LR input (left) and HR plus the SR realizations as unlabelled panels A, B, ... in a seeded
    random order (grid of 2 columns); the answer is printed upside down under the panels.
    Figure: (panel * 3 + 0.3) x (panel * rows + 0.9) inches, rows = ceil((1 + len(sr)) / 2).
    Returns (written paths, the letter of the HR panel); the PNG records that letter too (``hr_panel`` in
    :func:`srsim.plots.common.read_png_info`), as the panels were drawn."""
    items = [hr] + list(sr)
    order = fig2_order(len(items), seed)
    letters = [chr(ord("A") + i) for i in range(len(items))]
    rows = (len(items) + 1) // 2
    W, H = panel * 3 + 0.3, panel * rows + 0.9
    fig = plt.figure(figsize=(W, H), facecolor="black")
    limits = density_limits([p.density for p in items])
    pw, ph, g = panel / W, panel / H, 0.04 / W
    top = 1 - 0.4 / H
    ax = fig.add_axes([0.1 / W + g, top - ph * (rows + 1) / 2 + g, pw - 2 * g, ph - 2 * g])
    show(ax, lr, limits, scalebar=nice_length(lr.region.size[0]), label="LR input")
    hr_panel = None
    for slot, idx in enumerate(order):
        ix, iy = slot % 2, slot // 2
        ax = fig.add_axes([(0.2 + panel * (1 + ix)) / W + g, top - ph * (iy + 1) + g, pw - 2 * g, ph - 2 * g])
        show(ax, items[idx], limits, label=letters[slot])
        if idx == 0:  # items[0] is HR
            hr_panel = letters[slot]
    side = hr.region.size[0]
    fig.text(0.5, 1 - 0.2 / H, f"Same LR, ({side:g} Mpc/h)$^3$, {zlabel(redshift)}: which panel is HR?",
             color="white", ha="center", va="center", fontsize=10)
    fig.text(0.5, 0.25 / H, f"Answer: HR is panel {hr_panel}; the others are SR realizations",
             color="0.7", ha="center", va="center", fontsize=7, rotation=180)
    return save_figure(fig, out, dpi, info={"hr_panel": hr_panel}), hr_panel
