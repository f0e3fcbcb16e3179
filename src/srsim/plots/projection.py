"""Projected density images of particle sets: slabs and zoom boxes, Gaussian smoothing, FOF members highlighted.

Particles are streamed chunk by chunk (a snapshot never has to fit in memory). Every region is a box
(centre, size) in the periodic simulation volume, projected along z onto an (ny, nx) pixel image with
cloud-in-cell deposition. Images are overdensities of the projected column: 1 is the mean.

FOF members are highlighted three ways, best first:
1. a member-ID list from the FOF catalogue (`members_id`): exact, any box size;
2. a local FOF (linking length b * mean separation) on the particles of the region plus a margin, for regions
   small enough to hold in memory (`collect_limit` particles);
3. otherwise the catalogue's halos deposited at their centres of mass with their particle counts (exact in
   total mass, approximate in shape; used for huge slabs such as the 1 Gpc/h box, where halos are ~ a pixel).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
from scipy import ndimage

from srsim.errors import SrsimError

#: colours of the paper: a blue density background, FOF members in orange
BLUES = ["#000000", "#04122e", "#0b3a7a", "#2a6fba", "#7fb4e6", "#e8f3ff"]
ORANGE = np.array([1.0, 0.55, 0.10])
#: member IDs (8 bytes each) a catalogue may hold for them to be loaded; a huge box's catalogue falls back
#: to local FOF / halo centres
MAX_MEMBERS = 300_000_000


@dataclass
class Region:
    """A box in the simulation volume, projected along z.

    center: (3,) Mpc/h; size: (3,) Mpc/h (x, y extent of the image and z depth; a side >= box_size means the
    whole periodic box along that axis); npix: pixels along x (y follows from the aspect ratio).
    """

    name: str
    center: np.ndarray
    size: np.ndarray
    npix: int

    def __post_init__(self):
        self.center = np.asarray(self.center, dtype=np.float64).reshape(3)
        self.size = np.asarray(self.size, dtype=np.float64).reshape(3)
        if np.any(self.size <= 0) or self.npix < 2:
            raise SrsimError(f"region {self.name}: size {self.size} and npix {self.npix} must be positive")

    @property
    def shape(self) -> tuple[int, int]:
        """(ny, nx) pixels."""
        return max(2, int(round(self.npix * self.size[1] / self.size[0]))), self.npix

    def extent(self, box_size: float, absolute: bool = False) -> tuple[float, float, float, float]:
        """imshow extent (x0, x1, y0, y1) in Mpc/h, relative to the centre unless absolute."""
        sx, sy = min(self.size[0], box_size), min(self.size[1], box_size)
        cx, cy = (self.center[0], self.center[1]) if absolute else (0.0, 0.0)
        return cx - sx / 2, cx + sx / 2, cy - sy / 2, cy + sy / 2


@dataclass
class Projection:
    """A rendered region: density and FOF-member column overdensities, (ny, nx) float64 (mean = 1)."""

    region: Region
    density: np.ndarray
    fof: np.ndarray
    n_particles: int
    method: str
    extent: tuple = field(default=())


def relative(pos: np.ndarray, center: np.ndarray, box_size: float) -> np.ndarray:
    """Minimum-image separation of (n, 3) positions from a centre, into [-box/2, box/2), Mpc/h."""
    d = np.asarray(pos, dtype=np.float64) - center
    d -= box_size * np.floor(d / box_size + 0.5)
    return d


def deposit_cic(x, y, weights, extent, shape, periodic=(False, False)) -> np.ndarray:
    """Cloud-in-cell deposit of 2-D points onto a (ny, nx) image covering extent (x0, x1, y0, y1).

    Points outside are dropped (or wrapped along a periodic axis). Returns (ny, nx) float64 sums of weights."""
    ny, nx = shape
    x0, x1, y0, y1 = extent
    img = np.zeros(ny * nx, dtype=np.float64)
    if len(x) == 0:
        return img.reshape(ny, nx)
    u = (np.asarray(x, dtype=np.float64) - x0) / (x1 - x0) * nx - 0.5
    v = (np.asarray(y, dtype=np.float64) - y0) / (y1 - y0) * ny - 0.5
    w = np.broadcast_to(np.asarray(weights, dtype=np.float64), u.shape)
    iu, iv = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
    fu, fv = u - iu, v - iv
    for du, wu in ((0, 1.0 - fu), (1, fu)):
        for dv, wv in ((0, 1.0 - fv), (1, fv)):
            cu, cv = iu + du, iv + dv
            if periodic[0]:
                cu %= nx
            if periodic[1]:
                cv %= ny
            ok = (cu >= 0) & (cu < nx) & (cv >= 0) & (cv < ny)
            img += np.bincount(cv[ok] * nx + cu[ok], weights=(w * wu * wv)[ok], minlength=ny * nx)
    return img.reshape(ny, nx)


def smooth(img: np.ndarray, sigma_pix: float, periodic: bool = False) -> np.ndarray:
    """Gaussian smoothing with sigma in pixels (skipped below 0.3 pixel, where CIC already dominates)."""
    if sigma_pix < 0.3:
        return img
    return ndimage.gaussian_filter(img, sigma_pix, mode="wrap" if periodic else "constant")


def adaptive_smooth(counts: np.ndarray, others, sigma_pix: float, n_min: float, periodic: bool = False,
                    others_max_level: int = 2, max_sigma: float | None = None):
    """Adaptive ("scatter") Gaussian smoothing of a (ny, nx) particle-count image.

    Each pixel's particles get the smallest kernel sigma_pix * 2^j (j = 0, 1, ...; at most max_sigma pixels,
    default 1/8 of the image)
    whose neighbourhood holds at least n_min particles within the effective area 4 pi sigma^2, and are spread
    with it, as SPH-style renderers do: halos stay sharp at the configured scale while sparse particles (voids,
    an LR set) become a continuous field instead of isolated dots. Mass is conserved (no mass of a dense pixel
    is spread wide). `others` (e.g. FOF-member counts, a subset) use the same per-pixel kernels, at most
    2^others_max_level times the smallest (halo members are dense; their stray outskirts must not tint a wide
    patch).
    n_min <= 0 gives plain Gaussian smoothing. Returns (smoothed counts, [smoothed others]) in counts/pixel.
    """
    others = list(others)
    if n_min <= 0:
        return smooth(counts, sigma_pix, periodic), [smooth(o, sigma_pix, periodic) for o in others]
    sigmas = [max(sigma_pix, 0.5)]
    sig_max = max(sigmas[0], min(counts.shape) / 8 if max_sigma is None else max_sigma)
    while sigmas[-1] * 2 <= sig_max:
        sigmas.append(sigmas[-1] * 2)
    level = np.full(counts.shape, len(sigmas) - 1, dtype=np.int64)
    undecided = counts > 0
    for j, sig in enumerate(sigmas[:-1]):  # gather: the smallest kernel holding n_min particles
        s_j = smooth(counts, sig if j else sigma_pix, periodic)
        ok = undecided & (s_j * 4 * np.pi * sig**2 >= n_min)
        level[ok] = j
        undecided &= ~ok
        if not undecided.any():
            break
    out = np.zeros_like(counts, dtype=np.float64)
    outs = [np.zeros_like(o, dtype=np.float64) for o in others]
    for j in np.unique(level[counts > 0]) if np.any(counts > 0) else []:  # scatter with the chosen kernels
        sel = level == j
        out += smooth(np.where(sel, counts, 0.0), sigmas[j] if j else sigma_pix, periodic)
    olevel = np.minimum(level, others_max_level)
    for o, dst in zip(others, outs):
        for j in np.unique(olevel[o != 0]) if np.any(o != 0) else []:
            dst += smooth(np.where(olevel == j, o, 0.0), sigmas[j] if j else sigma_pix, periodic)
    return out, outs


def fof_member_mask(pos: np.ndarray, linking_length: float, min_members: int, box_size=None) -> np.ndarray:
    """Friends-of-friends (srsim.analysis.fof) on (n, 3) positions in Mpc/h: True for particles in groups of
    >= min_members. box_size: None (open region) or the periodic box side (positions in [0, box_size))."""
    from srsim.analysis.fof import fof_groups

    if len(pos) == 0:
        return np.zeros(0, dtype=bool)
    groups = fof_groups(pos, linking_length, box_size=box_size, min_members=min_members)
    return groups.labels >= 0


class ProjectionRenderer:
    """Accumulates projections of several regions from streamed particle chunks of one snapshot.

    box_size: Mpc/h; n_particles: particles in the whole snapshot (sets the mean density and the FOF linking
    length b * box_size / n_particles^(1/3)); member_ids: sorted (m,) uint64 FOF member IDs or None;
    halos: (pos (h, 3) Mpc/h, npart (h,)) catalogue for fallback 3; margin: Mpc/h added around collected regions
    so that halos cut by a region's faces are still found whole by the local FOF. Regions narrower than the box
    are rendered with a border of `pad` times their side (then cropped), so smoothing kernels at the image edge
    see the particles beyond it.
    """

    def __init__(self, box_size: float, n_particles: int, regions: Iterable[Region], *, member_ids=None,
                 halos=None, b: float = 0.2, min_members: int = 32, margin: float | None = None,
                 collect_limit: int = 4_000_000, pad: float = 0.25):
        self.box = float(box_size)
        self.n_particles = int(n_particles)
        self.regions = list(regions)
        self.member_ids = None if member_ids is None else np.sort(np.asarray(member_ids, dtype=np.uint64))
        self.halos = halos
        self.link = b * self.box / self.n_particles ** (1.0 / 3.0)
        self.min_members = int(min_members)
        self.margin = 2.0 if margin is None else float(margin)
        self.state = {}
        for r in self.regions:
            full = r.size >= self.box
            ny, nx = r.shape
            pix = np.array([r.size[0] / nx, r.size[1] / ny])
            npad = np.where(full[:2], 0, np.ceil(pad * np.array([nx, ny]))).astype(int)  # (x, y) border, pixels
            # rendered (x, y) extent with the border; z is the projection depth
            outer = np.append(np.where(full[:2], self.box, r.size[:2] + 2 * npad * pix), min(r.size[2], self.box))
            need = np.maximum(outer, r.size + 2 * self.margin)
            # a grown side within a margin of the box is taken as the whole box (so FOF may treat it periodic)
            grown = np.where(full | (need + self.margin >= self.box), self.box, need)
            expected = self.n_particles * np.prod(grown) / self.box**3
            collect = self.member_ids is None and expected <= collect_limit
            shape = (ny + 2 * npad[1], nx + 2 * npad[0])
            self.state[r.name] = {
                "full": full, "grown": grown, "collect": collect, "chunks": [], "npad": npad,
                "outer": np.minimum(outer, self.box), "shape": shape,
                "dens": np.zeros(shape), "fof": np.zeros(shape), "count": 0,
            }

    def _members(self, ids: np.ndarray) -> np.ndarray:
        m = self.member_ids
        if m.size == 0:
            return np.zeros(len(ids), dtype=bool)
        idx = np.searchsorted(m, ids)
        idx[idx >= m.size] = m.size - 1
        return m[idx] == ids

    def add(self, pos: np.ndarray, ids: np.ndarray | None = None) -> None:
        """Add a chunk: pos (n, 3) Mpc/h, ids (n,) uint64 (needed with member_ids)."""
        pos = np.asarray(pos)
        member = None
        if self.member_ids is not None:
            if ids is None:
                raise SrsimError("ProjectionRenderer.add: particle IDs are needed to highlight FOF members")
            member = self._members(np.asarray(ids, dtype=np.uint64))
        for r in self.regions:
            st = self.state[r.name]
            half = (st["grown"] if st["collect"] else st["outer"]) / 2
            # select on the bounded axes first (a slab tests z only), then take separations of the few kept
            sel = np.ones(len(pos), dtype=bool)
            for a in np.flatnonzero(half < self.box / 2):
                da = pos[:, a] - r.center[a]
                da -= self.box * np.floor(da / self.box + 0.5)
                sel &= np.abs(da) <= half[a]
            d = relative(pos[sel], r.center, self.box)
            if st["collect"]:
                st["chunks"].append(d)
            else:
                self._deposit(r, st, d, None if member is None else member[sel])

    @staticmethod
    def _outer_extent(st: dict) -> tuple:
        hx, hy = st["outer"][0] / 2, st["outer"][1] / 2
        return -hx, hx, -hy, hy

    def _deposit(self, r: Region, st: dict, d: np.ndarray, member) -> None:
        inside = np.all(np.abs(d) <= st["outer"] / 2, axis=1)
        d = d[inside]
        ext = self._outer_extent(st)
        per = (bool(st["full"][0]), bool(st["full"][1]))
        st["dens"] += deposit_cic(d[:, 0], d[:, 1], 1.0, ext, st["shape"], per)
        st["count"] += int(np.count_nonzero(np.all(np.abs(d) <= np.minimum(r.size, self.box) / 2, axis=1)))
        if member is not None:
            m = member[inside]
            st["fof"] += deposit_cic(d[m, 0], d[m, 1], 1.0, ext, st["shape"], per)

    def finish(self, smoothing: float = 0.0, adaptive_count: float = 8.0) -> dict[str, Projection]:
        """Finish every region: local FOF where collected, Gaussian smoothing with sigma `smoothing` Mpc/h, grown
        where fewer than `adaptive_count` particles fall in the kernel (see `adaptive_smooth`), and
        normalisation to the mean column density. Returns {region name: Projection}."""
        out = {}
        for r in self.regions:
            st = self.state[r.name]
            if st["collect"]:
                d = np.concatenate(st["chunks"]) if st["chunks"] else np.zeros((0, 3))
                st["chunks"] = []
                # along a full-box axis the region is periodic: FOF in the periodic box; elsewhere the region
                # (with its margin) spans less than box - link, so the periodic images never link
                p = d + st["grown"] / 2
                if st["full"].any() or np.any(st["grown"] >= self.box):
                    p = np.mod(p, self.box)
                    p[p >= self.box] = 0.0
                    boxsize = self.box
                else:
                    boxsize = None
                member = fof_member_mask(p, self.link, self.min_members, boxsize)
                self._deposit(r, st, d, member)
                method = "local FOF"
            elif self.member_ids is not None:
                method = "member IDs"
            else:
                method = "halo centres" if self.halos is not None else "no FOF highlight"
                if self.halos is not None and len(self.halos[0]):
                    hpos, hn = self.halos
                    d = relative(hpos, r.center, self.box)
                    inside = np.all(np.abs(d) <= st["outer"] / 2, axis=1)
                    st["fof"] += deposit_cic(d[inside, 0], d[inside, 1], np.asarray(hn, float)[inside],
                                             self._outer_extent(st), st["shape"],
                                             (bool(st["full"][0]), bool(st["full"][1])))
            ny, nx = r.shape
            sx, sy, sz = np.minimum(r.size, self.box)
            mean = self.n_particles / self.box**3 * (sx / nx) * (sy / ny) * sz
            pix = sx / nx
            per = bool(st["full"][0] and st["full"][1])
            px, py = st["npad"]
            # kernels stay within the border (at most half of it), so the cropped edges are not darkened
            max_sigma = min(ny, nx) / 8 if per or min(px, py) == 0 else max(1.0, min(px, py) / 2)
            dens, (fof,) = adaptive_smooth(st["dens"], [st["fof"]], smoothing / pix, adaptive_count, per,
                                           max_sigma=max_sigma)
            dens, fof = dens[py:py + ny, px:px + nx] / mean, fof[py:py + ny, px:px + nx] / mean
            out[r.name] = Projection(r, dens, fof, int(st["count"]), method, r.extent(self.box))
        return out


def render_particles(pos, box_size, regions, *, ids=None, n_particles=None, member_ids=None, halos=None,
                     b=0.2, min_members=32, smoothing=0.0, adaptive_count=8.0, margin=None,
                     collect_limit=4_000_000):
    """Render in-memory particles (n, 3) Mpc/h into {region name: Projection} (see ProjectionRenderer)."""
    pos = np.asarray(pos)
    r = ProjectionRenderer(box_size, n_particles or len(pos), regions, member_ids=member_ids, halos=halos, b=b,
                           min_members=min_members, margin=margin, collect_limit=collect_limit)
    r.add(pos, ids)
    return r.finish(smoothing, adaptive_count)


def render_snapshot(path, regions, *, fof_path=None, smoothing=0.0, adaptive_count=8.0, chunk_size=2**22,
                    collect_limit=4_000_000, b=None, min_members=None, progress=True):
    """Render regions of a bigfile snapshot (streamed), highlighting the FOF groups of the catalogue at fof_path
    (member IDs if it stores them and they number at most MAX_MEMBERS, else local FOF / halo centres; the
    Projection's `method` says which). b and min_members default to the catalogue's attributes (0.2 and 32
    without a catalogue). Returns {region name: Projection}."""
    from srsim.io.catalog import read_catalog
    from srsim.io.snapshot import iter_particles, read_header

    header = read_header(path)
    member_ids, halos = None, None
    if fof_path is not None:
        cat, attrs = read_catalog(fof_path, max_members=MAX_MEMBERS)
        member_ids, halos = cat.get("members_id"), (cat["pos"], cat["npart"])
        b = attrs.get("b") if b is None else b
        min_members = attrs.get("min_members") if min_members is None else min_members
    b = 0.2 if b is None else b
    min_members = 32 if min_members is None else min_members
    rend = ProjectionRenderer(header.box_size, header.n_particles, regions, member_ids=member_ids, halos=halos,
                              b=b, min_members=min_members, collect_limit=collect_limit)
    blocks = ("Position", "ID") if member_ids is not None else ("Position",)
    total = int(header.n_particles)
    it = iter_particles(path, blocks=blocks, chunk_size=chunk_size)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, total=math.ceil(total / chunk_size), desc=f"render {path}", unit="chunk", leave=False)
    for chunk in it:
        rend.add(chunk["Position"], chunk.get("ID"))
    return rend.finish(smoothing, adaptive_count)


def density_limits(images, lo_pct: float = 5.0, hi_pct: float = 99.9):
    """Common log10 colour limits (lo, hi) for overdensity images: hi is a high percentile of the non-empty
    pixels; lo a low percentile kept within [-1.5, 0] (mean density and underdense filaments stay visible
    however bright a halo core or empty a void)."""
    vals = np.concatenate([np.log10(im[im > 0]).ravel() for im in images if np.any(im > 0)] or [np.zeros(1)])
    lo = float(np.clip(np.percentile(vals, lo_pct), -1.5, 0.0))
    hi = max(float(np.percentile(vals, hi_pct)), lo + 1.0)
    return lo, hi


def compose_rgb(density: np.ndarray, fof: np.ndarray, limits) -> np.ndarray:
    """(ny, nx, 3) RGB in [0, 1]: log density in blues; FOF members blended in orange with an opacity equal
    to their share of the pixel's mass, brighter where their column density is higher (same limits)."""
    from matplotlib.colors import LinearSegmentedColormap

    lo, hi = limits
    cmap = LinearSegmentedColormap.from_list("srsim_blues", BLUES)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.clip((np.log10(np.maximum(density, 1e-30)) - lo) / (hi - lo), 0, 1)
        tf = np.clip((np.log10(np.maximum(fof, 1e-30)) - lo) / (hi - lo), 0, 1)
        share = np.where(density > 0, np.clip(fof / density, 0, 1), 0.0)
    rgb = cmap(t)[..., :3]
    a = (share * np.clip(0.5 + tf, 0, 1))[..., None]
    shade = np.minimum(ORANGE[None, None, :] * (0.8 + 0.5 * tf[..., None]), 1.0)
    return np.clip(rgb * (1 - a) + shade * a, 0, 1)


def show(ax, proj: Projection, limits, *, absolute_extent=None, scalebar: float | None = None, label=None,
         label_color="white", scalebar_left: bool = False):
    """Draw a projection on an axes (no ticks), with an optional scale bar (Mpc/h) and corner label."""
    ext = absolute_extent if absolute_extent is not None else proj.extent
    ax.imshow(compose_rgb(proj.density, proj.fof, limits), origin="lower", extent=ext, interpolation="nearest")
    ax.set_facecolor("black")
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)
    x0, x1, y0, y1 = ext
    if scalebar:
        w, h = x1 - x0, y1 - y0
        xs = x0 + 0.05 * w if scalebar_left else x1 - 0.05 * w - scalebar
        ys = y0 + 0.06 * h
        ax.plot([xs, xs + scalebar], [ys, ys], color="white", lw=1.5)
        ax.text(xs + scalebar / 2, ys + 0.02 * h, f"{scalebar:g} Mpc/h", color="white", ha="center", va="bottom",
                fontsize=7)
    if label:
        ax.text(x0 + 0.04 * (x1 - x0), y1 - 0.04 * (y1 - y0), label, color=label_color, ha="left", va="top",
                fontsize=9, fontweight="bold")
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)


def nice_length(length: float) -> float:
    """A round scale-bar length (1, 2 or 5 x 10^n) near a fifth of `length`."""
    target = length / 5
    p = 10 ** math.floor(math.log10(target))
    for m in (5, 2, 1):
        if m * p <= target:
            return m * p
    return p
