"""Quantitative SR-vs-HR comparison: power-spectrum ratios up to k_max and halo-mass-function ratios per mass bin,
with a pass/fail against the paper's claims (power within a few percent, HMF within 10%), and for a big box
Fig. 6's claim: its SR HMF matches its LR HMF above the LR resolution limit and the test box's HR below it.

All power spectra compared at one redshift must share the k bins (same box and mesh); SR power is averaged over
realizations before the ratio. HMF ratio errors propagate the tables' Poisson errors in quadrature.
Optionally the velocity statistics (issue 15): redshift-space P0, P2 and the momentum power P_pp against HR,
and the mean halo velocity dispersion per HMF mass bin from FOF catalogues with velocities.
"""

from __future__ import annotations

import math

import numpy as np

from srsim.errors import SrsimError


def power_deviation(k, p_test, p_ref, k_max: float, n_modes=None) -> dict:
    """Deviation of a power spectrum from a reference on the bins with 0 < k <= k_max.

    k: (n,) h/Mpc; p_test, p_ref: (n,) (Mpc/h)^3 on the same bins; n_modes: (n,) or None (bins with 0 modes are
    skipped, as are bins where either P is not finite or P_ref <= 0).
    Returns {'max_abs_dev': max |P/P_ref - 1|, 'rms_dev': sqrt(mean (P/P_ref - 1)^2) (unweighted over bins),
    'n_bins', 'k_max_used' (largest k entering), 'k', 'ratio'} (None for the statistics when no bin enters).
    """
    k = np.asarray(k, dtype=np.float64)
    p_test = np.asarray(p_test, dtype=np.float64)
    p_ref = np.asarray(p_ref, dtype=np.float64)
    if not (k.shape == p_test.shape == p_ref.shape):
        raise SrsimError(f"power_deviation: shapes differ: k {k.shape}, P {p_test.shape}, P_ref {p_ref.shape}")
    use = (k > 0) & (k <= k_max) & np.isfinite(p_test) & np.isfinite(p_ref) & (p_ref > 0)
    if n_modes is not None:
        use &= np.asarray(n_modes) > 0
    ratio = p_test[use] / p_ref[use]
    dev = ratio - 1.0
    if dev.size == 0:
        return {"max_abs_dev": None, "rms_dev": None, "n_bins": 0, "k_max_used": None, "k": [], "ratio": []}
    return {
        "max_abs_dev": float(np.max(np.abs(dev))),
        "rms_dev": float(np.sqrt(np.mean(dev**2))),
        "n_bins": int(dev.size),
        "k_max_used": float(k[use].max()),
        "k": k[use].tolist(),
        "ratio": ratio.tolist(),
    }


def _same_bins(tables, what: str) -> np.ndarray:
    k0, src0 = tables[0]
    for k, src in tables[1:]:
        if k.shape != k0.shape or not np.allclose(k, k0, rtol=1e-6, atol=0):
            raise SrsimError(f"{src}: k bins differ from those of {src0}; {what} must share box and mesh")
    return k0


def lr_nyquist(lr_meta: dict) -> float:
    """Particle Nyquist wavenumber of the LR box, pi n_lr / box_size (h/Mpc), from an LR power table's meta."""
    n_part, box = lr_meta.get("n_particles"), lr_meta.get("box_size")
    if not n_part or not box:
        raise SrsimError("power_metrics: the LR power table's header lacks n_particles or box_size")
    return math.pi * round(float(n_part) ** (1.0 / 3.0)) / float(box)


def _closer(k, p_a, p_b, p_ref, k_lo: float, k_hi: float, n_modes=None):
    """True if |P_a/P_ref - 1| < |P_b/P_ref - 1| in every bin with k_lo < k <= k_hi (None if no bin enters)."""
    use = (k > k_lo) & (k <= k_hi) & np.isfinite(p_a) & np.isfinite(p_b) & np.isfinite(p_ref) & (p_ref > 0)
    if n_modes is not None:
        use &= np.asarray(n_modes) > 0
    if not use.any():
        return None
    return bool(np.all(np.abs(p_a[use] / p_ref[use] - 1) < np.abs(p_b[use] / p_ref[use] - 1)))


def power_metrics(lr, hr, sr, k_max: float, tolerance: float, trivial=None, target_k_max: float | None = None,
                  target_tolerance: float | None = None) -> dict:
    """Power metrics at one redshift.

    lr, hr: `Table` items (srsim.plots.tables.power_item); sr: list of those, one per SR realization (>= 1);
    trivial: the trivial predictor's `Table` or None (then its entries are absent).
    Returns {'k_max', 'sr': deviation of the realization-mean SR (+ 'realizations': per-realization max/rms),
    'lr': deviation of LR, 'pass': SR max |dev| < tolerance (None if no bin enters),
    'k_nyquist_lr' (h/Mpc), 'sr_beats_lr_power' (SR closer to HR than LR in every bin k_nyquist_lr < k <= k_max),
    with trivial: 'trivial' (its deviation) and 'sr_beats_trivial_power'; with target_k_max and
    target_tolerance: 'target_power' {k_max, tolerance, max_abs_dev, pass} for SR over k <= target_k_max}.
    """
    if not sr:
        raise SrsimError("power_metrics: no SR power spectrum given")
    items = [(hr.table["k"], hr.path), (lr.table["k"], lr.path)] + [(s.table["k"], s.path) for s in sr]
    if trivial is not None:
        items.append((trivial.table["k"], trivial.path))
    k = np.asarray(_same_bins(items, "the compared spectra"), dtype=np.float64)
    p_sr = np.mean([s.table["P"] for s in sr], axis=0)
    p_hr = np.asarray(hr.table["P"], dtype=np.float64)
    n_modes = hr.table.get("n_modes")
    out_sr = power_deviation(k, p_sr, p_hr, k_max, n_modes)
    out_sr["realizations"] = []
    for s in sr:
        d = power_deviation(k, s.table["P"], p_hr, k_max, n_modes)
        out_sr["realizations"].append({"path": s.path, "max_abs_dev": d["max_abs_dev"], "rms_dev": d["rms_dev"]})
    out_lr = power_deviation(k, lr.table["P"], p_hr, k_max, n_modes)
    passed = None if out_sr["max_abs_dev"] is None else bool(out_sr["max_abs_dev"] < tolerance)
    out = {"k_max": float(k_max), "tolerance": float(tolerance), "sr": out_sr, "lr": out_lr, "pass": passed}
    k_nyq = lr_nyquist(lr.meta)
    out["k_nyquist_lr"] = k_nyq
    out["sr_beats_lr_power"] = _closer(k, p_sr, np.asarray(lr.table["P"], dtype=np.float64), p_hr, k_nyq, k_max, n_modes)
    if trivial is not None:
        p_tr = np.asarray(trivial.table["P"], dtype=np.float64)
        out["trivial"] = power_deviation(k, p_tr, p_hr, k_max, n_modes)
        out["sr_beats_trivial_power"] = _closer(k, p_sr, p_tr, p_hr, k_nyq, k_max, n_modes)
    if target_k_max is not None and target_tolerance is not None:
        d = power_deviation(k, p_sr, p_hr, target_k_max, n_modes)
        out["target_power"] = {"k_max": float(target_k_max), "tolerance": float(target_tolerance),
                               "max_abs_dev": d["max_abs_dev"],
                               "pass": None if d["max_abs_dev"] is None else bool(d["max_abs_dev"] < target_tolerance)}
    return out


