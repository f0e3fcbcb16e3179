"""The Snakemake workflow: the paper's DAG (dry run) and the tiny configuration end to end."""

import json
import subprocess

import numpy as np
import pytest

from dryrun import REPO, SNAKEMAKE, WATCHDOG_S, rule_counts
from dryrun import user_env as _env


def job_counts(target, configfile, *args, cwd=REPO) -> dict[str, int]:
    """{rule: number of jobs} of a dry run of `target`."""
    cmd = [*SNAKEMAKE, target, "--configfile", configfile, *args, "-n", "--quiet", "rules"]
    out = subprocess.run(cmd, cwd=cwd, env=_env(),
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr + out.stdout
    return rule_counts(out.stdout)


# The paper's full job set and the per-redshift targets are checked through the slurm profile in
# tests/test_profiles.py.


def test_demo_dag_runs_every_big_box_rule():
    c = job_counts("all", "config/config.yaml", "--forceall")  # whatever results/demo already holds
    # 4 training + 1 validation + 1 test pair, LR and HR; their 3 redshifts' displacement fields, and the big box's
    assert c["simulate_pair"] == 12 and c["displacement"] == 36 + 1 and c["train"] == 3 and c["fig1"] == 1
    # one trivial-predictor snapshot per test box and redshift, analysed like an SR realization (issue 10):
    # 1 test box x (LR, HR, 3 SR, 1 trivial) x 3 z = 18 snapshots, each with power, FOF, HMF (the training
    # pairs are not analysed; the validation pair is scored by training)
    assert c["generate_trivial"] == 3 and c["generate_test"] == 9
    # the big box at z = 2 (LR and SR): 2 chunk jobs and their merge; P(k), HMF, and FOF in 2^3 domains, merged
    assert (c["simulate_bigbox"], c["generate_bigbox"], c["merge_bigbox"]) == (1, 2, 1)
    assert c["fof_domain"] == 2 * 2**3 and c["fof_partition_index"] == c["fof_merge"] == 2
    assert c["power"] == c["hmf"] == 1 * (2 + 3 + 1) * 3 + 2 and c["fof"] == 1 * (2 + 3 + 1) * 3
    assert c["fig5"] == c["fig6"] == 1 and c["metrics"] == 1


def test_bad_config_fails_naming_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    text = (REPO / "config/config.yaml").read_text().replace("n_hr: 128", "n_hr: 100")
    bad.write_text(text)
    out = subprocess.run([*SNAKEMAKE, "all", "--configfile", str(bad), "-n"], cwd=REPO, env=_env(),
                         capture_output=True, text=True)
    assert out.returncode != 0
    assert "suite.n_hr" in out.stdout + out.stderr


def _run_all(configfile: str, results) -> subprocess.CompletedProcess:
    """Run target `all` of `configfile` into `results` on 2 cores; check that a second run has nothing to do
    (every target exists). Returns the first run (its stdout and stderr hold the summary table)."""
    base = [*SNAKEMAKE, "all", "--configfile", configfile, "--cores", "2", "--config", f"results={results}"]
    run = subprocess.run(base, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=WATCHDOG_S)
    assert run.returncode == 0, run.stderr[-5000:]
    again = subprocess.run([*base, "-n"], cwd=REPO, env=_env(), capture_output=True, text=True)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
    return run


@pytest.mark.slow
def test_tiny_workflow_end_to_end(tmp_path):
    """simulate -> displacement -> train -> generate -> analyze -> figures -> metrics on the tiny config."""
    from srsim.io.power import read_power
    from srsim.io.snapshot import read_header

    results = tmp_path / "results"
    run = _run_all(".test/config/config.yaml", results)

    for kind in ("lr", "hr", "sr0"):
        assert read_header(results / f"snapshots/test00/{kind}/z0").n_particles == (8 if kind == "lr" else 64) ** 3
        table, meta = read_power(results / f"analysis/test00/{kind}/z0/power.txt")
        assert len(table["k"]) > 10 and meta["n_mesh"] == 64
    assert (results / "models/z0/model.pt").is_file()
    # training validated on the val pair (at step 0, then every train.val_every = 3 of 6 steps), which was
    # simulated but not analysed
    val_rows = (results / "models/z0/val.csv").read_text().splitlines()
    assert val_rows[0].startswith("step,l2_ratio") and [r.split(",")[0] for r in val_rows[1:]] == ["0", "3", "6"]
    assert (results / "disp/val00/hr/z0.h5").is_file() and not (results / "analysis/val00").exists()
    for fig in ("fig1_projections", "fig2_realizations", "fig3_power", "fig4_hmf"):
        for ext in ("png", "pdf"):
            assert (results / f"figures/{fig}.{ext}").stat().st_size > 1000, fig

    metrics = json.loads((results / "metrics.json").read_text())
    assert set(metrics) >= {"sim", "criteria", "power", "hmf", "pass"}
    assert set(metrics["power"]) == {"0"} and set(metrics["hmf"]) == {"0"}
    power = metrics["power"]["0"]
    # the metrics are what the power tables say: |P/P_HR - 1| over 0 < k <= k_max, recomputed here
    tables = {kind: read_power(results / f"analysis/test00/{kind}/z0/power.txt")[0] for kind in ("lr", "hr", "sr0")}
    k, p_hr = tables["hr"]["k"], tables["hr"]["P"]
    use = (k > 0) & (k <= power["k_max"]) & (tables["hr"]["n_modes"] > 0) & (p_hr > 0)
    assert use.sum() > 10
    for kind, table in (("sr", tables["sr0"]), ("lr", tables["lr"])):
        dev = table["P"][use] / p_hr[use] - 1
        assert power[kind]["n_bins"] == use.sum()
        assert power[kind]["max_abs_dev"] == pytest.approx(np.abs(dev).max(), rel=1e-9)
        assert power[kind]["rms_dev"] == pytest.approx(np.sqrt(np.mean(dev**2)), rel=1e-9)
    # 8^3 LR particles lack HR's small-scale power between the fundamental and the LR particle Nyquist
    # (2 h/Mpc here), where LR shot noise does not yet dominate
    band = (k > 1.0) & (k < 3.0)
    assert np.all(tables["lr"]["P"][band] < 0.6 * p_hr[band])
    assert "pass" in power and "bins" in metrics["hmf"]["0"]
    # the summary table is printed at the end of the run
    assert "Overall: power" in run.stdout + run.stderr

    _check_bigbox(results, metrics)

    # the README's report command, on this finished run
    from test_readme import readme_snakemake_commands

    (report,) = [argv for argv in readme_snakemake_commands() if "--report" in argv]
    html = results / "report.html"
    args = [html if a.endswith("report.html") else a for a in report[1:]]
    out = subprocess.run([*SNAKEMAKE, *map(str, args), "--configfile", ".test/config/config.yaml",
                          "--config", f"results={results}"], cwd=REPO, env=_env(), capture_output=True, text=True,
                         timeout=WATCHDOG_S)
    assert out.returncode == 0, out.stderr[-3000:]
    assert html.stat().st_size > 10_000


def _check_bigbox(results, metrics):
    """The tiny big box (12.5 Mpc/h, 8^3 LR -> 64^3 SR) of the end-to-end run: the merged SR snapshot of the
    two chunk jobs, its domain-merged FOF against a whole-box FOF, Figs. 5 and 6 and its metrics."""
    import yaml

    from srsim.analysis.fof import fof_snapshot
    from srsim.io.catalog import read_catalog
    from srsim.io.snapshot import read_header, read_particles

    cfg = yaml.safe_load((REPO / ".test/config/config.yaml").read_text())
    big, ana = cfg["bigbox"], cfg["analysis"]
    factor = cfg["suite"]["n_hr"] // cfg["suite"]["n_lr"]
    assert cfg["generate"]["bigbox_jobs"] >= 2 and ana["fof_domains"] >= 2
    # every big-box rule ran: the chunk jobs' markers are consumed by the merge, the FOF slices are temp()
    done = sorted((results / "generate/bigbox/sr0/z0").glob("job*of2.done"))
    assert [p.name for p in done] == ["job0of2.done", "job1of2.done"]
    snap = results / "snapshots/bigbox/sr0/z0"
    header = read_header(snap)
    assert header.n_particles == (factor * big["n_lr"]) ** 3 and header.box_size == pytest.approx(big["box_size"])
    assert not list(snap.parent.glob(".*partial*")), "the merge left the partial output behind"
    data = read_particles(snap, blocks=("Position", "ID"))
    assert len(np.unique(data["ID"])) == header.n_particles
    assert np.all((data["Position"] >= 0) & (data["Position"] < big["box_size"]))
    assert read_header(results / "snapshots/bigbox/lr/z0").n_particles == big["n_lr"] ** 3

    # the sub-region across the periodic edge, super-resolved on its own: exactly its cells' particles, and
    # the full-box SR's positions for them to float32 precision (chunk invariance across the region boundary)
    from srsim.generate.plan import region_from_centre

    (reg,) = big["regions"]
    origin, extent = region_from_centre(reg["centre"], reg["size"], big["box_size"], big["n_lr"])
    assert origin[0] + extent[0] > big["n_lr"], "the test region should cross the box edge"
    sub = read_particles(results / f"snapshots/bigbox/regions/{reg['name']}/z0", blocks=("Position", "ID"))
    n_hr = factor * big["n_lr"]
    axes = [(factor * o + np.arange(factor * e)) % n_hr for o, e in zip(origin, extent)]
    cells = np.stack(np.meshgrid(*axes, indexing="ij")).reshape(3, -1)
    want_ids = np.sort(cells[0] * n_hr**2 + cells[1] * n_hr + cells[2] + 1)
    np.testing.assert_array_equal(np.sort(sub["ID"]), want_ids)
    order = np.argsort(data["ID"])
    at = order[np.searchsorted(data["ID"], sub["ID"], sorter=order)]
    d = sub["Position"] - data["Position"][at]
    d -= big["box_size"] * np.round(d / big["box_size"])
    assert np.abs(d).max() < 1e-5 * big["box_size"], np.abs(d).max()

    # the catalogue merged from 2^3 domains equals the library's whole-box FOF of the same snapshot
    for kind in ("lr", "sr0"):
        merged, attrs = read_catalog(results / f"analysis/bigbox/{kind}/z0/fof.h5")
        assert len(list((results / f"analysis/bigbox/{kind}/z0/fof_domains").glob("d*of2.h5"))) == 8
        assert not (results / f"analysis/bigbox/{kind}/z0/fof_parts/p0of2").exists()  # temp, removed
        whole, _ = fof_snapshot(results / f"snapshots/bigbox/{kind}/z0", b=ana.get("fof_b", 0.2),
                                min_members=ana["fof_min_members"])
        assert attrs["n_domains"] == 2 and attrs["min_members"] == ana["fof_min_members"]
        assert len(merged["npart"]) == len(whole["npart"]) >= (0 if kind == "lr" else 1), kind
        np.testing.assert_array_equal(np.sort(merged["npart"]), np.sort(whole["npart"]))
        np.testing.assert_allclose(np.sort(merged["mass"]), np.sort(whole["mass"]), rtol=1e-12)
        # halos matched by their minimum-ID member: same members, same (periodic) centre
        a, b = np.argsort(merged["min_id"]), np.argsort(whole["min_id"])
        np.testing.assert_array_equal(merged["min_id"][a], whole["min_id"][b])
        np.testing.assert_array_equal(merged["npart"][a], whole["npart"][b])
        d = merged["pos"][a] - whole["pos"][b]
        d -= big["box_size"] * np.round(d / big["box_size"])
        assert np.abs(d).max(initial=0.0) < 1e-6 * big["box_size"], kind  # float32 precision of the box

    for fig in ("fig5_bigbox", "fig6_bigbox_hmf"):
        for ext in ("png", "pdf"):
            assert (results / f"figures/{fig}.{ext}").stat().st_size > 1000, fig
    # Fig. 6's claim in numbers: SR/LR above the LR resolution limit, SR/test-box-HR below it
    bb = metrics["bigbox"]["hmf"]["0"]
    lr_limit = ana["fof_min_members"] * read_header(results / "snapshots/bigbox/lr/z0").particle_mass
    assert bb["log10M_lr_limit"] == pytest.approx(np.log10(lr_limit), abs=1e-9)
    assert [b["side"] for b in bb["bins"]] and all(b["side"] in ("above", "below", "straddles") for b in bb["bins"])
    assert "bigbox" in metrics["pass"] and "Big box" in (results / "metrics.txt").read_text()


@pytest.mark.slow
def test_six_channel_workflow_end_to_end(tmp_path):
    """model.channels: 6 through the workflow (issue 15): velocity fields -> six-channel training with
    validation -> SR snapshots with 1/Velocity -> halo velocities, redshift-space multipoles and momentum power
    of LR, HR and SR."""
    from srsim.io.catalog import read_catalog
    from srsim.io.displacement import read_velocity
    from srsim.io.power import read_momentum_power, read_multipoles
    from srsim.io.snapshot import read_header, read_particles

    results = tmp_path / "results"
    _run_all(".test/config/velocity.yaml", results)

    for kind, n in (("lr", 8), ("hr", 64)):
        vel, attrs = read_velocity(results / f"disp/train00/{kind}/z0.h5")
        assert vel.shape == (3, n, n, n) and attrs["velocity_units"] == "km/s" and np.all(np.isfinite(vel))
    # validation scored the velocity too; at step 0 the model is the trivial predictor in both parts
    rows = (results / "models/z0/val.csv").read_text().splitlines()
    cols = rows[0].split(",")
    first = dict(zip(cols, rows[1].split(",")))
    assert float(first["l2v_ratio"]) == pytest.approx(1.0, abs=1e-4)
    sr = results / "snapshots/test00/sr0/z0"
    assert "1/Velocity = generated peculiar velocity" in str(read_header(sr).attrs["SRNote"])
    v = read_particles(sr, ("Velocity",))["Velocity"]
    assert v.shape == (64**3, 3) and np.all(np.isfinite(v)) and v.std() > 10.0  # km/s
    for kind in ("lr", "hr", "sr0"):
        d = results / f"analysis/test00/{kind}/z0"
        mult, meta = read_multipoles(d / "power_rsd.txt")
        assert meta["axis"] == "z" and len(mult["k"]) > 10 and np.all(mult["P0"][:5] > 0)
        mom, _ = read_momentum_power(d / "power_momentum.txt")
        assert np.all(mom["P_pp"][:5] > 0)
        cat, cat_attrs = read_catalog(d / "fof.h5")
        assert cat_attrs["has_velocity"] and cat["vel"].shape == (len(cat["npart"]), 3)
    # the trivial predictor has no velocities, and gets no velocity statistics
    assert not (results / "analysis/test00/trivial/z0/power_rsd.txt").exists()
    # the velocity figure and the velocity section of the metrics (SR against HR, and LR)
    for ext in ("png", "pdf"):
        assert (results / f"figures/fig7_velocity.{ext}").stat().st_size > 1000
    metrics = json.loads((results / "metrics.json").read_text())
    vel = metrics["velocity"]["0"]
    assert "velocity" in metrics["pass"] and {"sr", "lr"} <= set(json.dumps(vel).replace('"', " ").split())
    assert "Velocity" in (results / "metrics.txt").read_text()
    # the halo velocity dispersions per mass bin, from the LR, HR and SR FOF catalogues
    assert vel["sigma_v"]["hr"].endswith("hr/z0/fof.h5") and not vel["sigma_v"]["no_velocity"]
    assert "Halo sigma_v:" in (results / "metrics.txt").read_text()
