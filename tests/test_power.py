"""Power spectrum: normalisation and units, engines, and agreement with MP-Gadget's own P(k)."""
from pathlib import Path

import numpy as np
import pytest

from srsim.analysis.power import (
    default_k_edges,
    power_from_mesh,
    power_from_positions,
    power_spectrum_snapshot,
)
from srsim.errors import SrsimError
from srsim.io.power import read_power, write_power

DATA = Path(__file__).parent / "data" / "mpgadget"


def _mode_table(n):
    """|n| of every rFFT mode of an n^3 mesh and its conjugate weight (both flattened)."""
    f = np.fft.fftfreq(n, 1.0 / n)
    h = np.arange(n // 2 + 1)
    w = np.full(n // 2 + 1, 2.0)
    w[0] = 1.0
    if n % 2 == 0:
        w[-1] = 1.0
    nx, ny, nz = np.meshgrid(f, f, h, indexing="ij")
    return nx, ny, nz, np.broadcast_to(w, nx.shape)


def _bin_average(n, box, values, edges=None):
    """Mode-weighted average of ``values`` (same shape as the rFFT grid) in the estimator's shells."""
    nx, ny, nz, w = _mode_table(n)
    kmag = np.sqrt(nx**2 + ny**2 + nz**2) * 2 * np.pi / box
    edges = default_k_edges(n, box) if edges is None else edges
    b = np.searchsorted(edges, kmag.ravel(), side="left") - 1
    ok = (b >= 0) & (b < len(edges) - 1) & (kmag.ravel() > 0)
    cnt = np.bincount(b[ok], w.ravel()[ok], len(edges) - 1)
    s = np.bincount(b[ok], (w * values).ravel()[ok], len(edges) - 1)
    keep = cnt > 0
    return s[keep] / cnt[keep]


def test_engines_agree_and_chunking_is_exact():
    rng = np.random.default_rng(3)
    box, n = 50.0, 24
    pos = np.mod(rng.normal(25, 6, (20000, 3)), box)
    ref = power_from_positions([pos], box, n, device="numpy")
    chunked = power_from_positions(np.array_split(pos, 7), box, n, device="numpy")
    torch_cpu = power_from_positions(np.array_split(pos, 3), box, n, device="cpu")
    for other in (chunked, torch_cpu):
        np.testing.assert_array_equal(other.n_modes, ref.n_modes)
        np.testing.assert_allclose(other.k, ref.k, rtol=1e-12)
        np.testing.assert_allclose(other.P, ref.P, rtol=1e-9)
    # deconvolved torch and numpy also agree
    a = power_from_positions([pos], box, n, device="numpy", deconvolve=True)
    b = power_from_positions([pos], box, n, device="cpu", deconvolve=True)
    np.testing.assert_allclose(a.P, b.P, rtol=1e-9)


def test_cic_painters_agree_with_shared_mesh_module():
    """numba painter, the in-place torch painter and srsim.mesh.cic_paint give the same mesh."""
    import torch

    from srsim.analysis.power import paint_numpy, paint_torch
    from srsim.mesh import cic_paint

    rng = np.random.default_rng(8)
    box, n = 10.0, 12
    pos = rng.uniform(0, box, (3000, 3))
    pos[:5] = [[0, 0, 0], [box * (1 - 1e-16), 0, 0], [2.5, 5.0, 7.5], [9.99, 9.99, 9.99], [1e-9, 3.3, 0]]
    a, na = paint_numpy([pos], n, box)
    b, nb = paint_torch(np.array_split(pos, 4), n, box)
    c = cic_paint(torch.as_tensor(pos) * (n / box), n)
    assert na == nb == len(pos)
    np.testing.assert_allclose(b.numpy(), a, rtol=0, atol=1e-12)
    np.testing.assert_allclose(c.numpy(), a, rtol=0, atol=1e-12)
    assert a.sum() == pytest.approx(len(pos))
    # a particle on a mesh point gives all its mass to that point; one half-way shares it equally
    one, _ = paint_numpy([np.array([[3.0, 6.0, 9.0], [0.5, 0.0, 11.5]])], 12, 12.0)
    assert one[3, 6, 9] == 1.0
    assert one[0, 0, 11] == one[1, 0, 11] == one[0, 0, 0] == one[1, 0, 0] == 0.25


def test_uniform_lattice_has_no_power_below_particle_nyquist():
    box, npart, n_mesh = 100.0, 16, 64
    g = (np.arange(npart) + 0.37) * box / npart  # off the mesh points on purpose
    pos = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    res = power_from_positions([pos], box, n_mesh)
    kf = 2 * np.pi / box
    # a lattice of spacing box/16 only has Fourier modes at multiples of 16 k_F
    low = res.k < 15.5 * kf
    assert res.k[low].max() > np.pi * npart / box  # beyond the particle Nyquist wavenumber
    assert np.all(res.P[low] < 1e-20 * res.meta["shot_noise"])
    assert res.P[~low].max() > 1e-3 * res.meta["shot_noise"]  # the lattice's own peaks are there


def test_poisson_particles_give_cic_aliased_shot_noise():
    """Uniform random particles: <P> = (V/N) prod_i [1 - 2/3 sin^2(pi n_i / N_mesh)] (CIC, Jing 2005)."""
    rng = np.random.default_rng(11)
    box, n_mesh, npart = 200.0, 32, 200000
    res = power_from_positions([rng.uniform(0, box, (npart, 3))], box, n_mesh)
    nx, ny, nz, _ = _mode_table(n_mesh)
    c1 = np.prod([1 - 2.0 / 3.0 * np.sin(np.pi * a / n_mesh) ** 2 for a in (nx, ny, nz)], axis=0)
    expect = box**3 / npart * _bin_average(n_mesh, box, c1)
    sigma = expect / np.sqrt(res.n_modes / 2.0)  # independent complex modes
    chi2 = np.sum(((res.P - expect) / sigma) ** 2)
    assert chi2 / len(res.P) < 1.5
    assert abs(np.sum(res.P * res.n_modes) / np.sum(expect * res.n_modes) - 1) < 0.01
    np.testing.assert_allclose(res.Delta2, res.k**3 * res.P / (2 * np.pi**2), rtol=1e-12)
    assert res.meta["k_nyquist"] == pytest.approx(np.pi * n_mesh / box)


@pytest.mark.parametrize("engine", ["numpy", "cpu"])
def test_gaussian_random_field_recovers_input_spectrum(engine):
    box, n = 300.0, 48
    rng = np.random.default_rng(5)
    nx, ny, nz, _ = _mode_table(n)
    k = np.sqrt(nx**2 + ny**2 + nz**2) * 2 * np.pi / box
    with np.errstate(divide="ignore"):
        pk = np.where(k > 0, 2.0e4 * (k / 0.1) ** -1.5 * np.exp(-((k / 0.6) ** 2)), 0.0)
    white = np.fft.rfftn(rng.standard_normal((n, n, n)))  # E|white_k|^2 = n^3
    delta = np.fft.irfftn(white * np.sqrt(pk * n**3 / box**3), s=(n, n, n), axes=(0, 1, 2))
    field = 1.0 + delta if engine == "numpy" else __import__("torch").as_tensor(1.0 + delta)
    res = power_from_mesh(field, box)
    expect = _bin_average(n, box, pk)
    sigma = expect / np.sqrt(res.n_modes / 2.0)
    z = (res.P - expect) / sigma
    assert np.mean(z**2) < 1.5 and np.all(np.abs(z) < 5)
    # k of a bin is the mean |k| of its modes; the first shell holds |n| = 1 and sqrt(2)
    np.testing.assert_allclose(res.k, _bin_average(n, box, k), rtol=1e-12)
    assert res.k[0] == pytest.approx(2 * np.pi / box * (6 + 12 * np.sqrt(2)) / 18)


def test_units_scale_with_box():
    """Positions and box scaled by s: k -> k/s, P -> s^3 P, Delta^2 unchanged."""
    rng = np.random.default_rng(2)
    pos = np.mod(rng.normal(10, 3, (5000, 3)), 40.0)
    a = power_from_positions([pos], 40.0, 16)
    b = power_from_positions([pos * 2.5], 100.0, 16)
    np.testing.assert_allclose(b.k, a.k / 2.5, rtol=1e-12)
    np.testing.assert_allclose(b.P, a.P * 2.5**3, rtol=1e-9)
    np.testing.assert_allclose(b.Delta2, a.Delta2, rtol=1e-9)


def _mpgadget_edges(mp, n_mesh, kf):
    """Shell edges reproducing MP-Gadget's (log-spaced) bins: its mode counts fix where each bin ends."""
    nx, ny, nz, w = _mode_table(n_mesh)
    r2 = (nx**2 + ny**2 + nz**2).ravel()
    u, inv = np.unique(r2, return_inverse=True)
    cnt = np.bincount(inv, w.ravel())[1:]
    r = np.sqrt(u[1:])
    idx = np.searchsorted(np.cumsum(cnt), np.cumsum(mp[:, 2]))
    assert np.all(np.cumsum(cnt)[idx] == np.cumsum(mp[:, 2]))
    return np.concatenate([[0.5 * r[0]], 0.5 * (r[idx[:-1]] + r[idx[:-1] + 1]), [r[-1] + 0.1]]) * kf


def test_matches_mpgadget_power_spectrum():
    """MP-Gadget measures P(k) on its 48^3 PM mesh (CIC, window-deconvolved, log bins) at a = 1.

    With the same mesh, bins and deconvolution our P(k) of PART_002 equals it on large scales. Towards the
    mesh Nyquist frequency the two differ by a few per cent because MP-Gadget paints the particles shifted
    by a random sub-cell offset (it changes the aliased power, not the true P(k)).
    """
    out = DATA / "n32" / "output"
    mp = np.loadtxt(out / "powerspectrum-1.0000.txt")
    box = 100.0
    edges = _mpgadget_edges(mp, 48, 2 * np.pi / box)
    res = power_spectrum_snapshot(out / "PART_002", 48, deconvolve=True, k_edges=edges, progress=False)
    np.testing.assert_array_equal(res.n_modes, mp[:, 2].astype(int))
    np.testing.assert_allclose(res.k, mp[:, 0], rtol=1e-5)
    knyq = np.pi * 48 / box
    low = mp[:, 0] < knyq / 4
    np.testing.assert_allclose(res.P[low], mp[low, 1], rtol=5e-3)
    assert np.all(np.abs(res.P[mp[:, 0] < knyq / 2] / mp[mp[:, 0] < knyq / 2, 1] - 1) < 0.05)
    # the paper's estimator (no deconvolution, finer mesh) sits below by the 96^3 CIC window |W|^2
    fine = power_spectrum_snapshot(out / "PART_002", 96, k_edges=edges, progress=False)
    nx, ny, nz, _ = _mode_table(96)
    w2 = np.prod([np.sinc(a / 96.0) ** 4 for a in (nx, ny, nz)], axis=0)
    ratio = fine.P[low] / mp[low, 1] / _bin_average(96, box, w2, edges)[low]
    np.testing.assert_allclose(ratio, 1.0, atol=5e-3)
    assert np.all(fine.P[low] <= mp[low, 1] * 1.005)


def test_table_roundtrip_and_cli(tmp_path):
    from srsim.cli import main

    snap = DATA / "n16" / "output" / "PART_002"
    out = tmp_path / "p.txt"
    assert main(["power", str(snap), str(out), "--mesh", "32", "--config", '{"analysis": {"device": "numpy"}}']) == 0
    table, meta = read_power(out)
    assert meta["n_mesh"] == 32 and meta["n_particles"] == 16**3 and meta["redshift"] == pytest.approx(0.0)
    assert meta["k_nyquist"] == pytest.approx(np.pi * 32 / 100.0)
    res = power_spectrum_snapshot(snap, 32, progress=False)
    np.testing.assert_allclose(table["P"], res.P, rtol=1e-9)
    np.testing.assert_array_equal(table["n_modes"], res.n_modes)
    write_power(tmp_path / "q.txt", res)
    t2, _ = read_power(tmp_path / "q.txt")
    np.testing.assert_allclose(t2["Delta2"], res.Delta2, rtol=1e-9)
    assert main(["power", str(tmp_path / "missing"), str(tmp_path / "x.txt")]) == 2
    assert not (tmp_path / "x.txt").exists()
    with pytest.raises(SrsimError, match="missing"):
        power_spectrum_snapshot(tmp_path / "missing", 8)
