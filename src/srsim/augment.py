"""The octahedral group O_h (48 elements) acting on periodic displacement fields, for data augmentation.

An element g = (perm, signs) maps a point p of the periodic box to p' with p'_a = signs[a] * p[perm[a]]
(mod box): a permutation of the axes combined with reflections through the origin. Reflections through
the *origin* (not through the box centre) map the LR lattice (points i) and the HR lattice (points i / s)
into themselves consistently, so LR and HR fields stay aligned (HR sample s*i <-> LR sample i).

On a displacement field d (3, N, N, N), g acts as d'(q') = R d(R^-1 q'): the value at new lattice index
I is R applied to the vector at old index (R^-1 I) mod N, i.e. component a of the new vector is
signs[a] * component perm[a] of the old one. Scalar fields (densities, IDs) move the same way without the
component mixing.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple, Sequence

import numpy as np

from srsim.fields import read_periodic

__all__ = ["Element", "ELEMENTS", "IDENTITY", "compose", "inverse", "transform_field", "transform_positions",
           "transformed_block"]


class Element(NamedTuple):
    """perm: new axis a takes old axis perm[a]; signs: +1 or -1 per new axis."""
    perm: tuple[int, int, int]
    signs: tuple[int, int, int]

    def matrix(self) -> np.ndarray:
        """3x3 integer matrix R with p' = R p."""
        m = np.zeros((3, 3), dtype=int)
        for a in range(3):
            m[a, self.perm[a]] = self.signs[a]
        return m


ELEMENTS: tuple[Element, ...] = tuple(
    Element(tuple(p), tuple(s)) for p in itertools.permutations(range(3))
    for s in itertools.product((1, -1), repeat=3))
IDENTITY = Element((0, 1, 2), (1, 1, 1))


def _from_matrix(m: np.ndarray) -> Element:
    perm = tuple(int(np.flatnonzero(m[a])[0]) for a in range(3))
    signs = tuple(int(m[a, perm[a]]) for a in range(3))
    return Element(perm, signs)


def compose(g: Element, h: Element) -> Element:
    """The element g o h (apply h first, then g)."""
    return _from_matrix(g.matrix() @ h.matrix())


def inverse(g: Element) -> Element:
    return _from_matrix(g.matrix().T)


def transform_positions(pos: np.ndarray, g: Element, box_size: float) -> np.ndarray:
    """Apply g to particle positions (n, 3) in [0, box) (any unit); returns (n, 3) wrapped into [0, box)."""
    pos = np.asarray(pos)
    out = pos[:, list(g.perm)] * np.asarray(g.signs, dtype=pos.dtype)
    return np.mod(out, box_size)


def _old_indices(g: Element, starts: Sequence[int], size: int, n: int) -> list[tuple[int, bool]]:
    """For each OLD axis b: (first index, reversed?) of the contiguous periodic run that the new-frame block
    [starts, starts + size) needs."""
    runs = [None] * 3
    for a in range(3):
        b = g.perm[a]
        if g.signs[a] > 0:
            runs[b] = (int(starts[a]) % n, False)
        else:
            # old indices -(s + k) for k = 0..size-1, i.e. the run starting at -(s + size - 1), reversed
            runs[b] = ((-(int(starts[a]) + size - 1)) % n, True)
    return runs


def transformed_block(field, g: Element, starts: Sequence[int], size: int, vector: bool = True) -> np.ndarray:
    """Block [starts, starts + size)^3 of the transformed periodic field g(field), read from ``field``.

    Args:
        field: (C, N, N, N) array or h5py dataset; C = 3 with vector=True (displacement components).
        g: group element.
        starts: (3,) first index of the block in the transformed frame (any integers; periodic).
        size: block side.
        vector: mix and negate components as a vector field; False for scalar fields.

    Returns:
        (C, size, size, size) float32 array.
    """
    n = field.shape[1]
    runs = _old_indices(g, starts, size, n)
    block = read_periodic(field, [r[0] for r in runs], size)
    flips = [1 + b for b in range(3) if runs[b][1]]
    if flips:
        block = np.flip(block, axis=flips)
    block = block.transpose(0, 1 + g.perm[0], 1 + g.perm[1], 1 + g.perm[2])
    if vector:
        if block.shape[0] != 3:
            raise ValueError(f"transformed_block: a vector field needs 3 components, got {block.shape[0]}")
        block = block[list(g.perm)] * np.asarray(g.signs, dtype=np.float32)[:, None, None, None]
    return np.ascontiguousarray(block, dtype=np.float32)


def transform_field(field, g: Element, vector: bool = True) -> np.ndarray:
    """The whole transformed periodic field g(field), (C, N, N, N) -> (C, N, N, N)."""
    return transformed_block(field, g, (0, 0, 0), field.shape[1], vector=vector)
