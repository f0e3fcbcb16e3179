"""Lagrangian -> Eulerian: differentiable CIC density of a displacement field (uses srsim.mesh.cic_paint).

The particle from lattice point ``(i, j, k)`` sits at ``(i, j, k) + disp * disp_to_cells - shift`` in mesh
cell units, and is painted with the CIC kernel onto a mesh of the same lattice (cell ``i`` at coordinate
``i``), so an undisplaced lattice paints exactly 1 per cell. Gradients flow to the displacements through
the CIC weights.

Two boundary conditions:

* Whole periodic box (``box_cells`` given): positions wrap; mass is conserved exactly.
* Crop (``box_cells=None``): the crop is a piece of a bigger box, so its density is not periodic.
  Particles of the crop that move out of it are dropped, and particles from outside, which are not in
  the crop, are missing. The mesh is padded by one cell on each side, particles whose CIC footprint does
  not reach the crop get weight zero (so they cannot wrap around the padded mesh), and the padding is cut
  off. The same edge deficit affects SR and HR crops alike, so the critic compares like with like. A
  common ``shift`` (e.g. the mean LR displacement of the crop) removes the bulk flow first, as map2map's
  lag2eul does, so that fewer particles leave.
"""

from __future__ import annotations

import torch

from srsim.mesh import cic_paint

__all__ = ["lag2eul_density", "lattice"]


def lattice(n: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(n^3, 3) lattice coordinates (i, j, k) in C order."""
    r = torch.arange(n, device=device, dtype=dtype)
    return torch.stack(torch.meshgrid(r, r, r, indexing="ij"), dim=-1).reshape(-1, 3)


def lag2eul_density(disp: torch.Tensor, box_cells: int | None = None, *, disp_to_cells: float = 1.0,
                    shift: torch.Tensor | None = None) -> torch.Tensor:
    """CIC density (particles per cell) of a displaced lattice.

    Args:
        disp: (B, 3, n, n, n) displacement, in units such that ``disp * disp_to_cells`` is in mesh cells.
        box_cells: None for a crop (non-periodic, see the module docstring); else the periodic box side
            in cells, which must equal n (a whole box).
        disp_to_cells: mesh cells per displacement unit.
        shift: (B, 3) mesh cells subtracted from every position (None = 0). Detach it if it is computed
            from the data: the frame is a choice, not something to differentiate.

    Returns:
        (B, 1, n, n, n) density, particles per cell (mean 1 for a whole box): float64 for float64 input,
        else float32, even under autocast (positions of hundreds of cells need the precision).
    """
    if disp.dim() != 5 or disp.shape[1] != 3 or not (disp.shape[2] == disp.shape[3] == disp.shape[4]):
        raise ValueError(f"lag2eul_density: disp must be (B, 3, n, n, n), got {tuple(disp.shape)}")
    B, n = disp.shape[0], disp.shape[-1]
    if box_cells is not None and int(box_cells) != n:
        raise ValueError(f"lag2eul_density: a periodic box needs box_cells == n, got {box_cells} and {n}")
    with torch.autocast(device_type=disp.device.type, enabled=False):
        dtype = torch.float64 if disp.dtype == torch.float64 else torch.float32
        d = disp.to(dtype).reshape(B, 3, -1).transpose(1, 2) * disp_to_cells  # (B, n^3, 3)
        pos = lattice(n, device=disp.device, dtype=dtype) + d
        if shift is not None:
            pos = pos - shift.to(dtype).reshape(B, 1, 3)
        if box_cells is not None:
            rho = cic_paint(pos, n)
        else:
            # keep particles whose CIC footprint reaches cells 0..n-1, paint on an (n+2)^3 mesh, cut padding
            inside = ((pos > -1.0) & (pos < float(n))).all(dim=-1)
            weight = inside.to(pos.dtype)
            pos = torch.where(inside[..., None], pos + 1.0, torch.zeros_like(pos))
            rho = cic_paint(pos, n + 2, weight=weight)[:, 1:-1, 1:-1, 1:-1]
    return rho.reshape(B, 1, n, n, n)
