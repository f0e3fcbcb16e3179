"""Background cosmology, linear growth and the linear matter power spectrum.

Conventions: lengths in Mpc/h, wavenumbers in h/Mpc, power in (Mpc/h)^3, H0 = 100 h km/s/Mpc.
The background is matter + curvature + cosmological constant (no radiation), as in the N-body codes:
E(a)^2 = Omega_m a^-3 + Omega_k a^-2 + Omega_L with Omega_k = 1 - Omega_m - Omega_L.

Growth: D1 (linear) and D2 (second-order LPT) are solutions of the exact growth ODEs in ln a for this
background, started on the growing mode deep in matter domination (D1 = a, D2 = -3/7 a^2) and normalised so
that D1(z=0) = 1; D2 is normalised consistently (D2 ~ -3/7 D1^2), so that the 2LPT displacement is
x = q + D1 psi1 + D2 psi2 with psi1, psi2 built from the z = 0 linear density.

Linear power: CAMB (total matter, no massive neutrinos, linear) at z = 0, rescaled so that sigma8 equals
the configured value, then scaled to z with D1(z)^2.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.integrate import solve_ivp

from srsim.errors import SrsimError

__all__ = ["COSMOLOGY_KEYS", "Cosmology", "hubble_e", "write_power_table", "sigma_r"]

# Range of the tabulated CAMB spectrum (h/Mpc); outside it the spectrum is extrapolated as power laws.
_CAMB_KMIN = 1e-4
_CAMB_KMAX = 100.0
_CAMB_NK = 1200
# The growth ODE is integrated over this range of the scale factor.
_A_MIN = 1e-6
_A_MAX = 4.0

#: the keys of a config cosmology section (and of a displacement file's cosmology attribute)
COSMOLOGY_KEYS = ("Omega_m", "Omega_b", "Omega_L", "h", "sigma8", "n_s")


@functools.lru_cache(maxsize=16)
def _growth_solution(omega_m: float, omega_l: float):
    """Dense ODE solution of (D1, dD1/dlna, D2, dD2/dlna) in y = ln a, unnormalised (D1 = a early)."""
    omega_k = 1.0 - omega_m - omega_l

    def rhs(y, s):
        a = math.exp(y)
        e2 = omega_m * a ** -3 + omega_k * a ** -2 + omega_l
        dlne = (-3.0 * omega_m * a ** -3 - 2.0 * omega_k * a ** -2) / (2.0 * e2)
        om_a = omega_m * a ** -3 / e2
        d1, v1, d2, v2 = s
        return [v1, -(2.0 + dlne) * v1 + 1.5 * om_a * d1,
                v2, -(2.0 + dlne) * v2 + 1.5 * om_a * (d2 - d1 * d1)]

    y0, y1 = math.log(_A_MIN), math.log(_A_MAX)
    a0 = _A_MIN
    s0 = [a0, a0, -3.0 / 7.0 * a0 * a0, -6.0 / 7.0 * a0 * a0]
    sol = solve_ivp(rhs, (y0, y1), s0, method="DOP853", rtol=1e-11, atol=1e-30, dense_output=True)
    if not sol.success:
        raise RuntimeError(f"growth ODE failed for Omega_m={omega_m}, Omega_L={omega_l}: {sol.message}")
    d1_today = sol.sol(0.0)[0]
    return sol.sol, d1_today


@functools.lru_cache(maxsize=8)
def _camb_table(omega_m, omega_b, omega_l, h, n_s, t_cmb):
    """(log k, log P) of the CAMB z = 0 linear matter spectrum (h/Mpc, (Mpc/h)^3) and its sigma8."""
    import camb

    if omega_b <= 0 or omega_b >= omega_m:
        raise SrsimError(f"cosmology: need 0 < Omega_b < Omega_m for CAMB, got Omega_b={omega_b}, "
                         f"Omega_m={omega_m}")
    pars = camb.CAMBparams()
    pars.set_cosmology(H0=100.0 * h, ombh2=omega_b * h * h, omch2=(omega_m - omega_b) * h * h,
                       omk=1.0 - omega_m - omega_l, mnu=0.0, num_massive_neutrinos=0, TCMB=t_cmb)
    pars.InitPower.set_params(ns=n_s, As=2e-9)
    pars.set_matter_power(redshifts=[0.0], kmax=_CAMB_KMAX * h * 1.2, nonlinear=False)
    pars.NonLinear = camb.model.NonLinear_none
    results = camb.get_results(pars)
    kh, _, pk = results.get_matter_power_spectrum(minkh=_CAMB_KMIN, maxkh=_CAMB_KMAX, npoints=_CAMB_NK)
    s8 = float(results.get_sigma8_0())
    pk = np.asarray(pk[0], dtype=np.float64)
    if not np.all(np.isfinite(pk)) or np.any(pk <= 0):
        raise RuntimeError("CAMB returned a non-positive or non-finite matter power spectrum")
    return np.log(np.asarray(kh, dtype=np.float64)), np.log(pk), s8


def hubble_e(a, omega_m: float, omega_l: float):
    """E(a) = H(a) / H0 of the matter + curvature + Lambda background (dimensionless; array-friendly).

    The background alone: what a snapshot header (Omega0, OmegaLambda) fixes, without sigma8 or n_s.
    """
    a = np.asarray(a, dtype=np.float64)
    return np.sqrt(omega_m * a ** -3 + (1.0 - omega_m - omega_l) * a ** -2 + omega_l)


def _tophat_w(x):
    """Fourier transform of a unit-volume spherical top hat, stable at small x."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    small = x < 1e-3
    xs = x[small]
    out[small] = 1.0 - xs * xs / 10.0
    xl = x[~small]
    out[~small] = 3.0 * (np.sin(xl) - xl * np.cos(xl)) / xl ** 3
    return out


