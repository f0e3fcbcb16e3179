"""Initial conditions (srsim.sims.ics): white-noise sharing, P(k) of the ICs, LR/HR agreement, 2LPT."""

import math

import numpy as np
import pytest
import torch

from srsim.cosmology import Cosmology
from srsim.errors import SrsimError
from srsim.mesh import cic_paint
from srsim.sims.ics import (fourier_white_noise, initial_conditions, integer_wavenumbers, linear_density,
                            linear_modes, lpt_fields, lpt_state)
from srsim.sims.suite import SimSpec

WMAP9 = dict(Omega_m=0.2814, Omega_b=0.0464, Omega_L=0.7186, h=0.697, sigma8=0.82, n_s=0.971)


def _spec(n, noise_grid, box=200.0, seed=42, order=2):
    return SimSpec(name="t", kind="hr" if n == noise_grid else "lr", box_size=box, n_grid=n, seed=seed,
                   noise_grid=noise_grid, redshifts=(0.0,), z_init=99.0, cosmology=dict(WMAP9),
                   options={"lpt_order": order})


def _kint(n):
    kx, ky, kz = integer_wavenumbers(n)
    return np.sqrt(kx ** 2 + ky ** 2 + kz ** 2)


def _independent(n):
    """Weights of the rfft modes counting each independent complex mode once (kz = 0 / Nyquist planes
    hold each pair twice), and excluding k = 0."""
    w = np.ones((n, n, n // 2 + 1))
    w[:, :, 0] = 0.5
    if n % 2 == 0:
        w[:, :, n // 2] = 0.5
    w[0, 0, 0] = 0
    return w


def _shared(n_small, n_big):
    """Index arrays selecting, in an n_big rfft layout, the modes |k_i| < n_small/2 in n_small order."""
    h = n_small // 2
    ax = np.r_[0:h, n_big - h + 1:n_big]
    return np.ix_(ax, ax, np.arange(h))


def _small_part(n_small):
    h = n_small // 2
    ax = np.r_[0:h, n_small - h + 1:n_small]
    return np.ix_(ax, ax, np.arange(h))


def test_white_noise_hermitian_unit_variance_and_deterministic():
    n = 32
    w = fourier_white_noise(7, n, n)
    # A real field: its rfft reproduces the modes exactly (Hermitian kz = 0 and Nyquist planes).
    x = np.fft.irfftn(w, s=(n, n, n), axes=(0, 1, 2))
    np.testing.assert_allclose(np.fft.rfftn(x), w, atol=1e-12)
    weights = _independent(n)
    m = weights.sum()
    mean = (np.abs(w) ** 2 * weights).sum() / m
    assert abs(mean - 1.0) < 5.0 / math.sqrt(m)  # |W|^2 ~ Exp(1): sd of the mean 1/sqrt(M)
    np.testing.assert_array_equal(fourier_white_noise(7, n, n), w)
    assert not np.allclose(fourier_white_noise(8, n, n), w)


def test_white_noise_shared_between_grids():
    big = fourier_white_noise(3, 64, 64)
    for n in (8, 16, 32):
        small = fourier_white_noise(3, n, 64)
        np.testing.assert_array_equal(small[_small_part(n)], big[_shared(n, 64)])
        h = n // 2
        assert np.all(small[h] == 0) and np.all(small[:, h] == 0) and np.all(small[:, :, h] == 0)
    # The noise grid is part of the realisation; a grid finer than it is refused.
    assert not np.allclose(fourier_white_noise(3, 16, 32)[_small_part(16)], big[_shared(16, 64)])
    with pytest.raises(SrsimError, match="noise grid"):
        fourier_white_noise(3, 128, 64)


def test_linear_density_power_matches_input():
    spec = _spec(32, 32, box=200.0)
    cosmo = Cosmology.from_config(WMAP9)
    delta = linear_density(spec).numpy()
    n, box = 32, 200.0
    dk = np.fft.rfftn(delta) * (box / n) ** 3
    ratio = np.abs(dk) ** 2 / box ** 3 / np.maximum(cosmo.linear_power(_kint(n) * 2 * math.pi / box), 1e-300)
    weights = _independent(n)
    kint = _kint(n)
    # per-mode |delta_k|^2 / (V P) ~ Exp(1): bin averages within 4 sigma = 4/sqrt(M) of 1
    for lo, hi in ((1, 4), (4, 8), (8, 12), (12, 16)):
        sel = (kint >= lo) & (kint < hi)
        m = weights[sel].sum()
        avg = (ratio[sel] * weights[sel]).sum() / m
        assert abs(avg - 1) < 4 / math.sqrt(m), (lo, hi, avg, m)
    # and the real-space variance equals the sum of the power over the grid's modes
    assert delta.mean() == pytest.approx(0.0, abs=1e-12)


def test_ic_particles_power_matches_linear_theory():
    """Zel'dovich/2LPT particles at z_init, CIC-painted: P(k) = D(z_init)^2 P_lin on large scales."""
    n, box = 32, 200.0
    spec = _spec(n, n, box=box)
    cosmo = Cosmology.from_config(WMAP9)
    a = 0.01
    psi1, psi2 = initial_conditions(spec)
    pos, p = lpt_state(psi1, psi2, cosmo, a, box)
    nm = 2 * n  # 2x mesh: the lattice imprint sits at the mesh Nyquist frequency, far from low k
    rho = cic_paint(pos * (nm / box), nm)
    delta = (rho / rho.mean() - 1).numpy()
    dk = np.fft.rfftn(delta) * (box / nm) ** 3
    kx, ky, kz = integer_wavenumbers(nm)
    window = (np.sinc(kx / nm) * np.sinc(ky / nm) * np.sinc(kz / nm)) ** 2
    dk = (dk / window)[_shared(n, nm)]
    lin = linear_modes(cosmo, box, n, spec.seed, spec.noise_grid).numpy()[_small_part(n)]
    d = float(cosmo.growth_a(a))
    kint = _kint(n)[_small_part(n)]
    weights = _independent(n)[_small_part(n)]
    p_lin = cosmo.linear_power(kint * 2 * math.pi / box, z=1 / a - 1)
    for lo, hi in ((1, 4), (4, 8)):
        sel = (kint >= lo) & (kint < hi)
        m = weights[sel].sum()
        # against the input spectrum: cosmic variance
        avg = (np.abs(dk[sel]) ** 2 / box ** 3 / p_lin[sel] * weights[sel]).sum() / m
        assert abs(avg - 1) < 4 / math.sqrt(m), (lo, hi, avg)
        # against this realisation's linear modes: far tighter
        cross = (dk[sel] * np.conj(lin[sel]) * weights[sel]).real.sum() / (d * (np.abs(lin[sel]) ** 2 * weights[sel]).sum())
        assert cross == pytest.approx(1.0, abs=0.02), (lo, hi, cross)
    # momenta: p = a^2 E (f1 D1 psi1 + f2 D2 psi2); at z = 99 the second-order part is below 2%
    f1, f2, d2 = float(cosmo.growth_rate_a(a)), float(cosmo.growth_rate2_a(a)), float(cosmo.growth2_a(a))
    first = a * a * float(cosmo.hubble(a)) * f1 * d * psi1.reshape(3, -1).T
    second = a * a * float(cosmo.hubble(a)) * f2 * d2 * psi2.reshape(3, -1).T
    np.testing.assert_allclose(p.numpy(), (first + second).numpy(), rtol=1e-10, atol=1e-14)
    assert float(second.std()) < 0.02 * float(first.std())
    # positions: q + D1 psi1 + D2 psi2, wrapped into the box, in ID (C) order
    q = np.stack(np.meshgrid(*[np.arange(n) * box / n] * 3, indexing="ij"), -1).reshape(-1, 3)
    disp = (pos.numpy() - q + box / 2) % box - box / 2
    np.testing.assert_allclose(disp, (d * psi1 + d2 * psi2).reshape(3, -1).T.numpy(), atol=1e-9)
    assert float(pos.min()) >= 0 and float(pos.max()) < box


def test_lr_and_hr_ics_share_large_scale_modes():
    hr, lr = _spec(32, 32, seed=5), _spec(16, 32, seed=5)
    psi_hr, _ = initial_conditions(hr, lpt_order=1)
    psi_lr, _ = initial_conditions(lr, lpt_order=1)
    for axis in range(3):
        f_hr = np.fft.rfftn(psi_hr[axis].numpy()) / 32 ** 3
        f_lr = np.fft.rfftn(psi_lr[axis].numpy()) / 16 ** 3
        np.testing.assert_allclose(f_lr[_small_part(16)], f_hr[_shared(16, 32)], rtol=0,
                                   atol=1e-10 * np.abs(f_hr).max())
    # in real space: HR displacements at the LR particles correlate strongly with the LR ones
    corr = np.corrcoef(psi_hr[:, ::2, ::2, ::2].numpy().ravel(), psi_lr.numpy().ravel())[0, 1]
    assert corr > 0.9  # the rest is HR power beyond the LR Nyquist frequency
    # another seed is another universe
    other, _ = initial_conditions(_spec(16, 32, seed=6), lpt_order=1)
    assert abs(np.corrcoef(other.numpy().ravel(), psi_lr.numpy().ravel())[0, 1]) < 0.5


def test_lpt_fields_two_plane_waves_analytic():
    """phi1 = A cos(kx) + B cos(ky): psi1 = (A k sin kx, B k sin ky, 0), psi2 = (A B k^3 / 2)(sin kx cos ky,
    cos kx sin ky, 0) since lap phi2 = phi1_xx phi1_yy."""
    n, box, m = 16, 100.0, 2
    k = 2 * math.pi * m / box
    amp_a, amp_b = 1.5, -0.7
    q = np.arange(n) * box / n
    x, y, _ = np.meshgrid(q, q, q, indexing="ij")
    delta = -k * k * (amp_a * np.cos(k * x) + amp_b * np.cos(k * y))  # lap phi1
    modes = torch.as_tensor(np.fft.rfftn(delta) * (box / n) ** 3)
    psi1, psi2 = lpt_fields(modes, box, order=2)
    np.testing.assert_allclose(psi1[0].numpy(), amp_a * k * np.sin(k * x), atol=1e-12)
    np.testing.assert_allclose(psi1[1].numpy(), amp_b * k * np.sin(k * y), atol=1e-12)
    np.testing.assert_allclose(psi1[2].numpy(), 0.0, atol=1e-12)
    c = amp_a * amp_b * k ** 3 / 2
    np.testing.assert_allclose(psi2[0].numpy(), c * np.sin(k * x) * np.cos(k * y), atol=1e-12)
    np.testing.assert_allclose(psi2[1].numpy(), c * np.cos(k * x) * np.sin(k * y), atol=1e-12)
    np.testing.assert_allclose(psi2[2].numpy(), 0.0, atol=1e-12)


def test_bad_lpt_order():
    with pytest.raises(SrsimError, match="lpt_order"):
        initial_conditions(_spec(8, 8), lpt_order=3)


def test_big_box_lr_ics_are_made_like_the_training_lr_boxes():
    """The big box's white noise is that of its HR grid (n_lr x the SR factor), as for every LR training box, so its
    LR run zeroes the Nyquist planes the model never saw. (Its first real run used noise_grid = n_lr: the LR big box
    kept those modes and had more grid-scale power than any training LR box.)"""
    from srsim.sims.suite import spec_for

    cfg = {"suite": {"box_size": 12.5, "n_lr": 8, "n_hr": 64, "train_seeds": [11], "test_seeds": [21]},
           "bigbox": {"box_size": 12.5, "n_lr": 8, "seed": 21}, "sims": {"backend": "pm"}, "redshifts": [0],
           "z_init": 49, "cosmology": {"Omega_m": 0.3, "Omega_b": 0.05, "Omega_L": 0.7, "h": 0.7, "sigma8": 0.8,
                                      "n_s": 0.96}}
    big, test = spec_for(cfg, "bigbox", "lr"), spec_for(cfg, "test00", "lr")
    assert big.noise_grid == test.noise_grid == 64
    # same geometry and seed as the test box: the same LR initial conditions, Nyquist planes zero
    d_big, d_test = linear_density(big), linear_density(test)
    assert torch.equal(d_big, d_test)
    modes = torch.fft.rfftn(d_big)
    scale = float(modes.abs().max())
    assert float(modes[4].abs().max()) < 1e-12 * scale and float(modes[:, :, 4].abs().max()) < 1e-12 * scale
    cfg["bigbox"] = {"box_size": 25.0, "n_lr": 16, "seed": 3}
    assert spec_for(cfg, "bigbox", "lr").noise_grid == 128


# ---------------------------------------------------------------------------------------------------------
# initial amplitudes (sims.amplitudes)


def mode_power_ratios(disp: np.ndarray, box: float, cosmo: Cosmology, k_frac: float = 0.5) -> np.ndarray:
    """|delta_k|^2 / P_lin(k) of a Zel'dovich displacement field, over its mean, for the modes below
    `k_frac` of the particle Nyquist frequency (off the Nyquist planes, k != 0).

    disp: (3, n, n, n) Mpc/h on the particle grid. delta = -div psi, so each mode's ratio shows the
    amplitude the IC generator drew: ~1 everywhere for fixed amplitudes, Exp(1) for Rayleigh ones
    (the overall normalisation, growth factor included, divides out).
    """
    n = disp.shape[-1]
    kx, ky, kz = integer_wavenumbers(n)
    psi = [np.fft.rfftn(disp[c].astype(np.float64)) for c in range(3)]
    delta = kx * psi[0] + ky * psi[1] + kz * psi[2]  # up to a constant factor -i 2 pi / box
    kint = np.sqrt((kx ** 2 + ky ** 2 + kz ** 2).astype(np.float64))
    sel = (kint > 0) & (kint < k_frac * n / 2)
    ratio = np.abs(delta[sel]) ** 2 / cosmo.linear_power(kint[sel] * 2 * math.pi / box)
    return ratio / ratio.mean()


def test_fixed_amplitudes_keep_the_phases_of_the_gaussian_field():
    for n, ng in ((16, 16), (16, 32)):
        w = fourier_white_noise(7, n, ng)
        f = fourier_white_noise(7, n, ng, fixed_amplitude=True)
        live = np.abs(w) > 0
        np.testing.assert_array_equal(live, np.abs(f) > 0)  # the same modes zeroed (k = 0, LR Nyquist)
        np.testing.assert_allclose(np.abs(f[live]), 1.0, rtol=1e-12)
        np.testing.assert_allclose(f[live], w[live] / np.abs(w[live]), atol=1e-12)
        x = np.fft.irfftn(f, s=(n, n, n), axes=(0, 1, 2))  # still the modes of a real field
        np.testing.assert_allclose(np.fft.rfftn(x), f, atol=1e-12)


@pytest.mark.parametrize("amplitudes", ["rayleigh", "fixed"])
def test_pm_ic_amplitude_statistics(amplitudes):
    """sims.amplitudes reaches the PM backend's ICs: fixed -> no scatter of |delta_k|^2 / P(k), rayleigh ->
    an exponential distribution with unit mean (std 1, 37% of the modes above the mean)."""
    import dataclasses

    spec = dataclasses.replace(_spec(32, 32, box=100.0), amplitudes=amplitudes)
    psi1, _ = initial_conditions(spec, lpt_order=1)
    r = mode_power_ratios(psi1.numpy(), spec.box_size, Cosmology.from_config(WMAP9))
    assert len(r) > 1000
    if amplitudes == "fixed":
        assert r.std() < 1e-6
    else:
        assert r.std() == pytest.approx(1.0, abs=0.2)
        assert np.mean(r > 1) == pytest.approx(math.exp(-1), abs=0.05)
    with pytest.raises(SrsimError, match="sims.amplitudes"):
        initial_conditions(dataclasses.replace(spec, amplitudes="unit"), lpt_order=1)
