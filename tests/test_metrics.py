"""Metrics: power-spectrum deviations, HMF ratios with errors, pass/fail, metrics.json and the summary table."""

import json
import math

import numpy as np
import pytest

from plot_synthetic import hmf_set, power_set, write_hmf_table
from srsim.errors import SrsimError
from srsim.metrics import combine_pass, compute_metrics, hmf_metrics, hmf_ratio, power_deviation, summary_table
from srsim.plots.tables import hmf_item, power_item


def figure_defaults() -> dict:
    """The schema's defaults of the `figures` section (never repeated here)."""
    from srsim.config import validate_sections

    return validate_sections({"figures": {}}, "defaults")["figures"]

K = np.linspace(0.1, 30.0, 60)
P = 1e3 * K**-1.5


def test_identical_spectra_have_zero_deviation():
    d = power_deviation(K, P.copy(), P, k_max=16.0)
    assert d["max_abs_dev"] == 0.0 and d["rms_dev"] == 0.0
    assert d["n_bins"] == int(np.sum(K <= 16.0)) and d["k_max_used"] <= 16.0


def test_constant_offset_gives_that_offset():
    d = power_deviation(K, 1.03 * P, P, k_max=16.0)
    assert d["max_abs_dev"] == pytest.approx(0.03, rel=1e-12)
    assert d["rms_dev"] == pytest.approx(0.03, rel=1e-12)
    d = power_deviation(K, 0.9 * P, P, k_max=16.0)
    assert d["max_abs_dev"] == pytest.approx(0.1, rel=1e-12)


def test_offsets_beyond_kmax_and_empty_bins_are_ignored():
    test = np.where(K > 16.0, 2.0 * P, P)
    assert power_deviation(K, test, P, k_max=16.0)["max_abs_dev"] == 0.0
    test = P.copy()
    test[3] *= 1.5
    modes = np.full(K.size, 10)
    modes[3] = 0
    assert power_deviation(K, test, P, k_max=16.0, n_modes=modes)["max_abs_dev"] == 0.0
    assert power_deviation(K, test, P, k_max=16.0)["max_abs_dev"] == pytest.approx(0.5)


def test_rms_and_max_of_a_known_pattern():
    sel = K <= 16.0
    signs = np.where(np.arange(K.size) % 2 == 0, 1.0, -1.0)
    amp = np.where(np.arange(K.size) % 4 == 0, 0.04, 0.02)
    d = power_deviation(K, P * (1 + signs * amp), P, k_max=16.0)
    assert d["max_abs_dev"] == pytest.approx(0.04)
    assert d["rms_dev"] == pytest.approx(math.sqrt(np.mean(amp[sel] ** 2)))


def test_no_bin_below_kmax_gives_none():
    d = power_deviation(K, P, P, k_max=0.01)
    assert d["max_abs_dev"] is None and d["n_bins"] == 0


def test_hmf_ratio_and_error_propagation():
    n_ref = np.array([1e-2, 1e-3, 1e-4, 0.0])
    e_ref = np.array([1e-3, 2e-4, 5e-5, 0.0])
    n_t = np.array([2e-2, 1e-3, 0.0, 1e-5])
    e_t = np.array([1e-3, 1e-4, 0.0, 1e-5])
    r, e = hmf_ratio(n_t, e_t, n_ref, e_ref)
    assert r[0] == pytest.approx(2.0) and r[1] == pytest.approx(1.0) and r[2] == 0.0
    assert math.isnan(r[3]) and math.isnan(e[3])
    assert e[0] == pytest.approx(2.0 * math.hypot(0.05, 0.1))
    assert e[1] == pytest.approx(math.hypot(0.1, 0.2))


def _hmf(tmp_path, name, counts, volume=1e6, n_catalogs=1, z=0.0):
    lo = np.arange(len(counts)) * 0.5 + 11.0
    return hmf_item(write_hmf_table(tmp_path / name, lo, lo + 0.5, np.asarray(counts), volume=volume,
                                    n_catalogs=n_catalogs, redshift=z))