def sigma_r(power, radius: float, kmin: float = 1e-5, kmax: float = 1e3, n: int = 20000) -> float:
    """RMS linear overdensity in spheres of ``radius`` Mpc/h for a spectrum ``power(k)`` [(Mpc/h)^3]."""
    lnk = np.linspace(math.log(kmin), math.log(kmax), n)
    k = np.exp(lnk)
    integrand = k ** 3 * power(k) * _tophat_w(k * radius) ** 2 / (2.0 * math.pi ** 2)
    return float(math.sqrt(np.trapezoid(integrand, lnk)))


@dataclass(frozen=True)
class Cosmology:
    """A flat or curved LCDM cosmology (matter + Lambda + curvature background).

    Attributes: Omega_m (total matter today), Omega_b (baryons), Omega_L (cosmological constant), h,
    sigma8 (z = 0 linear rms in 8 Mpc/h top hats), n_s (primordial index), T_cmb (K; used by CAMB only).
    """

    Omega_m: float
    Omega_b: float
    Omega_L: float
    h: float
    sigma8: float
    n_s: float
    T_cmb: float = 2.7255

    def __post_init__(self):
        for key in COSMOLOGY_KEYS + ("T_cmb",):
            v = getattr(self, key)
            if not isinstance(v, (int, float)) or not math.isfinite(v):
                raise SrsimError(f"cosmology: {key} must be a finite number, got {v!r}")
        if self.Omega_m <= 0 or self.h <= 0 or self.sigma8 <= 0:
            raise SrsimError(f"cosmology: Omega_m, h and sigma8 must be positive, got {self}")

    @classmethod
    def from_config(cls, cfg_cosmology: dict) -> "Cosmology":
        """Build from the config's ``cosmology`` section (keys as in the schema)."""
        if not isinstance(cfg_cosmology, dict):
            raise SrsimError(f"config cosmology: expected a mapping, got {type(cfg_cosmology).__name__}")
        missing = [k for k in COSMOLOGY_KEYS if k not in cfg_cosmology]
        if missing:
            raise SrsimError(f"config cosmology: missing key(s) {', '.join(missing)}")
        kw = {k: float(cfg_cosmology[k]) for k in COSMOLOGY_KEYS}
        if "T_cmb" in cfg_cosmology:  # else the field's default (the schema's, which a validated config holds)
            kw["T_cmb"] = float(cfg_cosmology["T_cmb"])
        return cls(**kw)

    def to_dict(self) -> dict:
        """The config-style dict (keys of the schema's cosmology section)."""
        return asdict(self)

    @property
    def Omega_k(self) -> float:
        return 1.0 - self.Omega_m - self.Omega_L

    # ---- background -------------------------------------------------------------------------------
    def hubble(self, a):
        """E(a) = H(a) / H0 (dimensionless; array-friendly)."""
        return hubble_e(a, self.Omega_m, self.Omega_L)

    def omega_m_a(self, a):
        """Matter density parameter Omega_m(a)."""
        a = np.asarray(a, dtype=np.float64)
        return self.Omega_m * a ** -3 / self.hubble(a) ** 2

    # ---- growth -----------------------------------------------------------------------------------
    def _state(self, a):
        """(D1, dD1/dlna, D2, dD2/dlna) at scale factor(s) a, normalised to D1(a=1) = 1."""
        a = np.asarray(a, dtype=np.float64)
        if np.any(a < _A_MIN * 10) or np.any(a > _A_MAX):
            raise ValueError(f"growth: scale factor outside [{_A_MIN * 10:g}, {_A_MAX:g}]: {a}")
        sol, d1_today = _growth_solution(float(self.Omega_m), float(self.Omega_L))
        s = sol(np.log(a).ravel()).reshape((4,) + a.shape)
        return s[0] / d1_today, s[1] / d1_today, s[2] / d1_today ** 2, s[3] / d1_today ** 2

    def growth_a(self, a):
        """Linear growth factor D1 at scale factor a, D1(a=1) = 1."""
        return self._state(a)[0]

    def growth(self, z):
        """Linear growth factor D1(z), normalised to D1(0) = 1 (array-friendly)."""
        return self.growth_a(1.0 / (1.0 + np.asarray(z, dtype=np.float64)))

    def growth_rate_a(self, a):
        """f1 = dln D1 / dln a at scale factor a."""
        d1, v1, _, _ = self._state(a)
        return v1 / d1

    def growth_rate(self, z):
        """f1(z) = dln D1 / dln a."""
        return self.growth_rate_a(1.0 / (1.0 + np.asarray(z, dtype=np.float64)))

    def linear_velocity(self, psi, a):
        """Linear-theory peculiar velocity of a growing-mode displacement: v = a H(a) f(a) psi, in km/s.

        psi: displacement(s) at scale factor a in Mpc/h (any shape, e.g. (3, N, N, N)); a: a scalar. With
        H(a) = 100 h E(a) km/s/Mpc and psi in Mpc/h the h cancels: v = 100 a E(a) f(a) psi. Exact for the
        Zel'dovich growing mode (x = q + D psi1, v = a dx/dt); keeps psi's float dtype.
        """
        factor = 100.0 * float(a) * float(self.hubble(a)) * float(self.growth_rate_a(a))
        psi = np.asarray(psi)
        return psi * (psi.dtype.type(factor) if np.issubdtype(psi.dtype, np.floating) else factor)

    def growth2_a(self, a):
        """Second-order growth factor D2 at scale factor a (D2 ~ -3/7 D1^2; negative)."""
        return self._state(a)[2]

    def growth_rate2_a(self, a):
        """f2 = dln D2 / dln a at scale factor a (~ 2 Omega_m(a)^(6/11))."""
        _, _, d2, v2 = self._state(a)
        return v2 / d2

    def growth_g_p(self, a):
        """FastPM momentum growth g_p(a) = a^3 E(a) dD1/da = a^2 E dD1/dlna: linear p = g_p psi1."""
        a = np.asarray(a, dtype=np.float64)
        return a * a * self.hubble(a) * self._state(a)[1]

    def growth_g_f(self, a):
        """FastPM force growth g_f(a) = a^2 E(a) dg_p/da, which the growth ODE makes 1.5 Omega_m D1(a)."""
        return 1.5 * self.Omega_m * self.growth_a(a)

    # ---- linear power -----------------------------------------------------------------------------
    def _table(self):
        lnk, lnp, s8_camb = _camb_table(float(self.Omega_m), float(self.Omega_b), float(self.Omega_L),
                                         float(self.h), float(self.n_s), float(self.T_cmb))
        return lnk, lnp + 2.0 * math.log(self.sigma8 / s8_camb)

    def linear_power(self, k, z: float = 0.0):
        """Linear matter power P(k, z) in (Mpc/h)^3 for k in h/Mpc (array-friendly).

        CAMB's z = 0 spectrum normalised to ``sigma8``, times D1(z)^2. Log-log interpolation of a
        1200-point table over 1e-4..100 h/Mpc; outside it power laws: k^n_s below (the primordial slope),
        the local logarithmic slope at the upper end above (about k^-2.8 at 100 h/Mpc, as k^-3 ln^2 k). k = 0
        gives 0.
        """
        k = np.asarray(k, dtype=np.float64)
        if np.any(k < 0) or not np.all(np.isfinite(k)):
            raise ValueError("linear_power: k must be finite and >= 0")
        lnk_t, lnp_t = self._table()
        out = np.zeros_like(k)
        pos = k > 0
        lnk = np.log(k[pos])
        lnp = np.interp(lnk, lnk_t, lnp_t)
        lo = lnk < lnk_t[0]
        lnp[lo] = lnp_t[0] + self.n_s * (lnk[lo] - lnk_t[0])
        hi = lnk > lnk_t[-1]
        i0 = np.searchsorted(lnk_t, lnk_t[-1] - 0.25)  # local slope over the last 25% of an e-fold
        slope = (lnp_t[-1] - lnp_t[i0]) / (lnk_t[-1] - lnk_t[i0])
        lnp[hi] = lnp_t[-1] + slope * (lnk[hi] - lnk_t[-1])
        out[pos] = np.exp(lnp)
        if z != 0.0:
            out *= float(self.growth(z)) ** 2
        return out

    def sigma8_of_power(self) -> float:
        """sigma8 recomputed by integrating our interpolated z = 0 spectrum (a consistency check)."""
        return sigma_r(self.linear_power, 8.0)


def write_power_table(path, cosmo: Cosmology, kmin: float = 1e-4, kmax: float = 1e3, n: int = 1000,
                      z: float = 0.0) -> None:
    """Write P_lin(k, z) as a two-column text table that MP-GenIC reads (``WhichSpectrum = 2``).

    Columns: k [h/Mpc] (log-spaced from kmin to kmax, n rows), P [(Mpc/h)^3]; the format is
    `srsim.io.power.write_linear_power`'s.
    """
    if not (0 < kmin < kmax) or n < 2:
        raise ValueError(f"write_power_table: need 0 < kmin < kmax and n >= 2, got {kmin}, {kmax}, {n}")
    from srsim.io.power import write_linear_power

    k = np.logspace(math.log10(kmin), math.log10(kmax), n)
    write_linear_power(path, k, cosmo.linear_power(k, z=z), cosmology=cosmo.to_dict(), redshift=z)
