"""Particles on a Lagrangian grid: IDs <-> grid cells, positions <-> displacements, periodic wrapping and
periodic block reads of grid fields.

Grid particle `(i, j, k)` of an N^3 grid has `ID = i*N^2 + j*N + k + 1` and Lagrangian position
`(i, j, k) * box_size / N`. Displacement fields are (3, N, N, N) arrays in Mpc/h, indexed
`disp[component, i, j, k]`, minimum-image wrapped into [-box/2, box/2).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from srsim.errors import SrsimError


def grid_ids(n: int, origin=(0, 0, 0), shape=None, n_total: int | None = None) -> np.ndarray:
    """IDs (uint64, C order) of the grid cells of a block of an `n_total`^3 grid.

    With only `n`: all n^3 IDs 1..n^3. With `origin` and `shape` (cells per axis) and `n_total`:
    the IDs of that sub-block, indices wrapped periodically.
    """
    if shape is None:
        shape = (n, n, n)
    N = n if n_total is None else n_total
    axes = [(np.arange(s, dtype=np.uint64) + np.uint64(o % N)) % np.uint64(N) for o, s in zip(origin, shape)]
    i, j, k = np.meshgrid(*axes, indexing="ij")
    return (i * np.uint64(N * N) + j * np.uint64(N) + k + np.uint64(1)).reshape(-1)


def ids_to_index(ids: np.ndarray, n: int, *, source: str = "particles") -> np.ndarray:
    """Flat grid index (ID - 1) of each particle, checking that the IDs are exactly 1..n^3 once each."""
    ids = np.asarray(ids)
    n3 = n**3
    if ids.shape != (n3,):
        raise SrsimError(f"{source}: {ids.size} particles, expected {n}^3 = {n3}")
    if ids.size and (ids.min() < 1 or ids.max() > n3):
        raise SrsimError(f"{source}: particle IDs span [{ids.min()}, {ids.max()}], expected [1, {n3}] on a {n}^3 grid")
    index = ids.astype(np.int64) - 1
    counts = np.bincount(index, minlength=n3)
    if np.any(counts != 1):
        dup = int(np.count_nonzero(counts > 1))
        missing = int(np.count_nonzero(counts == 0))
        raise SrsimError(f"{source}: particle IDs are not a permutation of 1..{n3}: {dup} duplicated, {missing} missing")
    return index


def grid_side(n_particles: int) -> int | None:
    """N such that N^3 == n_particles (particles per side of a grid simulation), else None."""
    n = round(n_particles ** (1 / 3))
    for m in (n - 1, n, n + 1):
        if m > 0 and m**3 == n_particles:
            return m
    return None


def cube_root(n_particles: int, *, source: str = "particles") -> int:
    """N such that N^3 == n_particles, else SrsimError."""
    n = grid_side(n_particles)
    if n is None:
        raise SrsimError(f"{source}: {n_particles} particles is not a cube N^3: not a grid simulation")
    return n


def periodic_runs(start: int, length: int, n: int) -> list[tuple[int, int, int]]:
    """Contiguous pieces of the periodic index range start..start+length-1 (mod n).

    Returns [(source start, source stop, destination start)]; two pieces when the range wraps once,
    more when it is longer than the box.
    """
    runs = []
    pos, s = 0, start % n
    while pos < length:
        m = min(length - pos, n - s)
        runs.append((s, s + m, pos))
        pos += m
        s = 0
    return runs


def read_periodic(source, origin: Sequence[int], size: int, n: int | None = None) -> np.ndarray:
    """A (C, size, size, size) float32 block of a periodic (C, n, n, n) field starting at cell `origin`.

    source: a numpy array or an h5py dataset (only the needed slabs are read: at most 8 pieces when the
    block wraps around once per axis, so a 640^3 HDF5 field is never loaded whole); origin: any integers
    (cells, wrapped mod n); n: cells per side, default source.shape[1].
    """
    n = int(source.shape[1]) if n is None else int(n)
    out = np.empty((source.shape[0], size, size, size), dtype=np.float32)
    ri, rj, rk = (periodic_runs(int(o), size, n) for o in origin)
    for i0, i1, di in ri:
        for j0, j1, dj in rj:
            for k0, k1, dk in rk:
                out[:, di:di + i1 - i0, dj:dj + j1 - j0, dk:dk + k1 - k0] = source[:, i0:i1, j0:j1, k0:k1]
    return out


def lagrangian_positions(n: int, box_size: float) -> np.ndarray:
    """(3, n, n, n) float64 Mpc/h: grid cell (i, j, k) sits at (i, j, k) * box_size / n."""
    q = np.arange(n, dtype=np.float64) * (box_size / n)
    return np.stack(np.meshgrid(q, q, q, indexing="ij"))


def minimum_image(d: np.ndarray, box_size: float) -> np.ndarray:
    """Wrap separations into [-box/2, box/2)."""
    half = 0.5 * box_size
    return np.mod(np.asarray(d) + half, box_size) - half


def wrap(pos: np.ndarray, box_size: float) -> np.ndarray:
    """Wrap positions into [0, box)."""
    out = np.mod(pos, box_size)
    out[out >= box_size] -= box_size  # mod of tiny negatives rounds to box
    return out


def positions_to_displacement(pos: np.ndarray, ids: np.ndarray, n: int, box_size: float, *,
                              source: str = "particles") -> np.ndarray:
    """Displacement field from particle positions.

    pos (n^3, 3) Mpc/h in any particle order, ids (n^3,) the grid IDs. Returns (3, n, n, n) float32
    Mpc/h, minimum-image wrapped. Raises SrsimError on missing/duplicate IDs or non-finite positions.
    """
    pos = np.asarray(pos, dtype=np.float64)
    if pos.shape != (n**3, 3):
        raise SrsimError(f"{source}: positions have shape {pos.shape}, expected ({n**3}, 3)")
    if not np.all(np.isfinite(pos)):
        raise SrsimError(f"{source}: positions contain NaN or inf")
    q = lagrangian_positions(n, box_size)
    disp = minimum_image(particles_to_grid(pos, ids, n, source=source) - q, box_size)
    return disp.astype(np.float32)


def particles_to_grid(values: np.ndarray, ids: np.ndarray, n: int, *, source: str = "particles") -> np.ndarray:
    """Per-particle vectors onto the Lagrangian grid by ID: values (n^3, C) in any particle order, ids (n^3,)
    the grid IDs -> (C, n, n, n) (not C-contiguous), same dtype and units, `out[:, i, j, k]` = the value of particle
    `ID = i*n^2 + j*n + k + 1`. Raises SrsimError on missing/duplicate IDs or a wrong shape."""
    values = np.asarray(values)
    if values.ndim != 2 or values.shape[0] != n**3:
        raise SrsimError(f"{source}: per-particle values have shape {values.shape}, expected ({n**3}, C)")
    index = ids_to_index(ids, n, source=source)
    ordered = np.empty_like(values)
    ordered[index] = values
    return ordered.T.reshape(values.shape[1], n, n, n)  # a view of `ordered`: no second copy of a large box


def displacement_to_positions(disp: np.ndarray, box_size: float, origin=(0, 0, 0),
                              n_total: int | None = None) -> np.ndarray:
    """Particle positions (m, 3) float64 Mpc/h in [0, box), in the C order of the grid block.

    disp (3, a, b, c) Mpc/h is a block of an `n_total`^3 grid (default: the whole grid, a = b = c)
    whose first cell is global index `origin`; the IDs of the returned particles are
    `grid_ids(..., origin, (a, b, c), n_total)`.
    """
    disp = np.asarray(disp)
    shape = disp.shape[1:]
    N = shape[0] if n_total is None else n_total
    cell = box_size / N
    axes = [(np.arange(s) + o) * cell for o, s in zip(origin, shape)]
    q = np.stack(np.meshgrid(*axes, indexing="ij"))
    pos = (q + disp.astype(np.float64)).reshape(3, -1).T
    return wrap(pos, box_size)
