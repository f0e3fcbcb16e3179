"""Velocity comparison layer (issue 15): SR/HR metrics on redshift-space multipoles and momentum power, their
absence leaving metrics.json as before, and `srsim figure velocity` from real MP-Gadget tables."""

import json
import math

import numpy as np
import pytest

from plot_synthetic import hmf_set, power_set
from srsim.analysis.velocity_power import MomentumPowerResult, MultipoleResult
from srsim.cli import main
from srsim.errors import SrsimError
from srsim.io.power import write_momentum_power, write_multipoles
from srsim.metrics import compute_metrics, summary_table, velocity_metrics
from srsim.plots.tables import hmf_item, momentum_item, multipole_item, power_item, velocity_by_redshift

K = 2 * math.pi / 100.0 * np.arange(1, 25, dtype=np.float64)
P_REAL = 2e3 * K**-1.5


def figure_defaults() -> dict:
    from srsim.config import validate_sections

    return validate_sections({"figures": {}}, "defaults")["figures"]


def _meta(z, box=100.0, n_part=32**3, axis="z"):
    return {"box_size": box, "n_mesh": 48, "k_nyquist": math.pi * 48 / box, "n_particles": n_part, "redshift": z,
            "axis": axis}


def write_rsd(path, scale=1.0, z=4.0, p2_scale=None, **meta):
    """Kaiser-like multipoles (beta = 0.9), times `scale` (P2 times p2_scale, default scale)."""
    p0 = scale * (1 + 2 / 3 * 0.9 + 0.9**2 / 5) * P_REAL
    p2 = (scale if p2_scale is None else p2_scale) * (4 / 3 * 0.9 + 4 / 7 * 0.9**2) * P_REAL
    write_multipoles(path, MultipoleResult(K, p0, p2, 8 / 35 * 0.81 * P_REAL, np.full(K.size, 100), _meta(z, **meta)))
    return str(path)


def write_mom(path, scale=1.0, z=4.0, **meta):
    m = _meta(z, **meta)
    m.pop("axis")
    p = scale * 1e6 * P_REAL / K**2
    write_momentum_power(path, MomentumPowerResult(K, p, 0.99 * p, np.full(K.size, 100), m))
    return str(path)


def _group(tmp_path, name, write, sr_scales=(1.05,), lr_scale=0.8, z=4.0):
    lr = write(tmp_path / f"{name}_lr.txt", lr_scale, z, n_part=16**3)
    hr = write(tmp_path / f"{name}_hr.txt", 1.0, z)
    sr = [write(tmp_path / f"{name}_sr{i}.txt", s, z) for i, s in enumerate(sr_scales)]
    return [lr], [hr], sr


def test_known_offsets_give_those_deviations(tmp_path):
    """SR = 1.05 HR (two realizations at 1.04 and 1.06 for P_pp), LR = 0.8 HR, trivial = 0.9 HR."""
    rsd = velocity_by_redshift(*_group(tmp_path, "rsd", write_rsd), multipole_item, "t", "rsd")
    mom = velocity_by_redshift(*_group(tmp_path, "mom", write_mom, sr_scales=(1.04, 1.06)), momentum_item, "t",
                               "momentum")
    tr = multipole_item(write_rsd(tmp_path / "tr.txt", 0.9))
    tol = {"P0": 0.06, "P2": 0.04, "P_pp": 0.06}
    m = velocity_metrics(rsd[4.0], mom[4.0], 16.0, tol, trivial_rsd=tr)
    for c in ("P0", "P2", "P_pp"):
        assert m[c]["sr"]["max_abs_dev"] == pytest.approx(0.05, rel=1e-6)
        assert m[c]["sr"]["rms_dev"] == pytest.approx(0.05, rel=1e-6)
        assert m[c]["lr"]["max_abs_dev"] == pytest.approx(0.2, rel=1e-6)
    assert [r["max_abs_dev"] for r in m["P_pp"]["sr"]["realizations"]] == pytest.approx([0.04, 0.06], rel=1e-6)
    assert m["P0"]["trivial"]["max_abs_dev"] == pytest.approx(0.1, rel=1e-6) and "trivial" not in m["P_pp"]
    assert m["P0"]["pass"] is True and m["P2"]["pass"] is False and m["P_pp"]["pass"] is True
    assert m["pass"] is False
    # k_max cuts the bins: only k <= 0.5 h/Mpc enter
    cut = velocity_metrics(rsd[4.0], None, 0.5, tol)
    assert cut["P0"]["sr"]["k_max_used"] <= 0.5 and cut["P0"]["sr"]["n_bins"] == int(np.sum(K <= 0.5))
    assert "P_pp" not in cut