#: the velocity statistics compared: {table kind: (column, ...)} (`srsim power --rsd` / `--momentum` tables)
VELOCITY_COLUMNS = {"rsd": ("P0", "P2"), "momentum": ("P_pp",)}
#: the `figures` setting holding each statistic's tolerance
VELOCITY_TOLERANCE_KEYS = {"P0": "rsd_p0_tolerance", "P2": "rsd_p2_tolerance", "P_pp": "momentum_tolerance"}


def _column_deviation(group: dict, column: str, k_max: float, trivial=None) -> dict:
    """Deviation from HR of one column of velocity statistics tables at one redshift (see `velocity_metrics`)."""
    items = [(group["hr"].table["k"], group["hr"].path), (group["lr"].table["k"], group["lr"].path)]
    items += [(s.table["k"], s.path) for s in group["sr"]]
    if trivial is not None:
        items.append((trivial.table["k"], trivial.path))
    k = np.asarray(_same_bins(items, "the compared velocity statistics"), dtype=np.float64)
    ref = np.asarray(group["hr"].table[column], dtype=np.float64)
    n_modes = group["hr"].table.get("n_modes")
    out = {"lr": power_deviation(k, group["lr"].table[column], ref, k_max, n_modes)}
    if group["sr"]:
        mean = np.mean([s.table[column] for s in group["sr"]], axis=0)
        out["sr"] = power_deviation(k, mean, ref, k_max, n_modes)
        out["sr"]["realizations"] = []
        for s in group["sr"]:
            d = power_deviation(k, s.table[column], ref, k_max, n_modes)
            out["sr"]["realizations"].append({"path": s.path, "max_abs_dev": d["max_abs_dev"],
                                              "rms_dev": d["rms_dev"]})
    if trivial is not None:
        out["trivial"] = power_deviation(k, trivial.table[column], ref, k_max, n_modes)
    return out


def velocity_metrics(rsd: dict | None, momentum: dict | None, k_max: float, tolerances: dict,
                     trivial_rsd=None, trivial_momentum=None) -> dict:
    """Velocity metrics at one redshift: the redshift-space monopole P0 and quadrupole P2 and the momentum
    power P_pp of SR (realization mean), LR and the trivial predictor against HR, each as `power_deviation`
    over 0 < k <= k_max [h/Mpc] (bins where the HR value is <= 0 are skipped: no ratio across P2's zero
    crossing).

    rsd, momentum: {'lr': Table, 'hr': Table, 'sr': [Table, ...]} (srsim.plots.tables.multipole_item /
    momentum_item; 'sr' may be empty: then there are no SR entries and no verdict) or None (absent);
    tolerances: {'P0', 'P2', 'P_pp': fraction}; trivial_rsd, trivial_momentum: the trivial predictor's Table or None.
    Returns {'k_max', then per statistic present 'P0', 'P2', 'P_pp': {'lr': deviation, 'sr': deviation +
    'realizations' (with SR), 'trivial' (with it), 'tolerance', 'pass': SR max |dev| < tolerance (None
    without SR or bins)}, 'pass': all present verdicts (`combine_pass`)}.
    """
    out = {"k_max": float(k_max)}
    for kind, group, trivial in (("rsd", rsd, trivial_rsd), ("momentum", momentum, trivial_momentum)):
        if group is None:
            continue
        for column in VELOCITY_COLUMNS[kind]:
            m = _column_deviation(group, column, k_max, trivial)
            tol = float(tolerances[column])
            dev = m["sr"]["max_abs_dev"] if "sr" in m else None
            out[column] = {**m, "tolerance": tol, "pass": None if dev is None else bool(dev < tol)}
    out["pass"] = combine_pass(out[c]["pass"] for c in VELOCITY_TOLERANCE_KEYS if c in out)
    return out


