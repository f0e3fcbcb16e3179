"""Halo mass function dn/dlog10 M with Poisson errors, from one or several halo catalogues.

With ``n_catalogs`` catalogues of the same comoving volume ``V`` (e.g. SR realizations of one box), bin i
holds ``N_i`` halos in all and

    dn/dlog10M_i = N_i / (V n_catalogs dlog10M_i),     err_i = sqrt(N_i) / (V n_catalogs dlog10M_i)

in (Mpc/h)^-3 dex^-1, masses in Msun/h. Summing ``dn/dlog10M * dlog10M * V * n_catalogs`` over the bins
gives back the number of halos inside the binned mass range. Tables are written and read by `srsim.io.hmf`.
"""
from __future__ import annotations

import os

import numpy as np

from srsim.errors import SrsimError

__all__ = ["HMF", "hmf_edges", "mass_function", "hmf_from_catalogs"]


class HMF(dict):
    """Table (dict of (nbins,) arrays: log10M_lo, log10M_hi, log10M_mid, n_halos, dn_dlog10M, err) + ``meta``."""

    meta: dict


def hmf_edges(analysis: dict) -> np.ndarray:
    """The (hmf_bins + 1,) log10(M / (Msun/h)) bin edges of an ``analysis`` config section (hmf_log10m_min,
    hmf_log10m_max, hmf_bins), evenly spaced."""
    lo, hi, nb = analysis["hmf_log10m_min"], analysis["hmf_log10m_max"], analysis["hmf_bins"]
    if not hi > lo or nb < 1:
        raise SrsimError(f"HMF bins: need log10m_max > log10m_min and bins >= 1 (got {lo}, {hi}, {nb})")
    return np.linspace(lo, hi, int(nb) + 1)


def mass_function(masses: list[np.ndarray], volume: float, edges: np.ndarray) -> HMF:
    """HMF of several catalogues' halo masses (Msun/h) sharing one comoving volume (Mpc/h)^3.

    edges  (nbins+1,) increasing log10(M / (Msun/h)) bin edges; bins are [e_i, e_{i+1})
    """
    edges = np.asarray(edges, dtype=np.float64)
    if edges.ndim != 1 or len(edges) < 2 or np.any(np.diff(edges) <= 0):
        raise SrsimError("HMF: mass bin edges must be an increasing list of at least two values")
    if not volume > 0:
        raise SrsimError(f"HMF: volume must be positive, got {volume}")
    n_cat = len(masses)
    if n_cat == 0:
        raise SrsimError("HMF: no catalogues")
    allm = np.concatenate([np.asarray(m, dtype=np.float64).ravel() for m in masses])
    if np.any(~np.isfinite(allm)) or np.any(allm <= 0):
        raise SrsimError("HMF: halo masses must be finite and positive")
    logm = np.log10(allm)
    # np.histogram closes its last bin on the right; the bins here are all [e_i, e_{i+1})
    counts, _ = np.histogram(logm[logm < edges[-1]], bins=edges)
    dlog = np.diff(edges)
    norm = volume * n_cat * dlog
    t = HMF(
        log10M_lo=edges[:-1].copy(),
        log10M_hi=edges[1:].copy(),
        log10M_mid=0.5 * (edges[:-1] + edges[1:]),
        n_halos=counts.astype(np.int64),
        dn_dlog10M=counts / norm,
        err=np.sqrt(counts) / norm,
    )
    t.meta = {
        "volume": float(volume),
        "n_catalogs": int(n_cat),
        "n_total": int(len(logm)),
        "n_below": int(np.sum(logm < edges[0])),
        "n_above": int(np.sum(logm >= edges[-1])),
    }
    return t


def hmf_from_catalogs(paths: list, edges: np.ndarray) -> HMF:
    """HMF of halo catalogue files (srsim fof output); all must share box size and redshift."""
    from srsim.io.catalog import read_catalog

    if not paths:
        raise SrsimError("HMF: no halo catalogues given")
    masses, first = [], None
    for p in paths:
        cat, attrs = read_catalog(p)
        if first is None:
            first = (os.fspath(p), attrs)
        else:
            name0, a0 = first
            if not np.isclose(attrs["box_size"], a0["box_size"], rtol=1e-9):
                raise SrsimError(f"{p}: box_size {attrs['box_size']} differs from {name0} ({a0['box_size']})")
            if not np.isclose(attrs["redshift"], a0["redshift"], rtol=1e-6, atol=1e-6):
                raise SrsimError(f"{p}: redshift {attrs['redshift']} differs from {name0} ({a0['redshift']})")
        m = np.asarray(cat["mass"], dtype=np.float64)
        if np.any(~np.isfinite(m)) or np.any(m <= 0):
            raise SrsimError(f"{p}: halo masses must be finite and positive")
        masses.append(m)
    a0 = first[1]
    t = mass_function(masses, float(a0["box_size"]) ** 3, edges)
    t.meta["redshift"] = float(a0["redshift"])
    t.meta["box_size"] = float(a0["box_size"])
    if "particle_mass" in a0:
        t.meta["particle_mass"] = float(a0["particle_mass"])
    if "min_members" in a0:
        t.meta["min_members"] = int(a0["min_members"])
    t.meta["sources"] = ",".join(os.fspath(p) for p in paths)
    return t