def test_p2_skips_bins_where_hr_is_not_positive(tmp_path):
    hr = write_rsd(tmp_path / "hr.txt", 1.0, p2_scale=-1.0)  # P2_HR < 0 everywhere: no bin enters
    lr, sr = write_rsd(tmp_path / "lr.txt", 0.8), write_rsd(tmp_path / "sr.txt", 1.05)
    g = velocity_by_redshift([lr], [hr], [sr], multipole_item, "t", "rsd")[4.0]
    m = velocity_metrics(g, None, 16.0, {"P0": 0.1, "P2": 0.1, "P_pp": 0.1})
    assert m["P2"]["sr"]["n_bins"] == 0 and m["P2"]["pass"] is None
    assert m["P0"]["pass"] is True and m["pass"] is True


def test_without_sr_only_lr_is_reported(tmp_path):
    lr, hr, _ = _group(tmp_path, "rsd", write_rsd, sr_scales=())
    g = velocity_by_redshift(lr, hr, [], multipole_item, "t", "rsd")[4.0]
    m = velocity_metrics(g, None, 16.0, {"P0": 0.1, "P2": 0.1, "P_pp": 0.1})
    assert "sr" not in m["P0"] and m["P0"]["lr"]["max_abs_dev"] == pytest.approx(0.2) and m["pass"] is None


def _base(tmp_path):
    ps = power_set(tmp_path, zs=(4,), n_sr=1)
    hs = hmf_set(tmp_path, zs=(4,), n_sr=1)
    power = {z: {"lr": power_item(d["lr"]), "hr": power_item(d["hr"]), "sr": [power_item(p) for p in d["sr"]]}
             for z, d in ps.items()}
    hmf = {z: {k: hmf_item(p) for k, p in d.items()} for z, d in hs.items()}
    return ps, hs, power, hmf


def test_compute_metrics_velocity_section_and_absence(tmp_path):
    ps, hs, power, hmf = _base(tmp_path)
    crit = figure_defaults()
    plain = compute_metrics(power, hmf, crit, sim="s")
    same = compute_metrics(power, hmf, crit, sim="s", rsd=None, momentum=None)
    assert json.dumps(plain) == json.dumps(same) and summary_table(plain) == summary_table(same)
    assert "velocity" not in plain and "velocity" not in plain["pass"]
    rsd = velocity_by_redshift(*_group(tmp_path, "rsd", write_rsd, z=4.0), multipole_item, "t", "rsd")
    mom = velocity_by_redshift(*_group(tmp_path, "mom", write_mom, z=4.0), momentum_item, "t", "momentum")
    m = compute_metrics(power, hmf, crit, sim="s", rsd=rsd, momentum=mom)
    v = m["velocity"]["4"]
    assert v["P0"]["sr"]["max_abs_dev"] == pytest.approx(0.05) and v["P0"]["tolerance"] == crit["rsd_p0_tolerance"]
    # 5% is at the default P0 tolerance (not below it): fail; within P2's and P_pp's
    assert v["P0"]["pass"] is False and v["P2"]["pass"] is True and v["P_pp"]["pass"] is True
    assert m["pass"]["velocity"] is False and m["pass"]["all"] == plain["pass"]["all"]  # kept out of 'all'
    assert m["criteria"] == plain["criteria"]
    text = summary_table(m)
    assert "Velocity:" in text and "  P_pp " in text and "velocity FAIL" in text
    json.dumps(m, allow_nan=False)


def test_mismatched_tables_name_both_values(tmp_path):
    hr = write_rsd(tmp_path / "hr.txt")
    cases = {"box_size = 100.0": write_rsd(tmp_path / "box.txt", box=50.0),
             "axis = z": write_rsd(tmp_path / "axis.txt", axis="x"),
             "z = 2": write_rsd(tmp_path / "z2.txt", z=2.0)}
    for expected, lr in cases.items():
        with pytest.raises(SrsimError) as err:
            velocity_by_redshift([lr], [hr], [], multipole_item, "velocity (rsd)", "rsd")
        msg = str(err.value)
        assert lr in msg and expected in msg, msg
        assert {"box_size = 100.0": "box_size = 50.0", "axis = z": "axis = x", "z = 2": "z = 4"}[expected] in msg