def test_hmf_pass_fail_and_untested_bins(tmp_path):
    hr = _hmf(tmp_path, "hr.txt", [10000, 4000, 10])
    lr = _hmf(tmp_path, "lr.txt", [0, 0, 5])
    good = _hmf(tmp_path, "sr_good.txt", [3 * 10300, 3 * 3900, 3 * 30], n_catalogs=3)
    m = hmf_metrics(lr, hr, good, tolerance=0.1, min_halos=50)
    assert [b["tested"] for b in m["bins"]] == [True, True, False]
    assert m["pass"] is True and m["n_tested"] == 2
    assert m["max_abs_dev_sr"] == pytest.approx(0.03)
    assert m["bins"][0]["ratio_sr"] == pytest.approx(1.03)
    assert m["bins"][2]["ratio_lr"] == pytest.approx(0.5)
    bad = _hmf(tmp_path, "sr_bad.txt", [3 * 10000, 3 * 6000, 3 * 10], n_catalogs=3)
    m = hmf_metrics(lr, hr, bad, tolerance=0.1, min_halos=50)
    assert m["pass"] is False and m["bins"][1]["pass"] is False and m["bins"][0]["pass"] is True
    # a 30% deviation on 60 halos is within 2 sigma of the Poisson errors: statistically consistent
    small_hr = _hmf(tmp_path, "hr_small.txt", [60])
    small_sr = _hmf(tmp_path, "sr_small.txt", [78])
    m = hmf_metrics(_hmf(tmp_path, "lr_small.txt", [0]), small_hr, small_sr, tolerance=0.1, min_halos=50)
    assert m["bins"][0]["within_tolerance"] is False and m["bins"][0]["within_errors"] is True
    assert m["pass"] is True
    none = hmf_metrics(lr, hr, good, tolerance=0.1, min_halos=10**6)
    assert none["pass"] is None and none["n_tested"] == 0


def test_mismatched_bins_fail_loudly(tmp_path):
    hr = _hmf(tmp_path, "hr.txt", [100, 10])
    sr = _hmf(tmp_path, "sr.txt", [100, 10, 1])
    with pytest.raises(SrsimError, match="sr.txt"):
        hmf_metrics(hr, hr, sr, 0.1, 20)
    ps = power_set(tmp_path, zs=(0,), n_sr=1)[0]
    (tmp_path / "other").mkdir()
    other = power_set(tmp_path / "other", zs=(0,), n_mesh=32, n_sr=1)[0]
    from srsim.metrics import power_metrics

    with pytest.raises(SrsimError, match="k bins differ"):
        power_metrics(power_item(ps["lr"]), power_item(ps["hr"]), [power_item(other["sr"][0])], 16.0, 0.05)


def test_combine_pass():
    assert combine_pass([True, None, True]) is True
    assert combine_pass([True, False]) is False
    assert combine_pass([None, None]) is None


def test_compute_metrics_json_and_table(tmp_path):
    ps = power_set(tmp_path, zs=(2, 0), n_sr=2, sr_offset=0.01)
    hs = hmf_set(tmp_path, zs=(2, 0), n_sr=3)
    power = {z: {"lr": power_item(d["lr"]), "hr": power_item(d["hr"]), "sr": [power_item(p) for p in d["sr"]]}
             for z, d in ps.items()}
    hmf = {z: {k: hmf_item(p) for k, p in d.items()} for z, d in hs.items()}
    crit = {**figure_defaults(), "k_max": 16.0, "power_tolerance": 0.05, "hmf_tolerance": 0.1, "hmf_min_halos": 50}
    m = compute_metrics(power, hmf, crit, sim="test00")
    assert "trivial" not in m["power"]["0"] and "sr_beats_trivial_hmf" not in m["hmf"]["0"]  # old callers
    assert list(m["power"]) == ["2", "0"]
    # realizations at +1% and -1% average out (to the 0.2% noise); each alone is ~1% off; LR is far off
    assert m["power"]["0"]["sr"]["max_abs_dev"] < 0.01
    for r in m["power"]["0"]["sr"]["realizations"]:
        assert 0.005 < r["max_abs_dev"] < 0.02
    assert m["power"]["0"]["lr"]["max_abs_dev"] > 0.5
    assert m["pass"]["power"] is True
    text = summary_table(m)
    assert "Overall" in text and "PASS" in text
    json.dumps(m, allow_nan=False)  # strict JSON: no NaN anywhere


