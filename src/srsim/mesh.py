"""Cloud-in-cell (CIC) mass assignment and interpolation on a periodic cubic mesh, in PyTorch.

Positions are given in mesh-cell units: a particle at ``x`` (any real value) lies in cell
``floor(x mod n)`` and its mass is shared between the 2^3 nearest cell centres, with cell ``i`` at
coordinate ``i`` (the mesh point convention of MP-Gadget and nbodykit: a particle exactly at ``i`` puts
all of its weight on cell ``i``). Everything is periodic.

Both operations work on CPU and GPU, on a single set of particles ``(N, 3)`` or a batch ``(B, N, 3)``,
and are differentiable with autograd with respect to the positions, the weights and (readout) the mesh.
The CIC kernel is piecewise linear, so the gradient with respect to positions is the piecewise-constant
derivative of the kernel (defined almost everywhere).
"""

from __future__ import annotations

import torch

__all__ = ["cic_paint", "cic_paint_add_", "cic_readout"]

def _prepare(pos: torch.Tensor, n_mesh: int):
    """Split positions (..., 3) into integer base cells (long) and fractional offsets in [0, 1)."""
    if pos.shape[-1] != 3:
        raise ValueError(f"cic: positions must have shape (N, 3) or (B, N, 3), got {tuple(pos.shape)}")
    pos = torch.remainder(pos, n_mesh)
    base = torch.floor(pos)
    frac = pos - base  # gradient 1 w.r.t. pos (floor has zero gradient)
    ibase = base.long()
    # remainder() can return exactly n_mesh for tiny negative inputs in floating point: wrap again.
    ibase = torch.where(ibase >= n_mesh, ibase - n_mesh, ibase)
    return ibase, frac


def _stencil(ibase, frac, n_mesh: int):
    """Yield (flat mesh index, CIC weight) for the 8 stencil corners, each shaped like ibase[..., 0].

    Per-axis indices and weights are computed once and combined, which is much cheaper than eight
    independent modulo computations.
    """
    axes = []
    for d, stride in ((0, n_mesh * n_mesh), (1, n_mesh), (2, 1)):
        i0 = ibase[..., d]
        i1 = i0 + 1
        i1 = torch.where(i1 == n_mesh, torch.zeros_like(i1), i1)
        f = frac[..., d]
        axes.append(((i0 * stride, 1 - f), (i1 * stride, f)))
    for ix, wx in axes[0]:
        for iy, wy in axes[1]:
            ixy, wxy = ix + iy, wx * wy
            for iz, wz in axes[2]:
                yield ixy + iz, wxy * wz


def cic_paint(pos: torch.Tensor, n_mesh: int, weight: torch.Tensor | None = None,
              dtype: torch.dtype | None = None) -> torch.Tensor:
    """Paint particles onto a periodic mesh with the CIC kernel.

    Args:
        pos: (N, 3) or (B, N, 3) float tensor, positions in mesh-cell units (wrapped periodically into
            [0, n_mesh)).
        n_mesh: cells per side.
        weight: None (each particle weighs 1), (N,) or (B, N) tensor of particle weights.
        dtype: dtype of the mesh (default: the dtype of ``weight``, else of ``pos``). The stencil weights
            are computed in the dtype of ``pos`` and cast.

    Returns:
        (n_mesh, n_mesh, n_mesh) or (B, n_mesh, n_mesh, n_mesh) tensor: summed weights per cell (the total
        equals the total weight). On the device of ``pos``.
    """
    if n_mesh < 1:
        raise ValueError(f"cic_paint: n_mesh must be >= 1, got {n_mesh}")
    batched = pos.dim() == 3
    if pos.dim() not in (2, 3):
        raise ValueError(f"cic_paint: positions must have shape (N, 3) or (B, N, 3), got {tuple(pos.shape)}")
    if not batched:
        pos = pos.unsqueeze(0)
        if weight is not None:
            weight = weight.unsqueeze(0)
    if weight is not None and weight.shape != pos.shape[:2]:
        raise ValueError(f"cic_paint: weight shape {tuple(weight.shape)} does not match positions "
                         f"{tuple(pos.shape)}")
    if dtype is None:
        dtype = weight.dtype if weight is not None else pos.dtype
    nb = pos.shape[0]
    ncell = n_mesh ** 3
    ibase, frac = _prepare(pos, n_mesh)
    # Batch b writes into the block [b*ncell, (b+1)*ncell) of one flat mesh.
    offset = (torch.arange(nb, device=pos.device) * ncell).unsqueeze(1)
    out = torch.zeros(nb * ncell, dtype=dtype, device=pos.device)
    for idx, w in _stencil(ibase, frac, n_mesh):
        if weight is not None:
            w = w * weight
        # Out-of-place index_add keeps the op differentiable w.r.t. w (and so positions and weights).
        out = out.index_add(0, (idx + offset).reshape(-1), w.reshape(-1).to(dtype))
    out = out.reshape(nb, n_mesh, n_mesh, n_mesh)
    return out if batched else out[0]


