"""srsim.cosmology: growth factors against independent solutions, CAMB P(k) against MP-GenIC's input table."""

import math
from pathlib import Path

import numpy as np
import pytest
from scipy.integrate import quad

from srsim.cosmology import Cosmology, sigma_r, write_power_table
from srsim.errors import SrsimError

WMAP9 = dict(Omega_m=0.2814, Omega_b=0.0464, Omega_L=0.7186, h=0.697, sigma8=0.82, n_s=0.971)
DATA = Path(__file__).parent / "data" / "mpgadget"


@pytest.fixture(scope="module")
def cosmo():
    return Cosmology.from_config(WMAP9)


def _growth_integral(c, a):
    """Heath (1977): D ∝ E(a) ∫_0^a da' / (a' E(a'))^3, exact for matter + curvature + Lambda."""
    integ = quad(lambda x: 1.0 / (x * c.hubble(x)) ** 3, 0.0, a, epsabs=0, epsrel=1e-12, limit=200)[0]
    return c.hubble(a) * integ


@pytest.mark.parametrize("params", [WMAP9, dict(WMAP9, Omega_m=0.4, Omega_L=0.5), dict(WMAP9, Omega_L=0.0)])
def test_growth_matches_integral_solution(params):
    c = Cosmology.from_config(params)
    norm = _growth_integral(c, 1.0)
    for z in (0.0, 0.5, 2.0, 4.0, 99.0):
        a = 1.0 / (1.0 + z)
        assert math.isclose(float(c.growth(z)), _growth_integral(c, a) / norm, rel_tol=1e-7)
    # f = dlnD/dlna from the same integral: f = dlnE/dlna + 1 / (a^2 E^2 I)
    for z in (0.0, 1.0, 3.0):
        a = 1.0 / (1.0 + z)
        e = float(c.hubble(a))
        dlne = (-3 * c.Omega_m * a ** -3 - 2 * c.Omega_k * a ** -2) / (2 * e * e)
        integ = _growth_integral(c, a) / e
        assert math.isclose(float(c.growth_rate(z)), dlne + 1.0 / (a * a * e ** 3 * integ), rel_tol=1e-7)


def test_growth_einstein_de_sitter_and_2lpt():
    c = Cosmology(Omega_m=1.0, Omega_b=0.05, Omega_L=0.0, h=0.7, sigma8=0.8, n_s=1.0)
    a = np.array([0.01, 0.1, 0.5, 1.0])
    np.testing.assert_allclose(c.growth_a(a), a, rtol=1e-8)
    np.testing.assert_allclose(c.growth_rate_a(a), 1.0, rtol=1e-8)
    np.testing.assert_allclose(c.growth2_a(a), -3.0 / 7.0 * a ** 2, rtol=1e-8)
    np.testing.assert_allclose(c.growth_rate2_a(a), 2.0, rtol=1e-8)


def test_growth_lcdm_properties(cosmo):
    assert float(cosmo.growth(0.0)) == pytest.approx(1.0, abs=1e-12)
    assert float(cosmo.hubble(1.0)) == pytest.approx(1.0, abs=1e-12)
    z = np.array([0.0, 2.0, 4.0])
    d = cosmo.growth(z)
    assert d.shape == (3,) and np.all(np.diff(d) < 0)
    # f ~ Omega_m(a)^0.55 (Linder) to < 1%; f2 ~ 2 Omega_m(a)^(6/11) and D2 ~ -3/7 D1^2 Omega_m^(-1/143) to < 1%
    a = 1.0 / (1.0 + z)
    om = cosmo.omega_m_a(a)
    np.testing.assert_allclose(cosmo.growth_rate(z), om ** 0.55, rtol=0.01)
    np.testing.assert_allclose(cosmo.growth_rate2_a(a), 2 * om ** (6 / 11), rtol=0.01)
    np.testing.assert_allclose(cosmo.growth2_a(a), -3 / 7 * cosmo.growth_a(a) ** 2 * om ** (-1 / 143), rtol=0.01)
    # FastPM identity: g_f = a^2 E dg_p/da (numerical derivative) equals 1.5 Omega_m D1
    for ai in (0.05, 0.3, 0.9):
        h = 1e-5 * ai
        dgp = (cosmo.growth_g_p(ai + h) - cosmo.growth_g_p(ai - h)) / (2 * h)
        assert ai ** 2 * cosmo.hubble(ai) * dgp == pytest.approx(float(cosmo.growth_g_f(ai)), rel=1e-7)