def test_metrics_cli(tmp_path, capsys):
    from srsim.cli import main

    ps = power_set(tmp_path, zs=(0,), n_sr=2)
    hs = hmf_set(tmp_path, zs=(0,), n_sr=2)
    out = tmp_path / "m" / "metrics.json"
    code = main(["metrics", "--power-lr", str(ps[0]["lr"]), "--power-hr", str(ps[0]["hr"]), "--power-sr",
                 *map(str, ps[0]["sr"]), "--hmf-lr", str(hs[0]["lr"]), "--hmf-hr", str(hs[0]["hr"]), "--hmf-sr",
                 str(hs[0]["sr"]), "--out", str(out), "--config", '{"figures": {"k_max": 8.0}}'])
    assert code == 0
    m = json.loads(out.read_text())
    assert m["criteria"]["k_max"] == 8.0 and m["power"]["0"]["sr"]["k_max_used"] <= 8.0
    assert out.with_suffix(".txt").read_text() in capsys.readouterr().out
    # an SR table at a redshift without HR fails loudly, naming the problem
    (tmp_path / "z1").mkdir()
    ps2 = power_set(tmp_path / "z1", zs=(1,), n_sr=1)
    code = main(["metrics", "--power-lr", str(ps[0]["lr"]), "--power-hr", str(ps[0]["hr"]), "--power-sr",
                 str(ps[0]["sr"][0]), str(ps2[1]["sr"][0]), "--hmf-lr", str(hs[0]["lr"]), "--hmf-hr",
                 str(hs[0]["hr"]), "--hmf-sr", str(hs[0]["sr"]), "--out", str(out)])
    assert code == 2
    assert "no HR counterpart" in capsys.readouterr().err


