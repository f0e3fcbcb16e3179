"""The super-resolution generator (paper Fig. 7): a StyleGAN2-like ladder, 2x per rung.

Left rail (latent features):   1^3 conv + act, then per rung
    noise -> 2x linear upsample -> 3^3 conv -> act -> noise -> 3^3 conv -> act
Right rail (3 output channels): starts as the LR input; per rung it is linearly upsampled 2x and the
    1^3 projection of the rung's features is added.

Sizes (paper, 3 rungs, widths 512 -> 256 -> 128 -> 64): input 3 x 20^3 (14^3 + 3 cells of periodic
padding per side) -> 34^3 -> 62^3 -> 118^3, cropped to the 112^3 HR cells of the unpadded 14^3 region.

Geometry bookkeeping: ``start`` is the global index (on the current level's grid, relative to
``2^level * offset``) of the first sample of the current tensors. up2 maps start -> 2*start + 1, each
unpadded 3^3 convolution start -> start + 1. The final crop aligns output sample 0 with HR cell
``scale * (offset + pad)``. Noise is keyed on the same global indices, wrapped modulo the box size on that
level, so chunked and whole-box outputs agree.
"""

from __future__ import annotations

import numbers
from typing import Sequence

import torch
import torch.nn as nn

from srsim.model.layers import NoiseInjection, act, narrow, up2
from srsim.model.noise import position_noise

__all__ = ["Generator", "generator_geometry"]


