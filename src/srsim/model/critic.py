"""The WGAN critic (paper Fig. 8) and its conditional input.

First block: 1^3 conv + act. Then one residual block per entry of ``widths`` after the first (1^3 skip +
two 3^3 convs, summed, 2x linear downsampling). Last block: 1^3 conv doubling the channels, act, 1^3 conv
to one channel. The score of a sample is the mean of the final map (a fully convolutional critic on a crop).

Conditional input (8 channels, all on the HR lattice of the crop):
    [0:3] SR or HR displacement (normalised)
    [3:6] LR displacement trilinearly interpolated onto the HR lattice (normalised)
    [6]   density of the SR/HR particles painted by a differentiable CIC (Lagrangian -> Eulerian), as the
          channel ``srsim.model.scaling.density_channel`` makes of it (log((1 + rho) / 2) by default)
    [7]   density of the interpolated-LR particles, painted and transformed the same way
Channels [0:3] and [6] are the sample ("i" in paper Eq. 3); [3:6] and [7] are the condition.

A six-channel model (displacement + velocity, ``model.channels: 6``) has 14: the sample's 6 channels, the
condition's 6, then the two densities; densities are always painted from the displacement part ([:3]).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from srsim.model.lag2eul import lag2eul_density
from srsim.model.layers import ResBlock, act
from srsim.model.scaling import density_channel

__all__ = ["Critic", "critic_sample", "critic_condition", "critic_channels", "CRITIC_CHANNELS"]

CRITIC_CHANNELS = 8


def critic_channels(channels: int) -> int:
    """Critic input channels for a generator of `channels` (3 -> 8, 6 -> 14): sample, condition, 2 densities."""
    return 2 * int(channels) + 2


class Critic(nn.Module):
    """Conditional critic: (B, in_channels, m, m, m) -> (B,) scores.

    Args:
        widths: channels at the HR level and after each residual block (paper 64, 128, 256, 512).
        in_channels: 8, or 14 for six-channel models (``critic_channels``; see the module docstring).
    """

    def __init__(self, widths: Sequence[int] = (64, 128, 256, 512), in_channels: int = CRITIC_CHANNELS):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if len(widths) < 2 or min(widths) < 1:
            raise ValueError(f"Critic: widths must hold >= 2 positive channel counts, got {widths}")
        self.widths = widths
        self.in_channels = in_channels
        self.block0 = nn.Sequential(nn.Conv3d(in_channels, widths[0], 1), act())
        self.blocks = nn.Sequential(*(ResBlock(widths[i], widths[i + 1]) for i in range(len(widths) - 1)))
        self.head = nn.Sequential(nn.Conv3d(widths[-1], 2 * widths[-1], 1), act(),
                                  nn.Conv3d(2 * widths[-1], 1, 1))

    def hyperparameters(self) -> dict:
        return {"widths": list(self.widths), "in_channels": self.in_channels}

    def output_size(self, m: int) -> int:
        """Side of the final score map for an input of side m (< 1 means the input is too small)."""
        for _ in range(len(self.widths) - 1):
            m = (m - 4) // 2
        return m

    def min_input_size(self) -> int:
        m = 1
        for _ in range(len(self.widths) - 1):
            m = 2 * m + 4
        return m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f"Critic: input must be (B, {self.in_channels}, m, m, m), got {tuple(x.shape)}")
        if self.output_size(x.shape[-1]) < 1:
            raise ValueError(f"Critic: input side {x.shape[-1]} is below the minimum {self.min_input_size()} "
                             f"for {len(self.widths) - 1} residual blocks")
        return self.head(self.blocks(self.block0(x))).mean(dim=(1, 2, 3, 4))


def critic_condition(lr_hr: torch.Tensor, disp_to_cells: float,
                     density: str = "log1p") -> tuple[torch.Tensor, torch.Tensor]:
    """The condition channels [3:6] + [7] and the common shift used to paint densities.

    lr_hr: (B, C, m, m, m) normalised LR fields interpolated onto the HR lattice of the crop (C = 3, or 6
        with the velocity after the displacement; the density is painted from the displacement [:3]).
    disp_to_cells: HR mesh cells per normalised displacement unit (disp_scale * n_hr / box_size).
    density: the density channel's transform (``srsim.model.scaling.DENSITY_KINDS``).
    Returns (cond (B, C + 1, m, m, m), shift (B, 3) in HR cells, detached): the mean interpolated-LR
    displacement, removed from every painted field of the sample so that fewer particles leave the crop
    and SR, HR and LR are painted in the same frame.
    """
    disp = lr_hr[:, :3]
    shift = (disp.detach().float().mean(dim=(2, 3, 4)) * disp_to_cells)
    rho = lag2eul_density(disp, None, disp_to_cells=disp_to_cells, shift=shift)
    return torch.cat([lr_hr, density_channel(rho, density).to(lr_hr.dtype)], dim=1), shift


def critic_sample(disp: torch.Tensor, shift: torch.Tensor, disp_to_cells: float,
                  density: str = "log1p") -> torch.Tensor:
    """The sample channels [0:3] + [6]: displacement and its CIC density channel (differentiable).

    disp: (B, C, m, m, m), C = 3 or 6 (velocity after displacement; painted from [:3]) -> (B, C + 1, ...)."""
    rho = lag2eul_density(disp[:, :3], None, disp_to_cells=disp_to_cells, shift=shift)
    return torch.cat([disp, density_channel(rho, density).to(disp.dtype)], dim=1)


def assemble(sample: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """Order the critic channels: sample fields, LR fields, sample density, LR density (each density last)."""
    return torch.cat([sample[:, :-1], cond[:, :-1], sample[:, -1:], cond[:, -1:]], dim=1)