def test_trivial_column_and_the_bars_flip_when_they_should(tmp_path):
    """SR at HR x (1 +- 1%), trivial = LR's small-scale deficit: SR beats both; swap roles and it does not."""
    from plot_synthetic import write_power_table
    from srsim.metrics import power_metrics

    ps = power_set(tmp_path, zs=(0,), n_sr=1, sr_offset=0.01)[0]
    lr, hr, sr = power_item(ps["lr"]), power_item(ps["hr"]), [power_item(p) for p in ps["sr"]]
    k, p_hr = hr[0]["k"], hr[0]["P"]
    common = dict(box_size=hr[1]["box_size"], n_mesh=hr[1]["n_mesh"], n_particles=hr[1]["n_particles"], redshift=0)
    k_nyq = math.pi * 16 / 25.0  # power_set: n_lr = 16 in a 25 Mpc/h box
    tr = power_item(write_power_table(tmp_path / "tr.txt", k, p_hr * (1 - 0.3 * (k > 0.5 * k_nyq)), **common))
    m = power_metrics(lr, hr, sr, 16.0, 0.05, trivial=tr, target_k_max=8.0, target_tolerance=0.1)
    assert m["k_nyquist_lr"] == pytest.approx(k_nyq)
    assert m["trivial"]["max_abs_dev"] == pytest.approx(0.3, rel=1e-6)
    assert m["sr_beats_trivial_power"] is True and m["sr_beats_lr_power"] is True
    assert m["target_power"]["pass"] is True and m["target_power"]["max_abs_dev"] < 0.02
    # a trivial predictor that matches HR above the LR Nyquist (but not below it) beats SR there
    good = power_item(write_power_table(tmp_path / "tr_good.txt", k, p_hr * (1 + 0.5 * (k <= k_nyq)), **common))
    m = power_metrics(lr, hr, sr, 16.0, 0.05, trivial=good)
    assert m["sr_beats_trivial_power"] is False and "target_power" not in m
    # an SR 15% low on one bin below 8 h/Mpc misses the target bar
    bad_p = p_hr.copy()
    bad_p[np.argmin(np.abs(k - 5.0))] *= 0.85
    bad = [power_item(write_power_table(tmp_path / "sr_bad.txt", k, bad_p, **common))]
    assert power_metrics(lr, hr, bad, 16.0, 0.05, trivial=tr, target_k_max=8.0,
                         target_tolerance=0.1)["target_power"]["pass"] is False
    # HMF: trivial 40% low in the tested bins, SR within 3%: SR beats trivial, target holds
    hr_h = _hmf(tmp_path, "hr.txt", [10000, 4000, 10])
    lr_h = _hmf(tmp_path, "lr.txt", [0, 0, 5])
    sr_h = _hmf(tmp_path, "sr.txt", [3 * 10300, 3 * 3900, 3 * 30], n_catalogs=3)
    tr_h = _hmf(tmp_path, "tr_h.txt", [6000, 2400, 10])
    h = hmf_metrics(lr_h, hr_h, sr_h, 0.1, 50, trivial=tr_h, target_tolerance=0.2)
    assert h["sr_beats_trivial_hmf"] is True and h["target_hmf"]["pass"] is True
    assert h["bins"][0]["ratio_trivial"] == pytest.approx(0.6) and h["bins"][1]["n_halos_trivial"] == 2400
    # the untested bin (10 HR halos) does not count; a tested one where trivial is exact flips the bar
    assert hmf_metrics(lr_h, hr_h, sr_h, 0.1, 50, trivial=_hmf(tmp_path, "tr2.txt", [6000, 2400, 0]))[
        "sr_beats_trivial_hmf"] is True
    h = hmf_metrics(lr_h, hr_h, sr_h, 0.1, 50, trivial=_hmf(tmp_path, "tr3.txt", [10000, 2400, 10]),
                    target_tolerance=0.02)
    assert h["sr_beats_trivial_hmf"] is False and h["target_hmf"]["pass"] is False


def test_metrics_cli_with_trivial_tables(tmp_path, capsys):
    from srsim.cli import main

    ps = power_set(tmp_path, zs=(2, 0), n_sr=2)
    hs = hmf_set(tmp_path, zs=(2, 0), n_sr=2)
    out = tmp_path / "metrics.json"
    args = ["metrics", "--out", str(out)]
    for kind in ("lr", "hr", "sr"):
        args += [f"--power-{kind}", *(str(p) for z in ps for p in np.atleast_1d(ps[z][kind]))]
        args += [f"--hmf-{kind}", *(str(hs[z][kind]) for z in hs)]
    # the LR tables stand in for the trivial predictor (what an untrained network returns, roughly)
    code = main(args + ["--power-trivial", *(str(ps[z]["lr"]) for z in ps),
                        "--hmf-trivial", *(str(hs[z]["lr"]) for z in hs)])
    assert code == 0
    m = json.loads(out.read_text())
    for z in ("2", "0"):
        assert m["power"][z]["trivial"]["max_abs_dev"] == m["power"][z]["lr"]["max_abs_dev"]
        assert m["power"][z]["sr_beats_trivial_power"] is True and m["power"][z]["sr_beats_lr_power"] is True
        assert m["hmf"][z]["sr_beats_trivial_hmf"] is True
    assert m["bars"]["redshifts"] == ["2", "0"] and m["bars"]["sr_beats_trivial_power"] is True
    assert m["criteria"]["target_k_max"] == figure_defaults()["target_k_max"]
    text = out.with_suffix(".txt").read_text()
    assert "Tr max" in text and "Tr/HR" in text and "sr_beats_trivial_hmf yes" in text
    # a trivial table missing at one redshift fails loudly
    capsys.readouterr()
    assert main(args + ["--power-trivial", str(ps[0]["lr"])]) == 2
    assert "no trivial power table at z = 2" in capsys.readouterr().err


