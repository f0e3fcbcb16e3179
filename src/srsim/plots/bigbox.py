"""Fig. 5: the large-volume SR slice, with the LR slice as an inset and zooms on the most massive SR halo."""

from __future__ import annotations

import numpy as np
from matplotlib.patches import Rectangle

from srsim.plots.common import plt, save_figure, zlabel
from srsim.plots.projection import Projection, Region, density_limits, nice_length, show
from srsim.plots.slices import _pick_centres


def fig5_regions(box_size: float, halo_pos=None, halo_mass=None, *, slab_thickness: float = 20.0,
                 zoom: float = 20.0, npix_slab: int = 1200, npix_zoom: int = 400) -> list[Region]:
    """'slab' (box x box x slab_thickness, centred in depth on the most massive halo) and 'zoom' (zoom^3 around
    it); halo_pos (h, 3) Mpc/h and halo_mass (h,): the SR catalogue of the big box."""
    c = _pick_centres(box_size, halo_pos, halo_mass, 1)[0]
    return [Region("slab", [box_size / 2, box_size / 2, c[2]], [box_size, box_size, min(slab_thickness, box_size)],
                   npix_slab),
            Region("zoom", c, [min(zoom, box_size)] * 3, npix_zoom)]


def _frame(ax, color, lw=1.5):
    for s in ax.spines.values():
        s.set_visible(True)
        s.set_edgecolor(color)
        s.set_linewidth(lw)


def plot_fig5(sr: dict[str, Projection], lr: dict[str, Projection], box_size: float, out, *, redshift: float,
              halo_mass: float | None = None, dpi: int = 150, size: float = 8.0) -> list:
    """Fig. 5. sr, lr: {'slab': Projection, 'zoom': Projection} from `fig5_regions`. The SR slab fills the
    figure; the LR slab is the white-framed inset (top left); the red-framed insets (right) show the zoom cube
    around the most massive SR halo (mass halo_mass Msun/h) in SR and LR, marked by a red box on the slab.
    LR and SR share the colour limits (set by the SR). Figure size x size inches at dpi."""
    fig = plt.figure(figsize=(size, size), facecolor="black")
    lim_slab = density_limits([sr["slab"].density])
    lim_zoom = density_limits([sr["zoom"].density])
    ax = fig.add_axes([0, 0, 1, 1])
    slab_ext = sr["slab"].region.extent(box_size, absolute=True)
    show(ax, sr["slab"], lim_slab, absolute_extent=slab_ext, scalebar=nice_length(box_size), scalebar_left=True)
    zr = sr["zoom"].region
    side = max(zr.size[0], 0.012 * box_size)  # keep the marker visible on a huge slab
    cx, cy = np.mod(zr.center[:2], box_size)
    ax.add_patch(Rectangle((cx - side / 2, cy - side / 2), side, side, fill=False, ec="red", lw=1.2))
    thick = sr["slab"].region.size[2]
    mass = f", halo {halo_mass:.2g} " + r"$h^{-1}M_\odot$" if halo_mass else ""
    ax.text(slab_ext[0] + 0.5 * (slab_ext[1] - slab_ext[0]), slab_ext[3] - 0.015 * box_size,
            f"SR, {box_size:g} Mpc/h box, slice {thick:g} Mpc/h thick, {zlabel(redshift)}", color="white",
            ha="center", va="top", fontsize=9)
    ins = fig.add_axes([0.03, 0.63, 0.3, 0.3])
    show(ins, lr["slab"], lim_slab,
         absolute_extent=lr["slab"].region.extent(box_size, absolute=True), label="LR")
    _frame(ins, "white")
    for k, (name, proj) in enumerate((("SR", sr["zoom"]), ("LR", lr["zoom"]))):
        zax = fig.add_axes([0.67, 0.04 + k * 0.3, 0.29, 0.29])
        show(zax, proj, lim_zoom,
             scalebar=nice_length(proj.region.size[0]), label=f"{name} zoom")
        _frame(zax, "red")
    if mass:
        fig.text(0.815, 0.635, f"({zr.size[0]:g} Mpc/h)$^3$" + mass, color="white", ha="center", va="bottom",
                 fontsize=8)
    return save_figure(fig, out, dpi)