def generator_geometry(levels: int) -> tuple[int, int]:
    """(start, pad) for a ladder of ``levels`` rungs.

    start: global HR index of the uncropped output's first sample relative to scale*offset;
    pad: smallest LR padding per side so that the output covers the unpadded region's HR cells.
    """
    start = 0
    for _ in range(levels):
        start = 2 * start + 1 + 2
    scale = 2 ** levels
    pad = -(-start // scale)
    return start, pad


class _Rung(nn.Module):
    def __init__(self, c_in: int, c_out: int, out_channels: int, layer: int, noise: bool):
        super().__init__()
        self.noise1 = NoiseInjection(c_in, layer) if noise else None
        self.conv1 = nn.Conv3d(c_in, c_out, 3)
        self.noise2 = NoiseInjection(c_out, layer + 1) if noise else None
        self.conv2 = nn.Conv3d(c_out, c_out, 3)
        self.proj = nn.Conv3d(c_out, out_channels, 1)
        # Zero output projections: an untrained generator returns exactly the trilinearly upsampled LR
        # input (the trivial predictor), so training starts from it instead of from random features that
        # are worse than upsampling. The gradient reaches the projection at once (the features are not zero).
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        self.act = act()


class Generator(nn.Module):
    """LR displacement crop -> HR displacement crop, ``scale = 2 ** (len(widths) - 1)`` per axis.

    Args:
        widths: channels of the latent rail at the input level and after each 2x rung.
        in_channels, out_channels: 3 (displacement components); the output rail starts from the input,
            so they must be equal.
        noise: inject position-keyed noise (learnable amplitudes) before each 3^3 convolution.
    """

    def __init__(self, widths: Sequence[int] = (512, 256, 128, 64), in_channels: int = 3,
                 out_channels: int = 3, noise: bool = True):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if len(widths) < 2 or min(widths) < 1:
            raise ValueError(f"Generator: widths must hold >= 2 positive channel counts, got {widths}")
        if in_channels != out_channels:
            raise ValueError("Generator: the output rail starts from the input, so in_channels must equal "
                             f"out_channels (got {in_channels}, {out_channels})")
        self.widths = widths
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.noise = bool(noise)
        self.levels = len(widths) - 1
        self.scale = 2 ** self.levels
        self._start, self.pad = generator_geometry(self.levels)
        self.crop = self.scale * self.pad - self._start  # HR samples cut from each side of the output
        self.block0 = nn.Sequential(nn.Conv3d(in_channels, widths[0], 1), act())
        self.rungs = nn.ModuleList(
            _Rung(widths[r], widths[r + 1], out_channels, 2 * r, self.noise) for r in range(self.levels))
        self._compiled_ladder = None

    def hyperparameters(self) -> dict:
        return {"widths": list(self.widths), "in_channels": self.in_channels,
                "out_channels": self.out_channels, "noise": self.noise}

    def output_size(self, n: int) -> int:
        """HR samples per side returned for an LR crop of n unpadded cells (= scale * n)."""
        return self.scale * n

    def forward(self, x: torch.Tensor, offset: torch.Tensor | None = None, seed=0,
                box_cells: Sequence[int] | None = None) -> torch.Tensor:
        """Super-resolve a padded LR crop.

        Args:
            x: (B, 3, n+2*pad, n+2*pad, n+2*pad) normalised LR displacement including the periodic padding.
            offset: (B, 3) int64 global LR cell index of x[..., 0, 0, 0] (may be negative; wrapped modulo
                box_cells). None = zeros.
            seed: noise seed, an int or a sequence of B ints (one per sample).
            box_cells: (3,) LR cells per side of the whole periodic box (noise indices wrap modulo
                box_cells * 2^level), or None for no wrapping.

        Returns:
            (B, 3, scale*n, scale*n, scale*n): out[..., 0, 0, 0] is HR global cell scale*(offset + pad).
        """
        if x.dim() != 5 or x.shape[1] != self.in_channels or not (x.shape[2] == x.shape[3] == x.shape[4]):
            raise ValueError(f"Generator: input must be (B, {self.in_channels}, m, m, m), got {tuple(x.shape)}")
        if x.shape[-1] - 2 * self.pad < 1:
            raise ValueError(f"Generator: input side {x.shape[-1]} leaves no cells inside the padding of {self.pad}")
        noises = self.make_noise(x.shape, offset, seed, box_cells) if self.noise else []
        ladder = self._compiled_ladder if self._compiled_ladder is not None else self.ladder
        return ladder(x, noises)

    def compile_ladder(self, **kwargs) -> None:
        """torch.compile the network body (``ladder``); the noise, which depends on Python-side offsets and
        seeds, stays eager, so changing offsets and seeds never triggers recompilation."""
        self._compiled_ladder = torch.compile(self.ladder, **kwargs)

    def noise_shapes(self, m: int) -> list[tuple[int, int]]:
        """(side, start) of every noise layer for an input of side m (start: global index of sample 0
        relative to 2^level * offset, on that layer's grid)."""
        out, start = [], 0
        for _ in range(self.levels):
            out.append((m, start))
            m, start = 2 * m - 2, 2 * start + 1
            m, start = m - 2, start + 1
            out.append((m, start))
            m, start = m - 2, start + 1
        return out

    def make_noise(self, shape, offset, seed, box_cells) -> list[torch.Tensor]:
        """The standard-normal noise fields (B, 1, s, s, s) of every noise layer, float32, position-keyed."""
        B, m = shape[0], shape[-1]
        if offset is None:
            offset = torch.zeros(B, 3, dtype=torch.int64)
        offset = torch.as_tensor(offset, dtype=torch.int64).cpu().reshape(B, 3)
        seeds = [int(seed)] * B if isinstance(seed, numbers.Integral) else [int(s) for s in seed]
        if len(seeds) != B:
            raise ValueError(f"Generator: {len(seeds)} seeds for a batch of {B}")
        box = None if box_cells is None else [int(c) for c in box_cells]
        device = self.block0[0].weight.device
        out = []
        for layer, (side, start) in enumerate(self.noise_shapes(m)):
            f = 2 ** ((layer + 1) // 2)  # resolution factor of this layer's grid
            period = None if box is None else [c * f for c in box]
            origins = offset * f + start
            out.append(torch.stack([position_noise(seeds[b], layer, origins[b].tolist(), (side,) * 3, period,
                                                   device=device) for b in range(B)])[:, None])
        return out

    def ladder(self, x: torch.Tensor, noises: Sequence[torch.Tensor]) -> torch.Tensor:
        """The network body: padded LR crop and precomputed noise fields -> cropped SR crop."""
        y = x
        h = self.block0(x)
        for r, rung in enumerate(self.rungs):
            if self.noise:
                h = rung.noise1(h, noises[2 * r])
            h = rung.act(rung.conv1(up2(h)))
            if self.noise:
                h = rung.noise2(h, noises[2 * r + 1])
            h = rung.act(rung.conv2(h))
            y = narrow(up2(y), 2) + rung.proj(h)
        return narrow(y, self.crop)