def _big_hmf(tmp_path, name, counts, volume, **meta):
    lo = np.arange(len(counts)) * 0.5 + 11.0
    return hmf_item(write_hmf_table(tmp_path / name, lo, lo + 0.5, np.asarray(counts), volume=volume, n_catalogs=1,
                                    redshift=0.0, **meta))


def test_bigbox_hmf_metrics_pass_and_fail(tmp_path):
    """Fig. 6's claim on synthetic tables: a 20^3 big box (LR limit 20 x 1e11 = 10^12.3 Msun/h) against a 10^3 test
    box. Bins [11, 11.5) and [11.5, 12) lie below the limit, [12, 12.5) straddles it, the rest lie above."""
    from srsim.metrics import bigbox_hmf_metrics, lr_mass_limit

    v_big, v_hr = 8000.0, 1000.0
    res = {"particle_mass": 1e11, "min_members": 20}
    lr = _big_hmf(tmp_path, "lr.txt", [0, 0, 300, 2000, 800, 30], v_big, **res)
    hr = _hmf(tmp_path, "hr.txt", [5000, 2000, 300, 40, 10, 0], volume=v_hr)
    # SR: HR's number densities below the limit (8x HR's counts: 8x the volume), LR's counts above it
    good = _big_hmf(tmp_path, "sr_good.txt", [8 * 5100, 8 * 1960, 3000, 2040, 790, 45], v_big)
    limit = lr_mass_limit(lr.meta, lr.path)
    assert limit == pytest.approx(math.log10(2e12))
    m = bigbox_hmf_metrics(lr, good, hr, tolerance=0.1, min_halos=50, log10m_lr_limit=limit)
    assert [b["side"] for b in m["bins"]] == ["below", "below", "straddles", "above", "above", "above"]
    # tested: below where HR has >= 50 halos, above where LR has; the straddling bin never
    assert [b["tested"] for b in m["bins"]] == [True, True, False, True, True, False]
    assert m["bins"][0]["ratio_sr_hr"] == pytest.approx(1.02)  # dn/dlog10M, not the (8x) counts
    assert m["bins"][3]["ratio_sr_lr"] == pytest.approx(1.02) and m["bins"][4]["ratio_sr_lr"] == pytest.approx(0.9875)
    assert m["n_tested_below"] == 2 and m["n_tested_above"] == 2
    assert m["pass_below"] is True and m["pass_above"] is True and m["pass"] is True
    # an SR that stays at LR resolution (no halos below the limit) and overshoots LR by 30% above it fails both
    bad = _big_hmf(tmp_path, "sr_bad.txt", [0, 8 * 1000, 3000, 2600, 800, 45], v_big)
    m = bigbox_hmf_metrics(lr, bad, hr, tolerance=0.1, min_halos=50, log10m_lr_limit=limit)
    assert [b["pass"] for b in m["bins"]] == [False, False, None, False, True, None]
    assert m["pass_below"] is False and m["pass_above"] is False and m["pass"] is False
    # the 2-sigma rule of the test-box metrics: 30% off on 60 LR halos is consistent
    few = bigbox_hmf_metrics(_big_hmf(tmp_path, "lr_few.txt", [0, 0, 0, 60, 0, 0], v_big, **res),
                             _big_hmf(tmp_path, "sr_few.txt", [0, 0, 0, 78, 0, 0], v_big), hr, 0.1, 50, limit)
    assert few["bins"][3]["within_tolerance"] is False and few["bins"][3]["within_errors"] is True
    assert few["pass_above"] is True
    # the big box's SR and LR must share bins and volume
    with pytest.raises(SrsimError, match="sr_short.txt"):
        bigbox_hmf_metrics(lr, _big_hmf(tmp_path, "sr_short.txt", [1, 2], v_big), hr, 0.1, 50, limit)
    with pytest.raises(SrsimError, match="volume"):
        bigbox_hmf_metrics(lr, _big_hmf(tmp_path, "sr_v.txt", [1] * 6, v_hr), hr, 0.1, 50, limit)
    with pytest.raises(SrsimError, match="particle_mass or min_members"):
        lr_mass_limit(hr.meta, hr.path)

    # metrics.json: the 'bigbox' section, its verdict in 'pass' and the table's section
    hs = hmf_set(tmp_path, zs=(0,), n_sr=1)
    ps = power_set(tmp_path, zs=(0,), n_sr=1)
    power = {0.0: {"lr": power_item(ps[0]["lr"]), "hr": power_item(ps[0]["hr"]), "sr": [power_item(ps[0]["sr"][0])]}}
    hmf = {0.0: {k: hmf_item(p) for k, p in hs[0].items()}}
    for sr, verdict in ((good, True), (bad, False)):
        m = compute_metrics(power, hmf, figure_defaults(), bigbox_hmf={0.0: {"lr": lr, "sr": sr, "hr": hr}})
        assert m["bigbox"]["hmf"]["0"]["pass"] is verdict and m["pass"]["bigbox"] is verdict
        assert m["pass"]["all"] is (verdict and m["pass"]["power"] is not False and m["pass"]["hmf"] is not False)
        text = summary_table(m)
        assert "Big box HMF" in text and f"big box {'PASS' if verdict else 'FAIL'}" in text
        json.dumps(m, allow_nan=False)
    assert "bigbox" not in compute_metrics(power, hmf, figure_defaults())