def test_linear_power_normalisation_and_shape(cosmo):
    assert cosmo.sigma8_of_power() == pytest.approx(0.82, rel=2e-3)
    assert sigma_r(cosmo.linear_power, 8.0) == pytest.approx(0.82, rel=2e-3)
    k = np.logspace(-5, 3, 400)
    p = cosmo.linear_power(k)
    assert np.all(np.isfinite(p)) and np.all(p > 0)
    # z scaling and sigma8 scaling
    np.testing.assert_allclose(cosmo.linear_power(k, z=2.0), p * float(cosmo.growth(2.0)) ** 2, rtol=1e-12)
    c2 = Cosmology.from_config(dict(WMAP9, sigma8=0.9))
    np.testing.assert_allclose(c2.linear_power(k), p * (0.9 / 0.82) ** 2, rtol=1e-10)
    # primordial slope at very low k, steep decline at high k, no jumps at the table edges
    slope = np.diff(np.log(p)) / np.diff(np.log(k))
    assert slope[0] == pytest.approx(0.971, abs=0.01)
    assert -3.2 < slope[-1] < -2.5
    for edge in (1e-4, 100.0):  # the CAMB table ends here: the extrapolation must join smoothly
        ke = edge * np.array([0.98, 0.99, 1.01, 1.02])
        pe = cosmo.linear_power(ke)
        s_in_out = np.diff(np.log(pe)) / np.diff(np.log(ke))
        assert np.ptp(s_in_out) < 0.05
    assert cosmo.linear_power(np.array([0.0]))[0] == 0.0
    with pytest.raises(ValueError):
        cosmo.linear_power(np.array([-1.0]))


@pytest.mark.parametrize("n", [16, 32])
def test_linear_power_matches_mpgenic_input(cosmo, n):
    """MP-GenIC's input table (a CLASS spectrum for the same cosmology, sigma8-normalised, at z = 99)."""
    path = DATA / f"n{n}" / "output" / "inputspec_IC.txt"
    d_init = float(path.read_text().splitlines()[0].split()[2])
    k, p_kpc = np.loadtxt(path, unpack=True)
    p_class = p_kpc / 1e9 / d_init ** 2  # (kpc/h)^3 -> (Mpc/h)^3, z = 99 -> 0 with GenIC's own D
    np.testing.assert_allclose(cosmo.linear_power(k), p_class, rtol=5e-3)


def test_write_power_table(tmp_path, cosmo):
    out = tmp_path / "sub" / "linear_power.txt"
    write_power_table(out, cosmo, kmin=1e-3, kmax=10.0, n=50, z=1.0)
    lines = out.read_text().splitlines()
    assert lines[0].startswith("#") and any("columns" in line for line in lines if line.startswith("#"))
    data = np.loadtxt(out)
    assert data.shape == (50, 2)
    assert data[0, 0] == pytest.approx(1e-3) and data[-1, 0] == pytest.approx(10.0)
    np.testing.assert_allclose(data[:, 1], cosmo.linear_power(data[:, 0], z=1.0), rtol=1e-7)
    assert sorted(p.name for p in out.parent.iterdir()) == ["linear_power.txt"]  # no temporary left


def test_bad_config_fails_loudly():
    with pytest.raises(SrsimError, match="Omega_b"):
        Cosmology.from_config({k: v for k, v in WMAP9.items() if k != "Omega_b"})
    with pytest.raises(SrsimError, match="positive"):
        Cosmology.from_config(dict(WMAP9, sigma8=-1.0))