# --- real MP-Gadget tables (n16 LR, n32 HR, same seed) --------------------------------------------------------

@pytest.fixture(scope="module")
def real_tables(mpgadget_dir, tmp_path_factory):
    """`srsim power --rsd z` and `--momentum` tables of the z = 4 snapshots, both on a 32^3 mesh."""
    out = tmp_path_factory.mktemp("vel")
    paths = {}
    for res in ("n16", "n32"):
        snap = mpgadget_dir / res / "output" / "PART_000"
        for kind, flag in (("rsd", ["--rsd", "z"]), ("momentum", ["--momentum"])):
            p = out / f"{kind}_{res}.txt"
            assert main(["power", str(snap), str(p), "--mesh", "32", *flag]) == 0
            paths[kind, res] = str(p)
    return paths


def test_figure_cli_from_real_tables(tmp_path, real_tables, capsys):
    from PIL import Image

    t = real_tables
    base = ["figure", "velocity", "--rsd-lr", t["rsd", "n16"], "--rsd-hr", t["rsd", "n32"],
            "--momentum-lr", t["momentum", "n16"], "--momentum-hr", t["momentum", "n32"]]
    out = tmp_path / "v.png"
    assert main([*base, "--out", str(out)]) == 0
    with Image.open(out) as img:
        w1, h1 = img.size
    assert out.with_suffix(".pdf").exists() and w1 > 300 and h1 > 600
    # SR path: the HR tables stand in for SR (only inside this test)
    out_sr = tmp_path / "v_sr.png"
    assert main([*base, "--rsd-sr", t["rsd", "n32"], "--momentum-sr", t["momentum", "n32"],
                 "--out", str(out_sr)]) == 0
    assert out_sr.exists() and out_sr.read_bytes() != out.read_bytes()
    # bad input: a multipole table given as HR momentum, a different line of sight
    capsys.readouterr()
    assert main(["figure", "velocity", "--rsd-lr", t["rsd", "n16"], "--rsd-hr", t["momentum", "n32"],
                 "--out", str(tmp_path / "bad.png")]) == 2
    assert t["momentum", "n32"] in capsys.readouterr().err


def test_metrics_cli_with_real_velocity_tables(tmp_path, real_tables, capsys):
    ps, hs, _, _ = _base(tmp_path)
    t = real_tables
    common = ["metrics", "--power-lr", str(ps[4]["lr"]), "--power-hr", str(ps[4]["hr"]), "--power-sr",
              str(ps[4]["sr"][0]), "--hmf-lr", str(hs[4]["lr"]), "--hmf-hr", str(hs[4]["hr"]), "--hmf-sr",
              str(hs[4]["sr"])]
    plain = tmp_path / "plain" / "metrics.json"
    assert main([*common, "--out", str(plain)]) == 0
    out = tmp_path / "vel" / "metrics.json"
    assert main([*common, "--rsd-lr", t["rsd", "n16"], "--rsd-hr", t["rsd", "n32"], "--rsd-sr", t["rsd", "n32"],
                 "--momentum-lr", t["momentum", "n16"], "--momentum-hr", t["momentum", "n32"],
                 "--out", str(out)]) == 0
    m, p = json.loads(out.read_text()), json.loads(plain.read_text())
    assert {k: v for k, v in m.items() if k != "velocity"}["power"] == p["power"]
    v = m["velocity"]["4"]
    assert v["P0"]["sr"]["max_abs_dev"] == 0.0 and v["P0"]["pass"] is True  # HR as SR: identical
    assert "sr" not in v["P_pp"] and v["P_pp"]["lr"]["n_bins"] > 5 and v["P_pp"]["pass"] is None
    # LR at 16^3 misses power only near its Nyquist; on the largest scales it agrees with HR within 15%
    assert abs(v["P0"]["lr"]["ratio"][0] - 1) < 0.15
    capsys.readouterr()
    assert main([*common, "--rsd-sr", t["rsd", "n32"], "--out", str(tmp_path / "x.json")]) == 2
    assert "without --rsd-lr" in capsys.readouterr().err