def test_metrics_cli_with_a_big_box(tmp_path, capsys):
    from srsim.cli import main

    ps = power_set(tmp_path, zs=(0,), n_sr=1)
    hs = hmf_set(tmp_path, zs=(0,), n_sr=1)
    lo = np.linspace(10.5, 14.5, 9)[:-1]
    big = {kind: write_hmf_table(tmp_path / f"big_{kind}.txt", lo, lo + 0.5, np.full(8, 100), volume=50.0**3,
                                 n_catalogs=1, redshift=0.0, particle_mass=3e11, min_members=20)
           for kind in ("lr", "sr")}
    out = tmp_path / "metrics.json"
    args = ["metrics", "--power-lr", str(ps[0]["lr"]), "--power-hr", str(ps[0]["hr"]), "--power-sr",
            str(ps[0]["sr"][0]), "--hmf-lr", str(hs[0]["lr"]), "--hmf-hr", str(hs[0]["hr"]), "--hmf-sr",
            str(hs[0]["sr"]), "--out", str(out)]
    assert main(args + ["--bigbox-hmf-lr", str(big["lr"]), "--bigbox-hmf-sr", str(big["sr"])]) == 0
    m = json.loads(out.read_text())
    bins = m["bigbox"]["hmf"]["0"]["bins"]
    assert [b["side"] for b in bins] == ["below"] * 4 + ["straddles"] + ["above"] * 3
    assert all(b["ratio_sr_lr"] == 1.0 for b in bins) and m["bigbox"]["hmf"]["0"]["pass_above"] is True
    assert "Big box HMF" in out.with_suffix(".txt").read_text()
    capsys.readouterr()
    # a big-box redshift without an SR table fails naming the option
    assert main(args + ["--bigbox-hmf-lr", str(big["lr"])]) == 2
    assert "--bigbox-hmf-sr" in capsys.readouterr().err
