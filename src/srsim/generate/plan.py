"""How a region of the LR box is cut into chunks: cubic generator windows and the cells each one keeps.

The LR grid has ``n_lr`` cells per side; the SR grid ``n_hr = scale * n_lr``. A *region* (the whole box by
default) is a periodic box of LR cells ``origin + [0, extent)``. It is tiled by cubic windows of ``size``
LR cells; where ``size`` does not divide the extent, the last window of an axis is shifted back to end at
the region's edge and keeps only the cells not yet covered, so every window has the same shape (batched
generator calls, one compiled kernel shape). Particles are stored chunk after chunk, so each chunk also
knows its first particle slot in the output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from srsim.errors import SrsimError

__all__ = ["Chunk", "Plan", "axis_windows", "plan_chunks", "region_from_cells", "region_from_centre",
           "region_from_mpc"]


@dataclass(frozen=True)
class Chunk:
    """One generator window and the cells it contributes.

    window: global LR cell (unwrapped, may exceed n) of the window's first cell;
    lo, hi: the kept cells along each axis, relative to the window (LR cells);
    local: the kept block's first cell relative to the region origin (LR cells);
    start: first particle slot of the block in the output (particles are stored chunk after chunk).
    """

    index: int
    window: tuple[int, int, int]
    lo: tuple[int, int, int]
    hi: tuple[int, int, int]
    local: tuple[int, int, int]
    start: int

    @property
    def shape(self) -> tuple[int, int, int]:
        """Kept LR cells per axis."""
        return tuple(h - l for l, h in zip(self.lo, self.hi))

    @property
    def cells(self) -> int:
        return int(np.prod(self.shape))


@dataclass(frozen=True)
class Plan:
    """How a region of the LR box is cut into chunks (see the module docstring)."""

    n_lr: int  #: LR cells per side of the whole box
    scale: int  #: SR factor per axis
    pad: int  #: LR cells of periodic context per side
    size: int  #: window side, LR cells
    origin: tuple[int, int, int]  #: region's first LR cell, in [0, n_lr)
    extent: tuple[int, int, int]  #: region's LR cells per axis, in [1, n_lr]
    chunks: tuple[Chunk, ...]

    @property
    def n_hr(self) -> int:
        return self.scale * self.n_lr

    @property
    def n_particles(self) -> int:
        return int(np.prod(self.extent)) * self.scale**3

    @property
    def full_box(self) -> bool:
        return self.extent == (self.n_lr,) * 3

    def particles(self, chunk: Chunk) -> int:
        """SR particles of the chunk's kept cells."""
        return chunk.cells * self.scale**3

    def kept(self, chunk: Chunk, sr):
        """The chunk's own cells of the SR output of its window: (C, scale*size, ...) -> (C, scale*a, ...).

        sr: array or tensor over the window's SR cells (padding already dropped by the generator); returns a
        view of the kept block, whose first cell is SR cell scale * (window + lo).
        """
        s = self.scale
        return sr[:, s * chunk.lo[0]:s * chunk.hi[0], s * chunk.lo[1]:s * chunk.hi[1], s * chunk.lo[2]:s * chunk.hi[2]]

    def job_chunks(self, job: int, jobs: int) -> list[Chunk]:
        """The contiguous share of the chunks that job `job` of `jobs` generates."""
        if not (jobs >= 1 and 0 <= job < jobs):
            raise SrsimError(f"generate: job {job} of {jobs} is not a valid job index (0 <= job < jobs)")
        m = len(self.chunks)
        return list(self.chunks[job * m // jobs:(job + 1) * m // jobs])

    def describe(self) -> dict:
        return {"n_lr": self.n_lr, "scale": self.scale, "pad": self.pad, "size": self.size,
                "origin": list(self.origin), "extent": list(self.extent), "n_chunks": len(self.chunks),
                "n_particles": self.n_particles}


def axis_windows(extent: int, size: int) -> list[tuple[int, int, int]]:
    """Windows along one axis: [(window start, kept lo, kept hi)], starts relative to the region origin.

    Windows of `size` cells tile [0, extent); the last one is shifted back to end at `extent` (keeping only
    new cells) when `size` does not divide `extent`; if extent < size the single window overhangs the end.
    """
    if extent <= size:
        return [(0, 0, extent)]
    out = []
    for k in range(0, extent, size):
        w = min(k, extent - size)
        out.append((w, k - w, min(k + size, extent) - w))
    return out


def plan_chunks(n_lr: int, size: int, scale: int, pad: int,
                region: tuple[Sequence[int], Sequence[int]] | None = None) -> Plan:
    """Cut a region (origin, extent) of an n_lr^3 periodic LR box (default: the whole box) into chunks.

    size: window side in LR cells (clamped to the largest extent). Chunks are in C order of the window grid.
    """
    if region is None:
        origin, extent = (0, 0, 0), (n_lr,) * 3
    else:
        origin = tuple(int(o) % n_lr for o in region[0])
        extent = tuple(int(e) for e in region[1])
    if len(origin) != 3 or len(extent) != 3 or not all(1 <= e <= n_lr for e in extent):
        raise SrsimError(f"generate: region extent {extent} must hold 3 values in [1, {n_lr}] LR cells")
    if size < 1:
        raise SrsimError(f"generate: chunk size must be >= 1 LR cell, got {size}")
    size = min(int(size), max(extent))
    axes = [axis_windows(e, size) for e in extent]
    chunks = []
    start = 0
    for wi in axes[0]:
        for wj in axes[1]:
            for wk in axes[2]:
                ws = (wi, wj, wk)
                window = tuple(origin[a] + ws[a][0] for a in range(3))
                lo = tuple(w[1] for w in ws)
                hi = tuple(w[2] for w in ws)
                local = tuple(w[0] + w[1] for w in ws)
                c = Chunk(len(chunks), window, lo, hi, local, start)
                chunks.append(c)
                start += c.cells * scale**3
    return Plan(n_lr, scale, pad, size, origin, extent, tuple(chunks))


def region_from_cells(lo: Sequence[int], hi: Sequence[int], n_lr: int) -> tuple[tuple, tuple]:
    """(origin, extent) of LR cells [lo, hi) per axis; lo may be negative and hi may exceed n (periodic)."""
    lo = [int(v) for v in lo]
    hi = [int(v) for v in hi]
    extent = [h - l for l, h in zip(lo, hi)]
    if len(lo) != 3 or len(hi) != 3 or not all(1 <= e <= n_lr for e in extent):
        raise SrsimError(f"generate: region [{lo}, {hi}) must span 1..{n_lr} LR cells on each axis")
    return tuple(l % n_lr for l in lo), tuple(extent)


def region_from_mpc(lo: Sequence[float], hi: Sequence[float], box_size: float, n_lr: int) -> tuple[tuple, tuple]:
    """(origin, extent) of the LR cells whose particles' Lagrangian positions cover [lo, hi) Mpc/h.

    The region is widened outward to whole LR cells; lo may be negative and hi may exceed the box. A span of
    at most the box that widens past it (not on cell edges) is the whole axis; a wider span is refused.
    """
    cell = box_size / n_lr
    eps = 1e-9
    lo_c = [math.floor(float(v) / cell + eps) for v in lo]
    hi_c = [math.ceil(float(v) / cell - eps) for v in hi]
    hi_c = [max(h, l + 1) for l, h in zip(lo_c, hi_c)]
    hi_c = [l + n_lr if h - l > n_lr and float(b) - float(a) <= box_size * (1 + eps) else h
            for a, b, l, h in zip(lo, hi, lo_c, hi_c)]
    return region_from_cells(lo_c, hi_c, n_lr)


def region_from_centre(centre: Sequence[float], size, box_size: float, n_lr: int) -> tuple[tuple, tuple]:
    """(origin, extent) of the LR cells of a cube (or box) of side ``size`` Mpc/h around ``centre`` Mpc/h.

    centre: 3 values in [0, box_size) Mpc/h; size: one side or 3 sides in (0, box_size] Mpc/h. The region is
    periodic (it may cross the box edge) and widened outward to whole LR cells, at most the whole box per axis.
    Raises SrsimError, naming the value, for a centre outside the box or a size that is not positive or larger
    than the box, so that a bad region fails before any output is written.
    """
    centre = [float(c) for c in np.atleast_1d(np.asarray(centre, dtype=float))]
    sizes = [float(s) for s in np.atleast_1d(np.asarray(size, dtype=float))]
    if len(sizes) == 1:
        sizes *= 3
    if len(centre) != 3 or len(sizes) != 3:
        raise SrsimError(f"region: centre {centre} needs 3 values and size {sizes} 1 or 3 (Mpc/h)")
    if not all(math.isfinite(c) and 0.0 <= c < box_size for c in centre):
        raise SrsimError(f"region: centre {centre} Mpc/h lies outside the box [0, {box_size}) Mpc/h")
    if not all(math.isfinite(s) and 0.0 < s <= box_size for s in sizes):
        raise SrsimError(f"region: size {sizes} Mpc/h must be > 0 and at most the box side {box_size} Mpc/h")
    return region_from_mpc([c - s / 2 for c, s in zip(centre, sizes)],
                           [c + s / 2 for c, s in zip(centre, sizes)], box_size, n_lr)