def cic_paint_add_(mesh: torch.Tensor, pos: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """In-place CIC painting into an existing (n, n, n) mesh (not differentiable; for chunked painting).

    Args:
        mesh: contiguous (n, n, n) tensor, modified in place.
        pos: (N, 3) positions in mesh-cell units on the same device.
        weight: None (1 per particle) or (N,) weights.

    Returns:
        ``mesh``.
    """
    if mesh.dim() != 3 or not mesh.is_contiguous():
        raise ValueError(f"cic_paint_add_: mesh must be a contiguous (n, n, n) tensor, got {tuple(mesh.shape)}")
    if pos.dim() != 2:
        raise ValueError(f"cic_paint_add_: positions must have shape (N, 3), got {tuple(pos.shape)}")
    n_mesh = mesh.shape[-1]
    flat = mesh.view(-1)
    with torch.no_grad():
        ibase, frac = _prepare(pos, n_mesh)
        for idx, w in _stencil(ibase, frac, n_mesh):
            if weight is not None:
                w = w * weight
            flat.index_add_(0, idx, w.to(mesh.dtype))
    return mesh


def cic_readout(mesh: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Interpolate a periodic mesh at particle positions with the CIC kernel (the adjoint of cic_paint).

    Args:
        mesh: (n, n, n) or (B, n, n, n) tensor.
        pos: (N, 3) or (B, N, 3) positions in mesh-cell units (batched iff ``mesh`` is batched).

    Returns:
        (N,) or (B, N) tensor of interpolated values, in the promoted dtype of mesh and positions.
    """
    batched = mesh.dim() == 4
    if mesh.dim() not in (3, 4) or mesh.shape[-1] != mesh.shape[-2] or mesh.shape[-1] != mesh.shape[-3]:
        raise ValueError(f"cic_readout: mesh must have shape (n, n, n) or (B, n, n, n), got {tuple(mesh.shape)}")
    if pos.dim() != (3 if batched else 2):
        raise ValueError(f"cic_readout: mesh {tuple(mesh.shape)} and positions {tuple(pos.shape)} "
                         "must both be batched or both unbatched")
    if not batched:
        mesh = mesh.unsqueeze(0)
        pos = pos.unsqueeze(0)
    if pos.shape[0] != mesh.shape[0]:
        raise ValueError(f"cic_readout: batch sizes differ: mesh {mesh.shape[0]}, positions {pos.shape[0]}")
    n_mesh = mesh.shape[-1]
    nb = mesh.shape[0]
    ibase, frac = _prepare(pos, n_mesh)
    flat = mesh.reshape(nb, -1)
    out = None
    for idx, w in _stencil(ibase, frac, n_mesh):
        term = torch.gather(flat, 1, idx) * w
        out = term if out is None else out + term
    return out if batched else out[0]

