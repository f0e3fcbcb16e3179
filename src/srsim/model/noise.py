"""Position-keyed white noise: a counter-based hash of (seed, layer, global voxel index), not a stateful RNG.

The generator injects noise at every resolution level. Drawing it from a stateful RNG (as map2map does)
makes the output depend on how the box is cut into chunks. Here the noise at a voxel is a pure function of
the noise seed, the layer index and the voxel's global index on that layer's grid (wrapped periodically),
so a box generated in chunks equals the box generated whole, and a crop seen during training gets the
same noise wherever it is evaluated.

Hash: a chain of 32-bit avalanche mixes (the "lowbias32" xor-shift-multiply finaliser) over the inputs.
Everything is done with int64 tensors holding values in [0, 2^32), and the 32-bit products are split into
16-bit halves so that no intermediate exceeds 2^49: no signed overflow, hence bit-identical on every
device and backend. Two hashes per voxel give a standard normal by the Box-Muller transform, evaluated in
float64 and rounded to float32 (the integers are identical everywhere; the normals agree to float32
rounding).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

__all__ = ["hash32", "mix32", "uniform_bits", "position_noise"]

_M32 = 0xFFFFFFFF
_C1 = 0x7FEB352D
_C2 = 0x846CA68B
# Distinct stream constants: the two uniforms of Box-Muller and the seed halves.
_S_SEED = 0x9E3779B9
_S_U1 = 0x68E31DA4
_S_U2 = 0xB5297A4D
_S_CHAIN2 = 0x1B873593


def _mul32(a, c: int):
    """(a * c) mod 2^32 for 0 <= a < 2^32 (int or int64 tensor) without exceeding 2^49."""
    c_lo, c_hi = c & 0xFFFF, c >> 16
    return (a * c_lo + (((a * c_hi) & 0xFFFF) << 16)) & _M32


def mix32(x):
    """Bijective 32-bit avalanche mix of x in [0, 2^32) (Python int or int64 tensor)."""
    x = x ^ (x >> 16)
    x = _mul32(x, _C1)
    x = x ^ (x >> 15)
    x = _mul32(x, _C2)
    x = x ^ (x >> 16)
    return x


def hash32(*values) -> int:
    """Chain-hash Python integers (any size, any sign) to one 32-bit integer."""
    h = _S_SEED
    for v in values:
        v = int(v)
        # feed 32-bit limbs of the two's-complement value so large and negative ints are covered
        v &= (1 << 64) - 1
        h = mix32(h ^ (v & _M32))
        h = mix32(h ^ (v >> 32))
    return h


def uniform_bits(prefix: int, i: torch.Tensor, j: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independent 32-bit hashes (int64 tensors, values in [0, 2^32)) on the grid i x j x k.

    i, j, k: 1-D int64 tensors of non-negative voxel indices (< 2^31); prefix: 32-bit int (seed, layer).
    Returns two (len(i), len(j), len(k)) tensors.

    Separable chaining keeps the cost low, but a chain carries only 32 bits from one axis to the next:
    two i-planes whose chain states differ only in the low bits that j spans become the same plane,
    shuffled in j (about 25 pairs per layer on a 5120^3 grid), and likewise for rows along k. A second
    chain in the opposite axis order, with its own prefix, has its coincidences on other axes; the XOR of
    the two has none in practice.
    """
    forward = mix32(mix32(mix32(i ^ prefix)[:, None] ^ j[None, :])[:, :, None] ^ k[None, None, :])
    prefix2 = mix32(prefix ^ _S_CHAIN2)
    backward = mix32(mix32(mix32(k ^ prefix2)[None, :] ^ j[:, None])[None, :, :] ^ i[:, None, None])
    h = forward ^ backward
    return mix32(h ^ _S_U1), mix32(h ^ _S_U2)


def position_noise(seed: int, layer: int, origin: Sequence[int], shape: Sequence[int],
                   period: Sequence[int] | None, device=None) -> torch.Tensor:
    """Standard-normal noise on a block of a (periodic) grid, keyed by global voxel index.

    Args:
        seed: noise seed (any Python int).
        layer: noise-layer index inside the network.
        origin: (3,) global grid index of the block's first voxel on this layer's grid (may be negative).
        shape: (3,) block shape.
        period: (3,) grid cells per side of the periodic box on this layer's grid (indices wrap modulo it),
            or None for an unwrapped infinite grid.
        device: torch device of the result.

    Returns:
        (shape) float32 tensor of independent N(0, 1) values; the value at a voxel depends only on
        (seed, layer, global index mod period).
    """
    prefix = hash32(seed, layer)
    idx = []
    for a in range(3):
        r = torch.arange(int(shape[a]), dtype=torch.int64, device=device) + int(origin[a])
        if period is not None:
            r = torch.remainder(r, int(period[a]))
        elif int(origin[a]) < 0:
            r = r & _M32  # unwrapped negative indices: use their 32-bit pattern
        idx.append(r)
    b1, b2 = uniform_bits(prefix, *idx)
    u1 = (b1.double() + 1.0) * (1.0 / 4294967296.0)  # (0, 1]: log is finite
    u2 = b2.double() * (2.0 * math.pi / 4294967296.0)
    z = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(u2)
    return z.float()
