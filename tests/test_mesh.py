"""CIC painting and readout (srsim.mesh): conservation, periodicity, adjointness, batching, autograd."""

import numpy as np
import pytest
import torch

from srsim.mesh import cic_paint, cic_readout


def _pos(n_part, n_mesh, seed=0, batch=None):
    g = torch.Generator().manual_seed(seed)
    shape = (n_part, 3) if batch is None else (batch, n_part, 3)
    # Include negative and > n_mesh values: they must wrap.
    return (torch.rand(shape, generator=g, dtype=torch.float64) * 3 - 1) * n_mesh


def test_paint_conserves_weight_and_wraps():
    n = 8
    pos = _pos(500, n)
    w = torch.rand(500, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    mesh = cic_paint(pos, n, w)
    assert mesh.shape == (n, n, n)
    assert torch.all(mesh >= 0)
    assert torch.isclose(mesh.sum(), w.sum(), rtol=1e-12)
    # Shifting by whole boxes changes nothing.
    shifted = pos + torch.tensor([n, -2 * n, 5 * n], dtype=torch.float64)
    assert torch.allclose(cic_paint(shifted, n, w), mesh, atol=1e-12)


def test_paint_stencil_exact():
    n = 4
    # On a mesh point: everything in that cell.
    m = cic_paint(torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64), n)
    assert m[1, 2, 3] == 1 and m.sum() == 1
    # Halfway along x across the periodic edge: split between cells 3 and 0.
    m = cic_paint(torch.tensor([[3.5, 0.0, 0.0]], dtype=torch.float64), n)
    assert m[3, 0, 0] == 0.5 and m[0, 0, 0] == 0.5
    # General point: trilinear weights.
    m = cic_paint(torch.tensor([[0.25, 1.5, 2.75]], dtype=torch.float64), n)
    assert np.isclose(m[0, 1, 2].item(), 0.75 * 0.5 * 0.25)
    assert np.isclose(m[1, 2, 3].item(), 0.25 * 0.5 * 0.75)
    # Tiny negative coordinates must not index out of range.
    m = cic_paint(torch.tensor([[-1e-18, 0.0, 0.0]], dtype=torch.float32), n)
    assert torch.isclose(m.sum(), torch.tensor(1.0))


def test_readout_interpolates_linear_field_and_is_adjoint():
    n = 8
    idx = torch.arange(n, dtype=torch.float64)
    field = (2.0 * idx[:, None, None] - 0.5 * idx[None, :, None] + 0.0 * idx[None, None, :]).expand(n, n, n)
    # Trilinear interpolation of a linear field is exact away from the periodic seam.
    g = torch.Generator().manual_seed(2)
    pos = torch.rand(200, 3, generator=g, dtype=torch.float64) * (n - 1)
    val = cic_readout(field.contiguous(), pos)
    assert torch.allclose(val, 2.0 * pos[:, 0] - 0.5 * pos[:, 1], atol=1e-12)
    # <paint(w), m> == <w, readout(m)> for any mesh m.
    m = torch.randn(n, n, n, generator=g, dtype=torch.float64)
    pos = _pos(300, n, seed=3)
    w = torch.randn(300, generator=g, dtype=torch.float64)
    assert torch.isclose((cic_paint(pos, n, w) * m).sum(), (w * cic_readout(m, pos)).sum(), rtol=1e-12)


def test_batched_equals_unbatched():
    n = 6
    pos = _pos(100, n, seed=4, batch=3)
    w = torch.rand(3, 100, dtype=torch.float64)
    meshes = cic_paint(pos, n, w)
    vals = cic_readout(meshes, pos)
    for b in range(3):
        assert torch.allclose(meshes[b], cic_paint(pos[b], n, w[b]), atol=1e-13)
        assert torch.allclose(vals[b], cic_readout(meshes[b], pos[b]), atol=1e-13)


def test_autograd_positions_weights_mesh():
    n = 5
    # Keep away from cell boundaries where the CIC kernel is not differentiable.
    g = torch.Generator().manual_seed(5)
    pos = (torch.randint(0, n, (20, 3), generator=g) + 0.2 + 0.6 * torch.rand(20, 3, generator=g)).double()
    pos.requires_grad_(True)
    w = torch.rand(20, dtype=torch.float64, generator=g, requires_grad=True)
    m = torch.randn(n, n, n, dtype=torch.float64, generator=g, requires_grad=True)
    target = torch.randn(n, n, n, dtype=torch.float64, generator=g)
    assert torch.autograd.gradcheck(lambda p, ww: (cic_paint(p, n, ww) * target).sum(), (pos, w))
    assert torch.autograd.gradcheck(lambda mm, p: cic_readout(mm, p), (m, pos))


def test_bad_shapes_fail():
    with pytest.raises(ValueError, match="positions"):
        cic_paint(torch.zeros(10, 2), 4)
    with pytest.raises(ValueError, match="weight"):
        cic_paint(torch.zeros(10, 3), 4, torch.ones(9))
    with pytest.raises(ValueError, match="batched"):
        cic_readout(torch.zeros(4, 4, 4), torch.zeros(2, 10, 3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    n = 16
    pos = _pos(1000, n, seed=6)
    w = torch.rand(1000, dtype=torch.float64)
    cpu = cic_paint(pos, n, w)
    gpu = cic_paint(pos.cuda(), n, w.cuda())
    assert torch.allclose(gpu.cpu(), cpu, atol=1e-10)
    assert torch.allclose(cic_readout(gpu, pos.cuda()).cpu(), cic_readout(cpu, pos), atol=1e-10)


def test_inplace_chunked_paint_equals_paint():
    from srsim.mesh import cic_paint_add_

    n = 8
    pos = _pos(1000, n, seed=7)
    w = torch.rand(1000, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    mesh = torch.zeros(n, n, n, dtype=torch.float64)
    for s in range(0, 1000, 300):
        cic_paint_add_(mesh, pos[s:s + 300], w[s:s + 300])
    assert torch.allclose(mesh, cic_paint(pos, n, w), atol=1e-12)
    m32 = cic_paint_add_(torch.zeros(n, n, n), pos)  # float32 mesh from float64 positions
    assert m32.dtype == torch.float32 and torch.isclose(m32.sum(), torch.tensor(1000.0))