# --- halo velocity dispersions per mass bin (FOF catalogues with velocities) -----------------------------------

EDGES = np.linspace(10.5, 14.5, 9)  # hmf_set's bins (0.5 dex)


def halo_catalog(path, n=6000, seed=0, scale=1.0, z=4.0, velocity=True, box=25.0, few_top=None):
    """A synthetic FOF catalogue: log10 M uniform in [10.5, 14.0) (bin 13.5-14 well filled, 14-14.5 empty),
    sigma_v = scale * 80 (M / 1e12)^(1/3) km/s times 10% lognormal scatter; few_top: that many halos added in
    the 14.0-14.5 bin with twice that dispersion (too few to test). Returns the path."""
    from srsim.io.catalog import write_catalog

    rng = np.random.default_rng(seed)
    logm = rng.uniform(10.5, 14.0, n)
    sv = 80.0 * 10 ** ((logm - 12.0) / 3) * np.exp(0.1 * rng.standard_normal(n))
    if few_top:
        top = rng.uniform(14.0, 14.5, few_top)
        logm, sv = np.append(logm, top), np.append(sv, 2 * 80.0 * 10 ** ((top - 12.0) / 3))
    cat = {"npart": np.maximum(32, (10**logm / 1e9).astype(np.int64)), "mass": 10**logm,
           "pos": rng.uniform(0, box, (logm.size, 3))}
    if velocity:
        cat["vel"] = rng.normal(0, 300, (logm.size, 3))
        cat["sigma_v"] = scale * sv
    write_catalog(path, cat, {"box_size": box, "redshift": z, "particle_mass": 1e9, "min_members": 32})
    return str(path)


def test_binned_sigma_v_is_the_per_bin_mean_and_standard_error():
    from srsim.analysis.hmf import mass_function
    from srsim.metrics import binned_sigma_v

    rng = np.random.default_rng(3)
    mass = 10 ** rng.uniform(10.0, 15.0, 2000)
    mass[:3] = 10 ** EDGES[[1, 4, 8]]  # on edges: [lo, hi) bins, the top edge left out, as in the HMF
    sv = rng.uniform(50, 500, mass.size)
    n, mean, sem = binned_sigma_v(mass, sv, EDGES)
    assert np.array_equal(n, mass_function([mass], 1.0, EDGES)["n_halos"])
    logm = np.log10(mass)
    for i in range(EDGES.size - 1):
        sel = sv[(logm >= EDGES[i]) & (logm < EDGES[i + 1])]
        assert mean[i] == pytest.approx(sel.mean(), rel=1e-12)
        assert sem[i] == pytest.approx(sel.std(ddof=1) / np.sqrt(sel.size), rel=1e-10)
    one, m1, s1 = binned_sigma_v([1e11], [123.0], EDGES)
    assert one[1] == 1 and m1[1] == 123.0 and np.isnan(s1[1]) and np.isnan(m1[0])


def test_sigma_v_equal_passes_and_twenty_percent_high_fails(tmp_path):
    from srsim.metrics import halo_velocity_metrics
    from srsim.plots.tables import halo_item

    hr = halo_item(halo_catalog(tmp_path / "hr.h5", few_top=10))
    same = [halo_item(halo_catalog(tmp_path / "sr0.h5", few_top=10))]  # the same halos: ratio exactly 1
    high = [halo_item(halo_catalog(tmp_path / f"hi{i}.h5", seed=10 + i, scale=1.2)) for i in range(2)]
    ok = halo_velocity_metrics(hr, same, EDGES, 0.1, 50)
    tested = [b for b in ok["bins"] if b["tested"]]
    assert len(tested) == 7 and ok["n_tested"] == 7 and ok["pass"] is True and ok["max_abs_dev_sr"] == 0.0
    # the 14-14.5 bin: 10 HR halos (< 50) at twice the dispersion, untested whatever SR does there
    top = ok["bins"][7]
    assert top["n_halos_hr"] == 10 and top["tested"] is False and top["pass"] is None
    # the 13.5-14 bin's mean: 80 * 10^(1.75/3) km/s about, with a small standard error
    b = ok["bins"][6]
    assert b["sigma_v_hr"] == pytest.approx(80 * 10 ** (1.75 / 3), rel=0.05) and 0 < b["err_hr"] < 0.02 * b["sigma_v_hr"]
    bad = halo_velocity_metrics(hr, high, EDGES, 0.1, 50)
    assert bad["pass"] is False and all(b["pass"] is False for b in bad["bins"] if b["tested"])
    for b in bad["bins"][:7]:  # other halos (other seeds), same distribution: 1.2 within the errors
        assert b["ratio_sr"] == pytest.approx(1.2, abs=4 * b["err_ratio_sr"]) and not b["within_errors"]
        assert b["n_halos_sr"] > b["n_halos_hr"]  # two realizations pooled
    assert [r["max_abs_dev"] for r in bad["realizations"]] == pytest.approx([0.2, 0.2], abs=0.03)
    # a looser tolerance lets 1.2 through; a higher halo minimum tests fewer bins
    assert halo_velocity_metrics(hr, high, EDGES, 0.25, 50)["pass"] is True
    assert halo_velocity_metrics(hr, same, EDGES, 0.1, 10**6)["pass"] is None


