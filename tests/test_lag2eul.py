"""The differentiable CIC density (Lagrangian -> Eulerian) fed to the critic."""

import numpy as np
import torch

from srsim.model.lag2eul import lag2eul_density

torch.set_num_threads(1)


def _numpy_cic(pos, n):
    """Direct CIC: each particle spreads over the 8 nearest mesh points (points at integer coordinates)."""
    rho = np.zeros((n, n, n))
    for p in pos:
        i0 = np.floor(p).astype(int)
        f = p - i0
        for c in np.ndindex(2, 2, 2):
            w = np.prod(np.where(np.array(c) == 1, f, 1 - f))
            rho[tuple((i0 + c) % n)] += w
    return rho


def _disp(n, amp, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return amp * torch.randn(1, 3, n, n, n, generator=g, dtype=dtype)


def test_periodic_conserves_mass_and_matches_numpy():
    n = 6
    disp = _disp(n, 2.5, 0)
    rho = lag2eul_density(disp, n, disp_to_cells=1.0)
    assert rho.shape == (1, 1, n, n, n)
    assert abs(rho.sum().item() - n ** 3) < 1e-9
    q = np.stack(np.meshgrid(*(np.arange(n),) * 3, indexing="ij")).reshape(3, -1).T
    pos = q + disp[0].numpy().reshape(3, -1).T
    np.testing.assert_allclose(rho[0, 0].numpy(), _numpy_cic(pos, n), atol=1e-12)


def test_undisplaced_lattice_is_uniform_and_units_scale():
    n = 5
    rho = lag2eul_density(torch.zeros(2, 3, n, n, n), n)
    assert torch.equal(rho, torch.ones(2, 1, n, n, n))
    # a displacement of half a unit with disp_to_cells=2 moves every particle by one whole cell
    d = torch.zeros(1, 3, n, n, n)
    d[:, 0] = 0.5
    assert torch.equal(lag2eul_density(d, n, disp_to_cells=2.0), torch.ones(1, 1, n, n, n))


def test_crop_mode_edges_and_interior():
    n = 8
    disp = _disp(n, 0.3, 1)
    rho_p = lag2eul_density(disp, n)
    rho_c = lag2eul_density(disp, None)
    # far from the edges a crop paints what the periodic box paints
    torch.testing.assert_close(rho_c[..., 2:-2, 2:-2, 2:-2], rho_p[..., 2:-2, 2:-2, 2:-2])
    # nothing wraps around: total = particles whose CIC mass lands inside, never more than n^3
    assert rho_c.sum() <= n ** 3 + 1e-9
    # a shift that moves everything out of the crop leaves it empty (no periodic wrap)
    assert lag2eul_density(disp, None, shift=torch.tensor([[20.0, 0.0, 0.0]], dtype=torch.float64)).abs().max() == 0
    # particles that stay inside are all counted (a contraction towards the centre)
    c = (n - 1) / 2
    q = torch.arange(n, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(q, q, q, indexing="ij"))[None]
    shrink = -0.3 * (grid - c)
    assert abs(lag2eul_density(shrink, None).sum().item() - n ** 3) < 1e-9


def test_gradient_matches_finite_differences():
    n = 4
    disp = _disp(n, 0.7, 2).requires_grad_(True)
    weights = torch.randn(1, 1, n, n, n, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    for box in (n, None):
        def f(d):
            return (lag2eul_density(d, box, disp_to_cells=1.3) * weights).sum()

        (grad,) = torch.autograd.grad(f(disp), disp)
        h = 1e-6
        rng = np.random.default_rng(4)
        for _ in range(12):
            idx = tuple(int(rng.integers(0, s)) for s in disp.shape)
            dp, dm = disp.detach().clone(), disp.detach().clone()
            dp[idx] += h
            dm[idx] -= h
            fd = (f(dp) - f(dm)).item() / (2 * h)
            assert abs(fd - grad[idx].item()) < 1e-5 * max(1.0, abs(fd))
        assert grad.abs().sum() > 0


def test_float32_under_autocast():
    n = 4
    disp = _disp(n, 1.0, 5, dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        rho = lag2eul_density(disp.bfloat16(), n)
    assert rho.dtype == torch.float32
    assert abs(rho.sum().item() - n ** 3) < 1e-3
