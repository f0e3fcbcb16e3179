"""Synthetic inputs shared by the test suite and the benchmarks (no data files, no simulation needed)."""

from __future__ import annotations

import numpy as np

__all__ = ["clustered"]


def clustered(n_side: int, box: float, seed: int = 0, halo_fraction: float = 0.6, per_halo: int = 150,
              ids: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Halo-like particles for FOF: Gaussian blobs plus a uniform background.

    ``halo_fraction`` of the n_side^3 particles fall in about n_side^3 / per_halo blobs with a power-law
    (Pareto) abundance, centred anywhere (so some straddle the box edge) and dense enough to percolate at
    b = 0.2; the rest are uniform. Returns (positions (n_side^3, 3) float64 Mpc/h in [0, box), IDs
    (n_side^3,) uint64, a random permutation of 1..n_side^3, or None with ids=False to save memory).
    """
    rng = np.random.default_rng(seed)
    n = n_side**3
    nh = int(n * halo_fraction)
    nhalo = max(1, n // per_halo)
    weights = rng.pareto(1.2, nhalo) + 1.0
    counts = rng.multinomial(nh, weights / weights.sum())
    centres = rng.uniform(0, box, (nhalo, 3))
    sigma = 0.035 * box / n_side * np.cbrt(np.maximum(counts, 1))
    pos = np.empty((n, 3))  # filled in place: large benchmark boxes would not afford a concatenated copy
    at = 0
    for c, s, m in zip(centres, sigma, counts):
        pos[at:at + m] = c + rng.normal(0.0, s, (m, 3))
        at += m
    pos[nh:] = rng.uniform(0, box, (n - nh, 3))
    np.mod(pos, box, out=pos)
    pos[pos >= box] = 0.0
    return pos, (rng.permutation(n).astype(np.uint64) + 1 if ids else None)