def test_catalogues_without_velocities(tmp_path):
    from srsim.metrics import halo_velocity_metrics
    from srsim.plots.tables import halo_item

    hr = halo_item(halo_catalog(tmp_path / "hr.h5"))
    sr = [halo_item(halo_catalog(tmp_path / "sr.h5", seed=1))]
    bare = halo_catalog(tmp_path / "bare.h5", seed=2, velocity=False)
    for args in ((halo_item(bare), sr), (hr, [*sr, halo_item(bare)])):
        with pytest.raises(SrsimError, match=rf"{bare}: halo catalogue has no velocities"):
            halo_velocity_metrics(*args, EDGES, 0.1, 50)
    # LR and trivial catalogues without velocities (the trivial predictor has none) are left out, listed
    lr = halo_item(halo_catalog(tmp_path / "lr.h5", seed=3, scale=0.7))
    m = halo_velocity_metrics(hr, sr, EDGES, 0.1, 50, lr=lr, trivial=halo_item(bare))
    assert m["no_velocity"] == [bare] and "ratio_trivial" not in m["bins"][0]
    assert m["bins"][3]["ratio_lr"] == pytest.approx(0.7, rel=0.05) and m["lr"] == lr.path


def test_compute_metrics_and_cli_with_halo_velocities(tmp_path, capsys):
    from srsim.plots.tables import halo_tables

    ps, hs, power, hmf = _base(tmp_path)
    crit = figure_defaults()
    assert crit["sigma_v_tolerance"] == 0.1
    cats = {"hr": halo_catalog(tmp_path / "hr.h5"), "lr": halo_catalog(tmp_path / "lr.h5", seed=3, scale=0.7),
            "sr": [halo_catalog(tmp_path / "sr0.h5", seed=1, scale=1.2)],
            "trivial": halo_catalog(tmp_path / "tr.h5", seed=4, velocity=False)}
    halos = halo_tables([cats["lr"]], [cats["hr"]], cats["sr"], [cats["trivial"]], "t")
    plain = compute_metrics(power, hmf, crit, sim="s")
    m = compute_metrics(power, hmf, crit, sim="s", halos=halos)
    sv = m["velocity"]["4"]["sigma_v"]
    assert sv["pass"] is False and sv["n_tested"] == 7 and sv["tolerance"] == 0.1 and sv["min_halos"] == 50
    assert [b["log10M_lo"] for b in sv["bins"]] == pytest.approx(EDGES[:-1].tolist())  # the HR HMF table's bins
    assert m["velocity"]["4"]["pass"] is False and m["pass"]["velocity"] is False
    assert m["pass"]["all"] == plain["pass"]["all"] and "P0" not in m["velocity"]["4"]  # out of 'all'
    text = summary_table(m)
    assert "Halo sigma_v:" in text and "sigma_v verdict: FAIL (7 bins tested" in text and "Velocity: |X" not in text
    assert f"left out: {cats['trivial']}" in text
    json.dumps(m, allow_nan=False)
    # with the power-based velocity statistics too: one section per redshift holding both
    rsd = velocity_by_redshift(*_group(tmp_path, "rsd", write_rsd, sr_scales=(1.0,), z=4.0), multipole_item, "t",
                               "rsd")
    both = compute_metrics(power, hmf, crit, sim="s", rsd=rsd, halos=halos)
    assert list(both["velocity"]) == ["4"] and both["velocity"]["4"]["P0"]["pass"] is True
    assert both["velocity"]["4"]["pass"] is False and "Velocity: |X" in summary_table(both)
    # the CLI: --fof-* give the same section
    common = ["metrics", "--power-lr", str(ps[4]["lr"]), "--power-hr", str(ps[4]["hr"]), "--power-sr",
              str(ps[4]["sr"][0]), "--hmf-lr", str(hs[4]["lr"]), "--hmf-hr", str(hs[4]["hr"]), "--hmf-sr",
              str(hs[4]["sr"])]
    out = tmp_path / "cli" / "metrics.json"
    assert main([*common, "--fof-lr", cats["lr"], "--fof-hr", cats["hr"], "--fof-sr", *cats["sr"],
                 "--fof-trivial", cats["trivial"], "--out", str(out)]) == 0
    assert json.loads(out.read_text())["velocity"]["4"]["sigma_v"] == json.loads(json.dumps(sv))
    assert "Halo sigma_v:" in out.with_suffix(".txt").read_text()
    capsys.readouterr()
    assert main([*common, "--fof-sr", *cats["sr"], "--out", str(tmp_path / "x.json")]) == 2
    assert "without --fof-hr" in capsys.readouterr().err
    z2 = halo_catalog(tmp_path / "z2.h5", z=2.0)
    assert main([*common, "--fof-hr", cats["hr"], "--fof-sr", z2, "--out", str(tmp_path / "y.json")]) == 2
    assert f"{z2} is at z = 2" in capsys.readouterr().err


