"""Synthetic inputs for the figure and metric tests: clustered particles, power and HMF tables in the brief's
text formats. Physically shaped (a CDM-like Delta^2(k), a Schechter-like mass function), not physical."""

from __future__ import annotations

import math

import numpy as np


def clustered_particles(n: int, box: float, seed: int = 0, n_halos: int = 20, halo_size: int = 200):
    """(n^3, 3) float64 Mpc/h: a jittered lattice with `n_halos` compact clumps of `halo_size` particles each
    (clumps gathered from the lattice, so the count is conserved), and IDs 1..n^3."""
    rng = np.random.default_rng(seed)
    q = (np.stack(np.meshgrid(*(np.arange(n),) * 3, indexing="ij"), -1).reshape(-1, 3) + 0.5) * box / n
    x = q + rng.normal(0, 0.15 * box / n, q.shape)
    free = np.ones(len(x), dtype=bool)
    for c in rng.uniform(0, box, (n_halos, 3)):
        d = np.linalg.norm((x - c + box / 2) % box - box / 2, axis=1)
        d[~free] = np.inf
        take = np.argsort(d)[:halo_size]
        free[take] = False
        x[take] = c + rng.normal(0, 0.02 * box / n * halo_size ** (1 / 3), (len(take), 3))
    return np.mod(x, box), np.arange(1, len(x) + 1, dtype=np.uint64)


def delta2_model(k, z):
    """A CDM-like Delta^2(k) growing with 1/(1+z)^2."""
    p = 2.0e4 * k / (1 + (k / 0.02) ** 2) ** 1.1 * (1 + (k / 1.0) ** 1.5)
    return k**3 * p / (2 * math.pi**2) / (1 + z) ** 2


def write_power_table(path, k, P, *, box_size, n_mesh, n_particles, redshift, n_modes=None):
    """Write a power table in `srsim power`'s format; Delta2 = k^3 P / (2 pi^2)."""
    n_modes = np.full(len(k), 10) if n_modes is None else n_modes
    lines = [
        "# synthetic power spectrum",
        f"# box_size = {box_size}", f"# n_mesh = {n_mesh}", f"# k_nyquist = {math.pi * n_mesh / box_size}",
        f"# n_particles = {n_particles}", f"# redshift = {redshift}",
        "# columns: k [h/Mpc]  P [(Mpc/h)^3]  n_modes  Delta2",
    ]
    for kk, pp, nn in zip(k, P, n_modes):
        lines.append(f"{kk:.10e} {pp:.10e} {int(nn)} {kk**3 * pp / (2 * math.pi**2):.10e}")
    path.write_text("\n".join(lines) + "\n")
    return path


def power_set(tmp, zs=(4, 2, 0), box=25.0, n_mesh=64, n_lr=16, n_hr=128, n_sr=2, sr_offset=0.01, seed=0):
    """Write LR, HR and n_sr SR power tables per redshift under tmp; returns {z: {'lr': path, 'hr': path,
    'sr': [paths]}}. SR = HR * (1 + sr_offset * (+-1 alternating by realization) + tiny noise)."""
    rng = np.random.default_rng(seed)
    kf = 2 * math.pi / box
    k = kf * (np.arange(1, n_mesh // 2 + 1) + 0.0)
    out = {}
    for z in zs:
        p_hr = delta2_model(k, z) * 2 * math.pi**2 / k**3
        k_lr = math.pi * n_lr / box
        p_lr = p_hr * np.exp(-((k / (0.5 * k_lr)) ** 2)) + (box**3 / n_lr**3) * 0.2 * (z == 0)
        common = dict(box_size=box, n_mesh=n_mesh, redshift=z)
        d = {"hr": write_power_table(tmp / f"p_hr_z{z}.txt", k, p_hr, n_particles=n_hr**3, **common),
             "lr": write_power_table(tmp / f"p_lr_z{z}.txt", k, p_lr, n_particles=n_lr**3, **common), "sr": []}
        for i in range(n_sr):
            p_sr = p_hr * (1 + sr_offset * (-1) ** i + 0.002 * rng.standard_normal(k.size))
            d["sr"].append(write_power_table(tmp / f"p_sr{i}_z{z}.txt", k, p_sr, n_particles=n_hr**3, **common))
        out[z] = d
    return out


def write_hmf_table(path, lo, hi, n_halos, *, volume, n_catalogs, redshift, **meta):
    """Write an HMF table in `srsim hmf`'s format from per-bin halo counts (summed over n_catalogs); `meta`: more
    header entries (e.g. particle_mass, min_members)."""
    dlog = hi - lo
    dn = n_halos / (volume * n_catalogs * dlog)
    err = np.sqrt(n_halos) / (volume * n_catalogs * dlog)
    lines = ["# synthetic halo mass function", f"# volume = {volume}", f"# n_catalogs = {n_catalogs}",
             f"# redshift = {redshift}", *(f"# {k} = {v}" for k, v in meta.items()),
             "# columns: log10M_lo log10M_hi log10M_mid n_halos dn_dlog10M err"]
    for row in zip(lo, hi, (lo + hi) / 2, n_halos, dn, err):
        lines.append(f"{row[0]:.4f} {row[1]:.4f} {row[2]:.4f} {int(row[3])} {row[4]:.10e} {row[5]:.10e}")
    path.write_text("\n".join(lines) + "\n")
    return path


def hmf_counts(lo, hi, volume, z, rng, m_min=0.0):
    """Poisson halo counts per bin of a Schechter-like dn/dlog10M (M* falling with z), zero below 10^m_min."""
    mid = (lo + hi) / 2
    mstar = 10 ** (14.0 - 0.45 * z)
    dn = 2e-3 * (10**mid / 1e12) ** -0.9 * np.exp(-(10**mid) / mstar)
    lam = dn * volume * (hi - lo)
    return np.where(mid >= m_min, rng.poisson(lam), 0)


def hmf_set(tmp, zs=(4, 2, 0), box=25.0, n_sr=3, seed=1, bins=(10.5, 14.5, 8)):
    """LR, HR and combined-SR HMF tables per redshift; returns {z: {'lr', 'hr', 'sr'}: path}."""
    rng = np.random.default_rng(seed)
    edges = np.linspace(*bins[:2], bins[2] + 1)
    lo, hi = edges[:-1], edges[1:]
    v = box**3
    out = {}
    for z in zs:
        d = {}
        for kind, n_cat, m_min in (("hr", 1, 0.0), ("sr", n_sr, 0.0), ("lr", 1, 13.0 if z < 3 else 99.0)):
            counts = sum(hmf_counts(lo, hi, v, z, rng, m_min) for _ in range(n_cat))
            d[kind] = write_hmf_table(tmp / f"h_{kind}_z{z}.txt", lo, hi, counts, volume=v, n_catalogs=n_cat,
                                      redshift=z)
        out[z] = d
    return out
