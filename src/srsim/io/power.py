"""Power-spectrum text tables: what `srsim power` writes and the figures and metrics read, and the linear
power table that `srsim linear-power` writes and MP-GenIC reads.

Measured spectra. Layout (`srsim.io.table`): a `#` header with the metadata (box_size [Mpc/h], n_mesh, k_nyquist [h/Mpc],
n_particles, redshift, shot_noise [(Mpc/h)^3], deconvolved, engine, source; mpi_ranks with the nbodykit
engine), then one row per k bin:
k [h/Mpc], P [(Mpc/h)^3], n_modes, Delta2 = k^3 P / (2 pi^2) (dimensionless).

Redshift-space multipoles (`srsim power --rsd AXIS`): the same header keys plus axis, scale_factor, hubble_E
and rsd_convention, then k [h/Mpc], P0, P2, P4 [(Mpc/h)^3], n_modes.

Momentum power (`srsim power --momentum`): the same header keys plus momentum_convention, then k [h/Mpc],
P_pp, P_pp_longitudinal [(km/s)^2 (Mpc/h)^3], n_modes.

Linear spectra (MP-GenIC's ``WhichSpectrum = 2`` input): `#` header lines (MP-GenIC skips them), then two
columns k [h/Mpc], P [(Mpc/h)^3].
"""

from __future__ import annotations

import numpy as np

from srsim.io.atomic import atomic_path
from srsim.io.table import read_table, write_table

#: the metadata keys of a power result written to the header, in this order (others are dropped)
HEADER_KEYS = ("box_size", "n_mesh", "k_nyquist", "n_particles", "redshift", "shot_noise", "deconvolved",
               "engine", "source", "mpi_ranks")
COLUMNS = ("k", "P", "n_modes", "Delta2")
MULTIPOLE_HEADER_KEYS = HEADER_KEYS + ("axis", "scale_factor", "hubble_E", "rsd_convention")
MULTIPOLE_COLUMNS = ("k", "P0", "P2", "P4", "n_modes")
MOMENTUM_HEADER_KEYS = HEADER_KEYS + ("momentum_convention",)
MOMENTUM_COLUMNS = ("k", "P_pp", "P_pp_longitudinal", "n_modes")


def write_power(path, result) -> None:
    """Write a power spectrum atomically. `result`: a `srsim.analysis.power.PowerResult` (k, P, n_modes,
    Delta2: (nbins,) arrays; meta: dict)."""
    meta = {key: result.meta[key] for key in HEADER_KEYS if key in result.meta}
    rows = [f"{k:.10e} {p:.10e} {int(n)} {d:.10e}" for k, p, n, d in zip(result.k, result.P, result.n_modes, result.Delta2)]
    write_table(path, "srsim matter power spectrum: CIC mass assignment, no shot-noise subtraction", meta,
                [("k", "h/Mpc"), ("P", "(Mpc/h)^3"), ("n_modes", ""), ("Delta2", "")], rows)


def read_power(path) -> tuple[dict, dict]:
    """Read a table written by :func:`write_power` -> ({'k', 'P', 'Delta2': (nbins,) float64, 'n_modes':
    (nbins,) int64}, meta dict)."""
    cols, meta = read_table(path, COLUMNS, "power spectrum")
    table = {**cols, "n_modes": cols["n_modes"].astype(np.int64)}
    return table, meta


def write_multipoles(path, result) -> None:
    """Write redshift-space multipoles atomically. `result`: a `srsim.analysis.velocity_power.MultipoleResult`
    (k, P0, P2, P4, n_modes: (nbins,) arrays; meta: dict with the axis and the shift convention)."""
    meta = {key: result.meta[key] for key in MULTIPOLE_HEADER_KEYS if key in result.meta}
    rows = [f"{k:.10e} {p0:.10e} {p2:.10e} {p4:.10e} {int(n)}"
            for k, p0, p2, p4, n in zip(result.k, result.P0, result.P2, result.P4, result.n_modes)]
    write_table(path, "srsim redshift-space power multipoles P_l = (2l+1) <|delta_s|^2 L_l(mu)>, mu = k_axis/|k|: "
                "CIC mass assignment, no shot-noise subtraction", meta,
                [("k", "h/Mpc"), ("P0", "(Mpc/h)^3"), ("P2", "(Mpc/h)^3"), ("P4", "(Mpc/h)^3"), ("n_modes", "")], rows)


def read_multipoles(path) -> tuple[dict, dict]:
    """Read a table written by :func:`write_multipoles` -> ({'k', 'P0', 'P2', 'P4': (nbins,) float64, 'n_modes':
    (nbins,) int64}, meta dict)."""
    cols, meta = read_table(path, MULTIPOLE_COLUMNS, "redshift-space power multipoles")
    return {**cols, "n_modes": cols["n_modes"].astype(np.int64)}, meta


def write_momentum_power(path, result) -> None:
    """Write a momentum power spectrum atomically. `result`: a
    `srsim.analysis.velocity_power.MomentumPowerResult` (k, P_pp, P_pp_longitudinal, n_modes; meta)."""
    meta = {key: result.meta[key] for key in MOMENTUM_HEADER_KEYS if key in result.meta}
    rows = [f"{k:.10e} {p:.10e} {pl:.10e} {int(n)}"
            for k, p, pl, n in zip(result.k, result.P_pp, result.P_pp_longitudinal, result.n_modes)]
    unit = "(km/s)^2 (Mpc/h)^3"
    write_table(path, "srsim momentum power spectrum: p = (1 + delta) v, P_pp summed over the 3 components, "
                "longitudinal part <|k.p|^2 / k^2>; CIC, no shot-noise subtraction", meta,
                [("k", "h/Mpc"), ("P_pp", unit), ("P_pp_longitudinal", unit), ("n_modes", "")], rows)


def read_momentum_power(path) -> tuple[dict, dict]:
    """Read a table written by :func:`write_momentum_power` -> ({'k', 'P_pp', 'P_pp_longitudinal': (nbins,)
    float64, 'n_modes': (nbins,) int64}, meta dict)."""
    cols, meta = read_table(path, MOMENTUM_COLUMNS, "momentum power spectrum")
    return {**cols, "n_modes": cols["n_modes"].astype(np.int64)}, meta


def write_linear_power(path, k, p, *, cosmology: dict, redshift: float) -> None:
    """Write a linear power table atomically: k (n,) h/Mpc increasing, p (n,) (Mpc/h)^3; the header names the
    cosmology ({parameter: value}) and the redshift."""
    header = [
        "srsim linear matter power spectrum (CAMB, linear, normalised to sigma8)",
        "cosmology: " + " ".join(f"{key}={val:g}" for key, val in cosmology.items()),
        f"redshift = {redshift:g}",
        "columns: k [h/Mpc]  P [(Mpc/h)^3]",
    ]
    with atomic_path(path) as tmp:
        with open(tmp, "w") as fh:
            for line in header:
                fh.write(f"# {line}\n")
            for ki, pi in zip(k, p):
                fh.write(f"{ki:.8e} {pi:.8e}\n")


def read_linear_power(path) -> np.ndarray:
    """The rows of a linear power table (or any `#`-commented numeric table) as an (n, columns) float64 array."""
    return np.loadtxt(path, comments="#", ndmin=2)