def test_metrics_cli_halo_velocities_from_real_mpgadget_catalogues(tmp_path, mpgadget_dir, capsys):
    """`srsim fof` + `srsim hmf` of the real z = 0 snapshots (n16 LR, n32 HR), then `srsim metrics --fof-*`
    with HR standing in for SR (only inside this test): every tested bin has SR/HR exactly 1."""
    ana = json.dumps({"analysis": {"fof_min_members": 8, "hmf_log10m_min": 12.0, "hmf_log10m_max": 15.0,
                                   "hmf_bins": 6}})
    paths = {}
    for res in ("n16", "n32"):
        snap = mpgadget_dir / res / "output" / "PART_002"
        paths["fof", res], paths["hmf", res] = str(tmp_path / f"{res}.h5"), str(tmp_path / f"{res}_hmf.txt")
        assert main(["fof", str(snap), paths["fof", res], "--config", ana]) == 0
        assert main(["hmf", paths["fof", res], paths["hmf", res], "--config", ana]) == 0
    (tmp_path / "p0").mkdir()
    pz = power_set(tmp_path / "p0", zs=(0,), n_sr=1)
    out = tmp_path / "m" / "metrics.json"
    args = ["metrics", "--power-lr", str(pz[0]["lr"]), "--power-hr", str(pz[0]["hr"]), "--power-sr",
            str(pz[0]["sr"][0]), "--hmf-lr", paths["hmf", "n16"], "--hmf-hr", paths["hmf", "n32"],
            "--hmf-sr", paths["hmf", "n32"], "--fof-lr", paths["fof", "n16"], "--fof-hr", paths["fof", "n32"],
            "--fof-sr", paths["fof", "n32"], "--out", str(out), "--config", json.dumps({"figures": {"hmf_min_halos": 5}})]
    assert main(args) == 0
    sv = json.loads(out.read_text())["velocity"]["0"]["sigma_v"]
    tested = [b for b in sv["bins"] if b["tested"]]
    assert tested and sv["pass"] is True and all(b["ratio_sr"] == 1.0 for b in tested)
    # MP-Gadget halos of 1e13-1e15 Msun/h: a few hundred km/s, rising about as the virial M^(1/3), i.e. by
    # 10^(1/6) = 1.47 per 0.5 dex bin
    means = [b["sigma_v_hr"] for b in tested]
    assert all(50 < m < 2000 for m in means) and len(means) >= 2
    assert all(1.25 < b / a < 1.75 for a, b in zip(means, means[1:])), means
    assert any(b.get("ratio_lr") is not None for b in sv["bins"])
    assert "Halo sigma_v:" in capsys.readouterr().out
