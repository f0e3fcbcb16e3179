"""Building blocks shared by the generator and the critic (paper Figs. 7, 8).

Grid convention. A displacement field is sampled at Lagrangian lattice *points*: LR sample ``i`` sits at
``i`` LR cells, HR sample ``J`` at ``J / s`` LR cells (s = SR factor), so HR sample ``s*i`` and LR sample
``i`` describe particles at the same Lagrangian position. All resampling here is *vertex-aligned* linear
interpolation on that lattice. (map2map uses cell-centred ``align_corners=False`` interpolation, which
shifts the HR output by (s - 1) / 2 HR cells relative to the HR particles and is not consistent with
reflections of the lattice; the networks then have to learn that shift.)

All convolutions are unpadded (valid), so every layer is exactly translation-equivariant on the lattice.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["narrow", "up2", "interp_up", "lr_to_hr", "down2", "NoiseInjection", "ResBlock", "act"]

NEG_SLOPE = 0.2


def act() -> nn.Module:
    """The activation of every block: Leaky ReLU with slope 0.2 for negative values."""
    return nn.LeakyReLU(NEG_SLOPE)


def narrow(x: torch.Tensor, k: int) -> torch.Tensor:
    """Drop k voxels from both ends of the three spatial axes of a (B, C, D, H, W) tensor."""
    if k == 0:
        return x
    return x[..., k:-k, k:-k, k:-k]


def interp_up(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Vertex-aligned trilinear upsampling: (B, C, m, m, m) -> (B, C, f(m-1)+1, ...).

    Output sample q lies at input coordinate q / f, so every output is an exact interpolation between
    input samples (no extrapolation at the edges). ``factor`` must be a power of two so that the
    interpolation weights are exact in floating point.
    """
    if factor & (factor - 1) or factor < 1:
        raise ValueError(f"interp_up: factor must be a power of 2, got {factor}")
    if factor == 1:
        return x
    size = [factor * (s - 1) + 1 for s in x.shape[2:]]
    return F.interpolate(x, size=size, mode="trilinear", align_corners=True)


def up2(x: torch.Tensor) -> torch.Tensor:
    """The generator's 2x upsampling: (B, C, m, m, m) -> (B, C, 2m-2, ...).

    Vertex-aligned interpolation to the half-integer lattice, dropping the first output sample (a copy of
    x[0]) so that sizes follow the paper (20 -> 34 -> 62 -> 118 with the convolutions): output sample q
    lies at input coordinate (q + 1) / 2.
    """
    return interp_up(x, 2)[..., 1:, 1:, 1:]


def lr_to_hr(x: torch.Tensor, scale: int, pad: int) -> torch.Tensor:
    """Trilinear interpolation of a padded LR crop onto the HR lattice of its inner region.

    x: (B, C, n+2*pad, ...) LR crop whose sample 0 is LR cell o. Returns (B, C, scale*n, ...) whose sample
    0 is HR cell scale*(o+pad), i.e. exactly aligned with the generator output and the HR target.
    """
    n = x.shape[-1] - 2 * pad
    # only the samples pad .. pad+n (inclusive) are needed
    core = x[..., pad:pad + n + 1, pad:pad + n + 1, pad:pad + n + 1]
    return interp_up(core, scale)[..., :scale * n, :scale * n, :scale * n]


def down2(x: torch.Tensor) -> torch.Tensor:
    """2x downsampling by linear interpolation at the midpoints of sample pairs (= 2^3 averaging).

    (B, C, m, m, m) -> (B, C, m // 2, ...); an odd trailing sample is dropped.
    """
    return F.avg_pool3d(x, 2)


class NoiseInjection(nn.Module):
    """Add a noise field with a learnable amplitude per channel (StyleGAN2-style).

    One standard-normal field per layer (B, 1, D, H, W), made by ``srsim.model.noise.position_noise`` from
    the seed and global voxel positions, is shared by all channels and scaled by ``std`` (C,). ``std`` is
    initialised to zero, so training starts from a deterministic network and learns how much stochasticity
    each channel needs.
    """

    def __init__(self, channels: int, layer: int):
        super().__init__()
        self.layer = layer
        self.std = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return x + self.std.to(x.dtype).view(1, -1, 1, 1, 1) * noise.to(x.dtype)


class ResBlock(nn.Module):
    """Critic residual block (Fig. 8b): 1^3 skip + (3^3 conv, act, 3^3 conv, act), summed, then 2x down.

    (B, c_in, m, ...) -> (B, c_out, (m - 4) // 2, ...).
    """

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.skip = nn.Conv3d(c_in, c_out, 1)
        self.conv1 = nn.Conv3d(c_in, c_in, 3)
        self.conv2 = nn.Conv3d(c_in, c_out, 3)
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.conv2(self.act(self.conv1(x))))
        return down2(narrow(self.skip(x), 2) + y)