def binned_sigma_v(mass, sigma_v, edges) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean halo velocity dispersion per log10 M bin and its standard error.

    mass: (G,) Msun/h; sigma_v: (G,) km/s (a catalogue's 1D dispersions); edges: (nbins+1,) increasing
    log10(M / (Msun/h)), bins [e_i, e_{i+1}) as in the HMF (`srsim.analysis.hmf.mass_function`).
    Returns (n (nbins,) int64 halos per bin, mean (nbins,) km/s, sem (nbins,) km/s = sample std (ddof 1) /
    sqrt(n)); mean is NaN in empty bins, sem NaN where n < 2.
    """
    mass = np.asarray(mass, dtype=np.float64).ravel()
    sigma_v = np.asarray(sigma_v, dtype=np.float64).ravel()
    edges = np.asarray(edges, dtype=np.float64)
    if mass.shape != sigma_v.shape:
        raise SrsimError(f"binned_sigma_v: {mass.size} masses but {sigma_v.size} dispersions")
    nb = edges.size - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        idx = np.searchsorted(edges, np.log10(mass), side="right") - 1
    ok = (idx >= 0) & (idx < nb) & np.isfinite(sigma_v)
    idx, sv = idx[ok], sigma_v[ok]
    n = np.bincount(idx, minlength=nb).astype(np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.bincount(idx, weights=sv, minlength=nb) / n
        # two passes: the spread about the bin mean, not sum v^2 - n mean^2 (cancellation)
        ss = np.bincount(idx, weights=(sv - mean[idx]) ** 2, minlength=nb)
        sem = np.where(n >= 2, np.sqrt(ss / np.maximum(n - 1, 1) / n), np.nan)
    mean[n == 0] = np.nan
    return n, mean, sem


def _sv_ratio(m_test, e_test, m_ref, e_ref) -> tuple[np.ndarray, np.ndarray]:
    """m_test / m_ref per bin and its error from the two standard errors in quadrature (NaN where undefined)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(m_ref > 0, m_test / m_ref, np.nan)
        e = r * np.hypot(e_test / m_test, e_ref / m_ref)
    return r, e


def _pooled(items):
    """Masses and dispersions of halo catalogue `Table` items pooled (SR realizations of one box)."""
    return (np.concatenate([np.asarray(i.table["mass"], dtype=np.float64) for i in items]),
            np.concatenate([np.asarray(i.table["sigma_v"], dtype=np.float64) for i in items]))


def halo_velocity_metrics(hr, sr, edges, tolerance: float, min_halos: int, lr=None, trivial=None,
                          n_sigma: float = 2.0) -> dict:
    """Halo velocity dispersions of SR against HR at one redshift, per HMF mass bin.

    hr: a halo catalogue `Table` (srsim.plots.tables.halo_item: 'mass' (G,) Msun/h, 'sigma_v' (G,) km/s);
    sr: list of those, one per SR realization (>= 1), pooled: the SR mean in a bin is over all its
    realizations' halos there (as the SR HMF combines them); lr, trivial: a `Table` or None (absent). An HR
    or SR catalogue without velocities raises SrsimError naming it; an LR or trivial one without them is
    left out (listed under 'no_velocity'). edges: (nbins+1,) log10(M / (Msun/h)), the HMF's bins.
    A bin is tested where HR has >= min_halos halos (the HMF's criterion); it passes when the SR mean
    sigma_v is within `tolerance` of HR's (|ratio - 1| < tolerance) or, where the standard errors exceed
    that, within n_sigma times the ratio's error; a tested bin without SR halos fails.
    Returns {'tolerance', 'min_halos', 'n_sigma', 'bins': [{log10M_lo, log10M_hi, log10M_mid, n_halos_hr,
    n_halos_sr, sigma_v_hr, err_hr, sigma_v_sr, err_sr (km/s), ratio_sr, err_ratio_sr, tested,
    within_tolerance, within_errors, pass; with LR / trivial: n_halos_X, sigma_v_X, ratio_X}], 'n_tested',
    'max_abs_dev_sr' (over tested bins), 'realizations' [{path, max_abs_dev}], 'pass' (None when no bin is
    tested), 'hr', 'sr', 'no_velocity' (paths)}.
    """
    if not sr:
        raise SrsimError("halo_velocity_metrics: no SR halo catalogue given")
    for item in [hr, *sr]:
        if "sigma_v" not in item.table:
            raise SrsimError(f"{item.path}: halo catalogue has no velocities ('sigma_v'; made from a snapshot "
                             "without 1/Velocity); the halo velocity metrics need HR and SR catalogues with them")
    others, skipped = {}, []
    for name, item in (("lr", lr), ("trivial", trivial)):
        if item is not None and "sigma_v" in item.table:
            others[name] = item
        elif item is not None:  # e.g. the trivial predictor's snapshot: displacement only, no 1/Velocity
            skipped.append(item.path)
    n_hr, m_hr, e_hr = binned_sigma_v(hr.table["mass"], hr.table["sigma_v"], edges)
    n_sr, m_sr, e_sr = binned_sigma_v(*_pooled(sr), edges)
    r_sr, er_sr = _sv_ratio(m_sr, e_sr, m_hr, e_hr)
    tested = n_hr >= min_halos
    extra = {}
    for name, item in others.items():
        n_x, m_x, e_x = binned_sigma_v(item.table["mass"], item.table["sigma_v"], edges)
        extra[name] = (n_x, m_x, _sv_ratio(m_x, e_x, m_hr, e_hr)[0])
    bins, devs = [], []
    for i in range(edges.size - 1):
        v = _bin_verdict(r_sr[i], er_sr[i], bool(tested[i]), tolerance, n_sigma)
        if tested[i]:
            devs.append(v["dev"])
        b = {"log10M_lo": float(edges[i]), "log10M_hi": float(edges[i + 1]),
             "log10M_mid": float(0.5 * (edges[i] + edges[i + 1])),
             "n_halos_hr": int(n_hr[i]), "n_halos_sr": int(n_sr[i]),
             "sigma_v_hr": _none(m_hr[i]), "err_hr": _none(e_hr[i]),
             "sigma_v_sr": _none(m_sr[i]), "err_sr": _none(e_sr[i]),
             "ratio_sr": _none(r_sr[i]), "err_ratio_sr": _none(er_sr[i]),
             "tested": bool(tested[i]), "within_tolerance": v["within_tolerance"],
             "within_errors": v["within_errors"], "pass": v["pass"]}
        for name, (n_x, m_x, r_x) in extra.items():
            b.update({f"n_halos_{name}": int(n_x[i]), f"sigma_v_{name}": _none(m_x[i]), f"ratio_{name}": _none(r_x[i])})
        bins.append(b)
    realizations = []
    for item in sr:
        _, m_one, _ = binned_sigma_v(item.table["mass"], item.table["sigma_v"], edges)
        d = [abs(m_one[i] / m_hr[i] - 1.0) for i in np.flatnonzero(tested) if np.isfinite(m_one[i])]
        realizations.append({"path": item.path, "max_abs_dev": _none(max(d)) if d else None})
    n_tested = len(devs)
    return {"tolerance": float(tolerance), "min_halos": int(min_halos), "n_sigma": float(n_sigma), "bins": bins,
            "n_tested": n_tested, "max_abs_dev_sr": _none(max(devs)) if devs else None,
            "realizations": realizations,
            "pass": all(b["pass"] for b in bins if b["tested"]) if n_tested else None,
            "hr": hr.path, "sr": [i.path for i in sr], **({"lr": others["lr"].path} if "lr" in others else {}),
            "no_velocity": skipped}


def hmf_ratio(n_test, err_test, n_ref, err_ref) -> tuple[np.ndarray, np.ndarray]:
    """Ratio of two mass functions per bin, n_test / n_ref, and its 1-sigma error from the two (independent)
    errors in quadrature: r * sqrt((e_t/n_t)^2 + (e_r/n_r)^2). Bins with n_ref = 0 give NaN; bins with n_test = 0
    give ratio 0 with error err_test / n_ref. Inputs (n_bins,) in (Mpc/h)^-3 dex^-1."""
    n_test = np.asarray(n_test, dtype=np.float64)
    n_ref = np.asarray(n_ref, dtype=np.float64)
    err_test = np.asarray(err_test, dtype=np.float64)
    err_ref = np.asarray(err_ref, dtype=np.float64)
    ratio = np.full(n_ref.shape, np.nan)
    err = np.full(n_ref.shape, np.nan)
    ok = n_ref > 0
    ratio[ok] = n_test[ok] / n_ref[ok]
    pos = ok & (n_test > 0)
    err[pos] = ratio[pos] * np.hypot(err_test[pos] / n_test[pos], err_ref[pos] / n_ref[pos])
    zero = ok & (n_test <= 0)
    err[zero] = err_test[zero] / n_ref[zero]
    return ratio, err


def _none(x):
    x = float(x)
    return None if not math.isfinite(x) else x


def hmf_metrics(lr, hr, sr, tolerance: float, min_halos: int, n_sigma: float = 2.0, trivial=None,
                target_tolerance: float | None = None) -> dict:
    """HMF metrics at one redshift. lr, hr, sr: `Table` items (srsim.plots.tables.hmf_item) (sr: the combined table over
    realizations). A bin is tested when HR has >= min_halos halos in it; it passes when |n_SR/n_HR - 1| <
    tolerance (the paper's claim) or, where Poisson noise exceeds that, when the deviation is below n_sigma times
    the ratio's propagated error (SR and HR statistically consistent).
    Returns {'bins': [per-bin dicts], 'n_tested', 'max_abs_dev_sr' (over tested bins), 'pass' (None when no bin
    is tested)}. With trivial (the trivial predictor's table, else None: its entries are absent): per-bin
    'n_halos_trivial', 'ratio_trivial', 'err_trivial' and 'sr_beats_trivial_hmf' (|n_SR/n_HR - 1| <
    |n_trivial/n_HR - 1| in every tested bin). With target_tolerance: 'target_hmf' {tolerance, pass: every
    tested bin has |n_SR/n_HR - 1| < target_tolerance}."""
    t_hr, t_lr, t_sr = hr.table, lr.table, sr.table
    t_tr = trivial.table if trivial is not None else None
    checks = ((t_lr, lr.path), (t_sr, sr.path)) + (((t_tr, trivial.path),) if trivial is not None else ())
    for t, path in checks:
        if t["log10M_lo"].shape != t_hr["log10M_lo"].shape or not (
            np.allclose(t["log10M_lo"], t_hr["log10M_lo"]) and np.allclose(t["log10M_hi"], t_hr["log10M_hi"])
        ):
            raise SrsimError(f"{path}: mass bins differ from those of {hr.path}")
    r_sr, e_sr = hmf_ratio(t_sr["dn_dlog10M"], t_sr["err"], t_hr["dn_dlog10M"], t_hr["err"])
    r_lr, e_lr = hmf_ratio(t_lr["dn_dlog10M"], t_lr["err"], t_hr["dn_dlog10M"], t_hr["err"])
    if t_tr is not None:
        r_tr, e_tr = hmf_ratio(t_tr["dn_dlog10M"], t_tr["err"], t_hr["dn_dlog10M"], t_hr["err"])
    bins, devs, beats = [], [], []
    for i in range(t_hr["log10M_lo"].size):
        tested = bool(t_hr["n_halos"][i] >= min_halos)
        dev = abs(r_sr[i] - 1.0) if np.isfinite(r_sr[i]) else math.inf
        in_tol = bool(dev < tolerance)
        in_2sig = bool(np.isfinite(e_sr[i]) and dev < n_sigma * e_sr[i])
        ok = (in_tol or in_2sig) if tested else None
        if tested:
            devs.append(dev)
        extra = {}
        if t_tr is not None:
            dev_tr = abs(r_tr[i] - 1.0) if np.isfinite(r_tr[i]) else math.inf
            if tested:
                beats.append(bool(dev < dev_tr))
            extra = {"n_halos_trivial": int(t_tr["n_halos"][i]), "ratio_trivial": _none(r_tr[i]),
                     "err_trivial": _none(e_tr[i])}
        bins.append({
            "log10M_lo": float(t_hr["log10M_lo"][i]), "log10M_hi": float(t_hr["log10M_hi"][i]),
            "log10M_mid": float(t_hr["log10M_mid"][i]),
            "n_halos_hr": int(t_hr["n_halos"][i]), "n_halos_sr": int(t_sr["n_halos"][i]),
            "n_halos_lr": int(t_lr["n_halos"][i]),
            "ratio_sr": _none(r_sr[i]), "err_sr": _none(e_sr[i]),
            "ratio_lr": _none(r_lr[i]), "err_lr": _none(e_lr[i]),
            "within_tolerance": in_tol, "within_errors": in_2sig, "tested": tested, "pass": ok, **extra,
        })
    n_tested = len(devs)
    out = {
        "tolerance": float(tolerance), "min_halos": int(min_halos), "n_sigma": float(n_sigma), "bins": bins,
        "n_tested": n_tested,
        "max_abs_dev_sr": _none(max(devs)) if devs else None,
        "pass": (all(b["pass"] for b in bins if b["tested"]) if n_tested else None),
    }
    if t_tr is not None:
        out["sr_beats_trivial_hmf"] = all(beats) if beats else None
    if target_tolerance is not None:
        out["target_hmf"] = {"tolerance": float(target_tolerance),
                             "pass": bool(max(devs) < target_tolerance) if devs else None}
    return out


def lr_mass_limit(lr_meta: dict, path: str = "LR HMF table") -> float:
    """The LR resolution limit log10(min_members * m_LR / (Msun/h)) from an LR HMF table's header (the FOF
    catalogue's analysis.fof_min_members and particle mass, which `srsim hmf` copies into it)."""
    m_part, n_min = lr_meta.get("particle_mass"), lr_meta.get("min_members")
    if not m_part or not n_min:
        raise SrsimError(f"{path}: header lacks particle_mass or min_members (needed for the LR resolution limit)")
    return math.log10(float(n_min) * float(m_part))


def _bin_verdict(ratio: float, err: float, tested: bool, tolerance: float, n_sigma: float) -> dict:
    """The test-box HMF rule for one bin: pass when |ratio - 1| < tolerance or < n_sigma x its error."""
    dev = abs(ratio - 1.0) if np.isfinite(ratio) else math.inf
    in_tol = bool(dev < tolerance)
    in_sig = bool(np.isfinite(err) and dev < n_sigma * err)
    return {"dev": dev, "within_tolerance": in_tol, "within_errors": in_sig,
            "pass": (in_tol or in_sig) if tested else None}


def bigbox_hmf_metrics(lr, sr, hr, tolerance: float, min_halos: int, log10m_lr_limit: float,
                       n_sigma: float = 2.0) -> dict:
    """Fig. 6's claim at one redshift: the big box's SR HMF matches its LR HMF above the LR resolution limit and
    the (small) test box's HR HMF below it.

    lr, sr: `Table` items of the big box's LR and SR mass functions (one volume); hr: the test box's HR table
    (another volume), all on the same mass bins; log10m_lr_limit: log10(fof_min_members x m_LR / (Msun/h)).
    A bin is 'above' the limit when its lower edge is >= it, 'below' when its upper edge is <= it, else it
    'straddles' it (reported, never tested). Above: ratio n_SR/n_LR of the halo counts (same volume), tested
    when LR has >= min_halos halos. Below: ratio of the number densities dn/dlog10M [(Mpc/h)^-3 dex^-1]
    SR(big box)/HR(test box), tested when HR has >= min_halos halos. A tested bin passes as in
    :func:`hmf_metrics`: |ratio - 1| < tolerance or < n_sigma x the Poisson error propagated in quadrature.
    Returns {'log10M_lr_limit', 'tolerance', 'min_halos', 'n_sigma', 'bins' (per-bin dicts with 'side',
    'ratio_sr_lr', 'err_sr_lr', 'ratio_sr_hr', 'err_sr_hr', 'tested', 'pass'), 'n_tested_above',
    'n_tested_below', 'pass_above', 'pass_below', 'pass' (None when nothing is tested)}.
    """
    t_lr, t_sr, t_hr = lr.table, sr.table, hr.table
    for t, path in ((t_sr, sr.path), (t_hr, hr.path)):
        if t["log10M_lo"].shape != t_lr["log10M_lo"].shape or not (
            np.allclose(t["log10M_lo"], t_lr["log10M_lo"]) and np.allclose(t["log10M_hi"], t_lr["log10M_hi"])
        ):
            raise SrsimError(f"{path}: mass bins differ from those of {lr.path}")
    v_lr, v_sr = lr.meta.get("volume"), sr.meta.get("volume")
    if v_lr and v_sr and not np.isclose(float(v_lr), float(v_sr), rtol=1e-6):
        raise SrsimError(f"{sr.path}: volume {v_sr} differs from the big box's LR table {lr.path} ({v_lr})")
    # counts of one volume: the dn/dlog10M ratio is the count ratio, its error sqrt(1/N_SR + 1/N_LR) relative
    r_lr, e_lr = hmf_ratio(t_sr["dn_dlog10M"], t_sr["err"], t_lr["dn_dlog10M"], t_lr["err"])
    r_hr, e_hr = hmf_ratio(t_sr["dn_dlog10M"], t_sr["err"], t_hr["dn_dlog10M"], t_hr["err"])
    bins = []
    for i in range(t_lr["log10M_lo"].size):
        lo, hi = float(t_lr["log10M_lo"][i]), float(t_lr["log10M_hi"][i])
        side = "above" if lo >= log10m_lr_limit else "below" if hi <= log10m_lr_limit else "straddles"
        if side == "above":
            tested = bool(t_lr["n_halos"][i] >= min_halos)
            v = _bin_verdict(r_lr[i], e_lr[i], tested, tolerance, n_sigma)
        elif side == "below":
            tested = bool(t_hr["n_halos"][i] >= min_halos)
            v = _bin_verdict(r_hr[i], e_hr[i], tested, tolerance, n_sigma)
        else:
            tested, v = False, {"within_tolerance": None, "within_errors": None, "pass": None}
        bins.append({
            "log10M_lo": lo, "log10M_hi": hi, "log10M_mid": float(t_lr["log10M_mid"][i]), "side": side,
            "n_halos_sr": int(t_sr["n_halos"][i]), "n_halos_lr": int(t_lr["n_halos"][i]),
            "n_halos_hr": int(t_hr["n_halos"][i]),
            "ratio_sr_lr": _none(r_lr[i]), "err_sr_lr": _none(e_lr[i]),
            "ratio_sr_hr": _none(r_hr[i]), "err_sr_hr": _none(e_hr[i]),
            "within_tolerance": v["within_tolerance"], "within_errors": v["within_errors"], "tested": tested,
            "pass": v["pass"],
        })
    out = {"log10M_lr_limit": float(log10m_lr_limit), "tolerance": float(tolerance), "min_halos": int(min_halos),
           "n_sigma": float(n_sigma), "bins": bins, "sr": sr.path, "lr": lr.path, "hr": hr.path}
    for side in ("above", "below"):
        verdicts = [b["pass"] for b in bins if b["side"] == side and b["tested"]]
        out[f"n_tested_{side}"] = len(verdicts)
        out[f"pass_{side}"] = combine_pass(verdicts)
    out["pass"] = combine_pass([out["pass_above"], out["pass_below"]])
    return out


def combine_pass(values) -> bool | None:
    """All tested verdicts pass -> True; any fails -> False; nothing tested (all None) -> None."""
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return all(vals)


def _fmt(x, pct=True) -> str:
    if x is None:
        return "-"
    return f"{100 * x:.1f}%" if pct else f"{x:.3g}"


def _verdict(v) -> str:
    return {True: "PASS", False: "FAIL", None: "n/a"}[v]


def _yes(v) -> str:
    return {True: "yes", False: "no", None: "n/a"}[v]


def summary_table(metrics: dict) -> str:
    """Human-readable summary of a metrics dict (as written by `compute_metrics`)."""
    lines = [f"srsim metrics for {metrics.get('sim', '?')}"]
    fig = metrics["criteria"]
    lines.append(
        f"Power: |P/P_HR - 1| for k <= {fig['k_max']:g} h/Mpc (pass: SR max < {100 * fig['power_tolerance']:g}%)"
    )
    has_tr = any("trivial" in m for m in metrics["power"].values())
    tr_head = f" {'Tr max':>8} {'Tr rms':>8}" if has_tr else ""
    lines.append(f"{'z':>6} {'k_used':>8} {'SR max':>8} {'SR rms':>8} {'LR max':>8} {'LR rms':>8}{tr_head}  verdict"
                 f"  SR<LR{'  SR<Tr' if has_tr else ''}  target")
    for z, m in metrics["power"].items():
        tr = (f" {_fmt(m['trivial']['max_abs_dev']):>8} {_fmt(m['trivial']['rms_dev']):>8}" if has_tr else "")
        beats = f"  {_yes(m.get('sr_beats_lr_power')):>5}" + (
            f"  {_yes(m.get('sr_beats_trivial_power')):>5}" if has_tr else "")
        target = _verdict(m["target_power"]["pass"]) if "target_power" in m else "-"
        lines.append(
            f"{z:>6} {_fmt(m['sr']['k_max_used'], False):>8} {_fmt(m['sr']['max_abs_dev']):>8} "
            f"{_fmt(m['sr']['rms_dev']):>8} {_fmt(m['lr']['max_abs_dev']):>8} {_fmt(m['lr']['rms_dev']):>8}{tr}  "
            f"{_verdict(m['pass'])}{beats}  {target}"
        )
    if "target_k_max" in fig:
        lines.append(f"SR<LR, SR<Tr: SR closer to HR in every bin with k_Nyquist(LR) < k <= {fig['k_max']:g} h/Mpc; "
                     f"target: SR max |dev| < {100 * fig['target_power_tolerance']:g}% for k <= "
                     f"{fig['target_k_max']:g} h/Mpc")
    lines.append(
        f"HMF: n_SR/n_HR per mass bin (tested where HR has >= {fig['hmf_min_halos']} halos; "
        f"pass: |ratio - 1| < {100 * fig['hmf_tolerance']:g}% or < 2 sigma)"
    )
    has_tr = any("sr_beats_trivial_hmf" in m for m in metrics["hmf"].values())
    tr_head = f" {'N_Tr':>7}" if has_tr else ""
    tr_rat = f" {'Tr/HR':>14}" if has_tr else ""
    lines.append(f"{'z':>6} {'log10M':>12} {'N_HR':>7} {'N_SR':>7} {'N_LR':>7}{tr_head} {'SR/HR':>14} {'LR/HR':>14}"
                 f"{tr_rat}  verdict")

    for z, m in metrics["hmf"].items():
        for b in m["bins"]:
            if b["n_halos_hr"] == 0 and b["n_halos_sr"] == 0 and b["n_halos_lr"] == 0:
                continue
            n_tr = f" {b['n_halos_trivial']:>7}" if has_tr else ""
            r_tr = f" {_ratio_text(b['ratio_trivial'], b['err_trivial']):>14}" if has_tr else ""
            lines.append(
                f"{z:>6} {b['log10M_lo']:5.2f}-{b['log10M_hi']:5.2f} {b['n_halos_hr']:>7} {b['n_halos_sr']:>7} "
                f"{b['n_halos_lr']:>7}{n_tr} {_ratio_text(b['ratio_sr'], b['err_sr']):>14} "
                f"{_ratio_text(b['ratio_lr'], b['err_lr']):>14}{r_tr}  {_verdict(b['pass']) if b['tested'] else 'untested'}"
            )
        extra = f", SR closer to HR than trivial in every tested bin: {_yes(m['sr_beats_trivial_hmf'])}" if has_tr else ""
        if "target_hmf" in m:
            extra += (f", target |SR/HR - 1| < {100 * m['target_hmf']['tolerance']:g}%: "
                      f"{_verdict(m['target_hmf']['pass'])}")
        lines.append(f"{z:>6} HMF verdict: {_verdict(m['pass'])} ({m['n_tested']} bins tested, "
                     f"max |SR/HR - 1| = {_fmt(m['max_abs_dev_sr'])}){extra}")
    if "bars" in metrics:
        bars = metrics["bars"]
        lines.append(f"Bars at z = {', '.join(bars['redshifts']) or '-'}: " + ", ".join(
            f"{name} {_yes(v)}" for name, v in bars.items() if name != "redshifts"))
    if "bigbox" in metrics:
        lines.extend(_bigbox_lines(metrics["bigbox"], fig))
    if "velocity" in metrics:
        lines.extend(_velocity_lines(metrics["velocity"], fig))
    p = metrics["pass"]
    big = f", big box {_verdict(p['bigbox'])}" if "bigbox" in p else ""
    vel = f", velocity {_verdict(p['velocity'])} (not in all)" if "velocity" in p else ""
    lines.append(f"Overall: power {_verdict(p['power'])}, HMF {_verdict(p['hmf'])}{big}, all {_verdict(p['all'])}{vel}")
    return "\n".join(lines) + "\n"


def _velocity_lines(vel: dict, fig: dict) -> list[str]:
    """The summary table's velocity section: P0, P2 (redshift space) and P_pp (momentum) against HR, then the
    halo velocity dispersions per mass bin where there are catalogues."""
    has_power = any(c in m for m in vel.values() for c in VELOCITY_TOLERANCE_KEYS)
    lines = _velocity_power_lines(vel, fig) if has_power else []
    halos = {z: m["sigma_v"] for z, m in vel.items() if "sigma_v" in m}
    if halos:
        lines.extend(_sigma_v_lines(halos))
    return lines


def _sigma_v_lines(halos: dict) -> list[str]:
    """The summary table's halo velocity dispersion rows ({z: `halo_velocity_metrics`})."""
    first = next(iter(halos.values()))
    has_lr = any("lr" in m for m in halos.values())
    lines = [f"Halo sigma_v: mean 1D velocity dispersion (km/s) per HMF mass bin, SR/HR (tested where HR has >= "
             f"{first['min_halos']} halos; pass: |ratio - 1| < {100 * first['tolerance']:g}% or < "
             f"{first['n_sigma']:g} sigma)"]
    lr_head = f" {'LR/HR':>7}" if has_lr else ""
    lines.append(f"{'z':>6} {'log10M':>12} {'N_HR':>7} {'N_SR':>7} {'sv_HR':>8} {'sv_SR':>8} {'SR/HR':>14}{lr_head}"
                 f"  verdict")
    for z, m in halos.items():
        for b in m["bins"]:
            if b["n_halos_hr"] == 0 and b["n_halos_sr"] == 0:
                continue
            lr = f" {_fmt(b.get('ratio_lr'), False):>7}" if has_lr else ""
            lines.append(f"{z:>6} {b['log10M_lo']:5.2f}-{b['log10M_hi']:5.2f} {b['n_halos_hr']:>7} {b['n_halos_sr']:>7} "
                         f"{_kms(b['sigma_v_hr']):>8} {_kms(b['sigma_v_sr']):>8} "
                         f"{_ratio_text(b['ratio_sr'], b['err_ratio_sr']):>14}{lr}  "
                         f"{_verdict(b['pass']) if b['tested'] else 'untested'}")
        skipped = f"; without velocities, left out: {', '.join(m['no_velocity'])}" if m["no_velocity"] else ""
        lines.append(f"{z:>6} sigma_v verdict: {_verdict(m['pass'])} ({m['n_tested']} bins tested, "
                     f"max |SR/HR - 1| = {_fmt(m['max_abs_dev_sr'])}){skipped}")
    return lines


def _kms(x) -> str:
    return "-" if x is None else f"{x:.1f}"


def _velocity_power_lines(vel: dict, fig: dict) -> list[str]:
    """The velocity section's P0, P2 and P_pp rows."""
    first = next((m for m in vel.values() if any(c in m for c in VELOCITY_TOLERANCE_KEYS)), {})
    tols = ", ".join(f"{c} {100 * first[c]['tolerance']:g}%" for c in VELOCITY_TOLERANCE_KEYS if c in first)
    lines = [f"Velocity: |X/X_HR - 1| for k <= {fig['k_max']:g} h/Mpc, X = P0, P2 (redshift space; P2 over bins with "
             f"P2_HR > 0), P_pp (momentum) (pass: SR max < {tols})"]
    has_tr = any("trivial" in m[c] for m in vel.values() for c in VELOCITY_TOLERANCE_KEYS if c in m)
    tr_head = f" {'Tr max':>8} {'Tr rms':>8}" if has_tr else ""
    lines.append(f"{'z':>6} {'stat':>5} {'k_used':>8} {'SR max':>8} {'SR rms':>8} {'LR max':>8} {'LR rms':>8}{tr_head}"
                 f"  verdict")
    for z, m in vel.items():
        for c in VELOCITY_TOLERANCE_KEYS:
            if c not in m:
                continue
            d, sr = m[c], m[c].get("sr", {})
            tr = (f" {_fmt(d['trivial']['max_abs_dev']):>8} {_fmt(d['trivial']['rms_dev']):>8}"
                  if "trivial" in d else (f" {'-':>8} {'-':>8}" if has_tr else ""))
            k_used = sr.get("k_max_used", d["lr"]["k_max_used"])
            lines.append(f"{z:>6} {c:>5} {_fmt(k_used, False):>8} {_fmt(sr.get('max_abs_dev')):>8} "
                         f"{_fmt(sr.get('rms_dev')):>8} {_fmt(d['lr']['max_abs_dev']):>8} "
                         f"{_fmt(d['lr']['rms_dev']):>8}{tr}  {_verdict(d['pass'])}")
    return lines


def _ratio_text(r, e) -> str:
    """A ratio and its 1-sigma error for the summary table ('-' where the ratio is undefined)."""
    return "-" if r is None else (f"{r:.3f}+-{e:.3f}" if e is not None else f"{r:.3f}")


def _bigbox_lines(big: dict, fig: dict) -> list[str]:
    """The summary table's big-box HMF section (Fig. 6's claim)."""
    lines = [f"Big box HMF (Fig. 6): SR/LR counts above the LR limit (tested where LR has >= {fig['hmf_min_halos']} "
             f"halos), SR/test-box-HR dn/dlog10M below it (tested where HR has >= {fig['hmf_min_halos']}); "
             f"pass: |ratio - 1| < {100 * fig['hmf_tolerance']:g}% or < 2 sigma"]
    lines.append(f"{'z':>6} {'log10M':>12} {'side':>9} {'N_SR':>7} {'N_LR':>7} {'N_HR':>7} {'SR/LR':>14} "
                 f"{'SR/HR':>14}  verdict")

    for z, m in big["hmf"].items():
        for b in m["bins"]:
            if b["n_halos_sr"] == 0 and b["n_halos_lr"] == 0 and b["n_halos_hr"] == 0:
                continue
            lines.append(
                f"{z:>6} {b['log10M_lo']:5.2f}-{b['log10M_hi']:5.2f} {b['side']:>9} {b['n_halos_sr']:>7} "
                f"{b['n_halos_lr']:>7} {b['n_halos_hr']:>7} {_ratio_text(b['ratio_sr_lr'], b['err_sr_lr']):>14} "
                f"{_ratio_text(b['ratio_sr_hr'], b['err_sr_hr']):>14}  {_verdict(b['pass']) if b['tested'] else 'untested'}")
        lines.append(f"{z:>6} big-box verdict: {_verdict(m['pass'])} (LR limit log10M = {m['log10M_lr_limit']:.2f}; "
                     f"above: {m['n_tested_above']} bins tested, {_verdict(m['pass_above'])}; "
                     f"below: {m['n_tested_below']} bins tested, {_verdict(m['pass_below'])})")
    return lines


def zkey(z: float) -> str:
    """Redshift as a JSON key: 4.0 -> '4', 0.5 -> '0.5'."""
    return f"{float(z):g}"


BAR_KEYS = {"power": ("sr_beats_lr_power", "sr_beats_trivial_power"), "hmf": ("sr_beats_trivial_hmf",)}


def compute_metrics(power: dict, hmf: dict, criteria: dict, sim: str = "", trivial_power: dict | None = None,
                    trivial_hmf: dict | None = None, bigbox_hmf: dict | None = None, rsd: dict | None = None,
                    momentum: dict | None = None, trivial_rsd: dict | None = None,
                    trivial_momentum: dict | None = None, halos: dict | None = None) -> dict:
    """Assemble metrics.json.

    power: {z: {'lr': item, 'hr': item, 'sr': [items]}}; hmf: {z: {'lr': item, 'hr': item, 'sr': item}} with
    `Table` items (srsim.plots.tables.power_item / hmf_item); criteria: the config `figures` section (k_max, power_tolerance,
    hmf_tolerance, hmf_min_halos, target_k_max, target_power_tolerance, target_hmf_tolerance, bar_redshifts);
    trivial_power, trivial_hmf: {z: item} of the trivial predictor, or None (no trivial entries; then the
    'bars' hold only what needs no trivial column). 'bars' combines, over the redshifts of bar_redshifts
    present, the per-redshift booleans (SR beats LR / trivial) and the target bars.
    bigbox_hmf: {z: {'lr': item, 'sr': item, 'hr': item}} (the big box's LR and SR HMFs, the test box's HR HMF)
    or None (no big box): then 'bigbox' {'hmf': {z: `bigbox_hmf_metrics`}} is added, its verdict is
    'pass'['bigbox'] and enters 'pass'['all']; the LR resolution limit comes from each LR table's header.
    rsd, momentum: {z: {'lr': item, 'hr': item, 'sr': [items] (may be empty)}} of redshift-space multipole /
    momentum power tables (srsim.plots.tables.velocity_by_redshift), or None (absent); trivial_rsd,
    trivial_momentum: {z: item} or None. With either, 'velocity' {z: `velocity_metrics`} is added (k_max and
    the tolerances rsd_p0_tolerance, rsd_p2_tolerance, momentum_tolerance from criteria) and its verdict is
    'pass'['velocity'], kept out of 'pass'['all'] (the paper makes no velocity claim). halos: {z: {'hr': item,
    'sr': [items], 'lr': item or None, 'trivial': item or None}} of FOF catalogues with velocities
    (srsim.plots.tables.halo_tables), or None: then each 'velocity'[z] also has 'sigma_v'
    (`halo_velocity_metrics` on the mass bins of the HR HMF table at z, tolerance sigma_v_tolerance,
    hmf_min_halos), entering that redshift's velocity verdict. Without any of them the output is exactly
    what it was before velocities existed.
    """
    keys = ("k_max", "power_tolerance", "hmf_tolerance", "hmf_min_halos", "target_k_max", "target_power_tolerance",
            "target_hmf_tolerance", "bar_redshifts")
    missing = [key for key in keys if key not in criteria]
    if missing:
        raise SrsimError(f"compute_metrics: the figures settings lack {missing} (validate the config)")
    crit = {key: criteria[key] for key in keys}
    out = {"sim": sim, "criteria": crit, "power": {}, "hmf": {}}
    for z in sorted(power, key=lambda v: -v):
        g = power[z]
        tr = _trivial_at(trivial_power, z, "power")
        out["power"][zkey(z)] = power_metrics(g["lr"], g["hr"], g["sr"], crit["k_max"], crit["power_tolerance"],
                                              trivial=tr, target_k_max=crit["target_k_max"],
                                              target_tolerance=crit["target_power_tolerance"])
    for z in sorted(hmf, key=lambda v: -v):
        g = hmf[z]
        tr = _trivial_at(trivial_hmf, z, "HMF")
        out["hmf"][zkey(z)] = hmf_metrics(g["lr"], g["hr"], g["sr"], crit["hmf_tolerance"], crit["hmf_min_halos"],
                                          trivial=tr, target_tolerance=crit["target_hmf_tolerance"])
    p_pow = combine_pass(m["pass"] for m in out["power"].values())
    p_hmf = combine_pass(m["pass"] for m in out["hmf"].values())
    out["pass"] = {"power": p_pow, "hmf": p_hmf, "all": combine_pass([p_pow, p_hmf])}
    if bigbox_hmf is not None:
        big = {}
        for z in sorted(bigbox_hmf, key=lambda v: -v):
            g = bigbox_hmf[z]
            big[zkey(z)] = bigbox_hmf_metrics(g["lr"], g["sr"], g["hr"], crit["hmf_tolerance"], crit["hmf_min_halos"],
                                              lr_mass_limit(g["lr"].meta, g["lr"].path))
        out["bigbox"] = {"hmf": big}
        p_big = combine_pass(m["pass"] for m in big.values())
        out["pass"]["bigbox"] = p_big
        out["pass"]["all"] = combine_pass([p_pow, p_hmf, p_big])
    bar_z = [zkey(z) for z in crit["bar_redshifts"]]
    bars = {"redshifts": [z for z in bar_z if z in out["power"] or z in out["hmf"]]}
    for section, names in BAR_KEYS.items():
        for name in names:
            vals = [out[section][z].get(name) for z in bar_z if z in out[section] and name in out[section][z]]
            if vals:
                bars[name] = combine_pass(vals)
    for section, name in (("power", "target_power"), ("hmf", "target_hmf")):
        bars[name] = combine_pass(out[section][z][name]["pass"] for z in bar_z if z in out[section])
    out["bars"] = bars
    if rsd is not None or momentum is not None or halos is not None:
        out["velocity"] = _velocity_section(rsd, momentum, criteria, trivial_rsd, trivial_momentum, halos, hmf)
        out["pass"]["velocity"] = combine_pass(m["pass"] for m in out["velocity"].values())
    return out


def _velocity_section(rsd, momentum, criteria: dict, trivial_rsd, trivial_momentum, halos=None,
                      hmf=None) -> dict:
    """{z: `velocity_metrics` (+ 'sigma_v': `halo_velocity_metrics`)} over the redshifts of the multipole and
    momentum tables and the halo catalogues, highest first."""
    keys = list(VELOCITY_TOLERANCE_KEYS.values()) + (["sigma_v_tolerance"] if halos is not None else [])
    missing = [key for key in keys if key not in criteria]
    if missing:
        raise SrsimError(f"compute_metrics: the figures settings lack {missing} (validate the config)")
    tol = {column: criteria[key] for column, key in VELOCITY_TOLERANCE_KEYS.items()}
    # by zkey: a catalogue's redshift (from the snapshot's Time) may differ from a table's in the last digits
    by_key: dict[str, dict] = {}
    for name, groups in (("rsd", rsd), ("momentum", momentum), ("halos", halos)):
        for z, g in (groups or {}).items():
            by_key.setdefault(zkey(z), {})[name] = (z, g)
    edges = {zkey(z): np.append(g["hr"].table["log10M_lo"], g["hr"].table["log10M_hi"][-1])
             for z, g in (hmf or {}).items()}
    out = {}
    for key in sorted(by_key, key=lambda k: -float(k)):
        g = by_key[key]
        g_rsd, g_mom = g.get("rsd", (None, None))[1], g.get("momentum", (None, None))[1]
        tr_rsd = _trivial_at(trivial_rsd, g["rsd"][0], "redshift-space multipole") if g_rsd is not None else None
        tr_mom = _trivial_at(trivial_momentum, g["momentum"][0], "momentum power") if g_mom is not None else None
        m = velocity_metrics(g_rsd, g_mom, criteria["k_max"], tol, trivial_rsd=tr_rsd, trivial_momentum=tr_mom)
        if "halos" in g:
            h = g["halos"][1]
            if key not in edges:
                raise SrsimError(f"compute_metrics: halo catalogue {h['hr'].path} is at z = {key}, where there is "
                                 "no HR HMF table (the halo velocity metrics use its mass bins)")
            m["sigma_v"] = halo_velocity_metrics(h["hr"], h["sr"], edges[key], criteria["sigma_v_tolerance"],
                                                 criteria["hmf_min_halos"], lr=h.get("lr"), trivial=h.get("trivial"))
            m["pass"] = combine_pass([m["pass"], m["sigma_v"]["pass"]])
        out[key] = m
    return out


def _trivial_at(tables: dict | None, z: float, what: str):
    if tables is None:
        return None
    if z not in tables:
        raise SrsimError(f"metrics: no trivial {what} table at z = {z:g} (HR has one)")
    return tables[z]
