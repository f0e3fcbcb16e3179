"""Loss functions: supervised L2 (paper Eq. 2) and WGAN-gp (paper Eq. 3).

Sign conventions: the critic minimises ``D(fake) - D(real) + penalty``; the generator minimises
``-D(fake)``. The Wasserstein-distance estimate logged during training is ``D(real) - D(fake)``.
"""

from __future__ import annotations

from typing import Callable

import torch

__all__ = ["l2_loss", "critic_wgan_loss", "generator_wgan_loss", "gradient_penalty"]


def l2_loss(sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """Mean squared error over all voxels, channels and samples (Eq. 2), in float32."""
    return torch.mean((sr.float() - hr.float()) ** 2)


def critic_wgan_loss(score_fake: torch.Tensor, score_real: torch.Tensor) -> torch.Tensor:
    """E[D(l, G(l))] - E[D(l, h)]: the first two terms of Eq. 3, minimised by the critic."""
    return score_fake.float().mean() - score_real.float().mean()


def generator_wgan_loss(score_fake: torch.Tensor) -> torch.Tensor:
    """-E[D(l, G(l))]: the generator maximises the critic's score of its output."""
    return -score_fake.float().mean()


def gradient_penalty(score_fn: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor,
                     fake: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """E[(||grad_i D(l, i)||_2 - 1)^2] at i = eps * real + (1 - eps) * fake (Eq. 3, last term).

    Args:
        score_fn: maps a batch of samples i (B, ...) to scores (B,), with the condition l bound inside.
        real, fake: (B, ...) real and generated samples (``fake`` detached from the generator).
        eps: (B,) uniform [0, 1) mixing weights, one per sample.

    Returns:
        Scalar penalty (without the lambda factor), differentiable w.r.t. the critic parameters.
    """
    shape = (-1,) + (1,) * (real.dim() - 1)
    mixed = (eps.view(shape).to(real.dtype) * real.detach() + (1 - eps.view(shape).to(real.dtype)) * fake.detach())
    mixed.requires_grad_(True)
    scores = score_fn(mixed)
    if scores.dtype in (torch.bfloat16, torch.float16):
        scores = scores.float()
    (grad,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    if grad.dtype in (torch.bfloat16, torch.float16):
        grad = grad.float()
    norm = grad.flatten(1).norm(dim=1)
    return ((norm - 1.0) ** 2).mean()
