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


def test_demo_dag_has_no_big_box():
    c = job_counts("all", "config/config.yaml", "--forceall")  # whatever results/demo already holds
    assert "simulate_bigbox" not in c and "fig5" not in c and "fig6" not in c
    # 4 training + 1 validation + 1 test pair, LR and HR; their 3 redshifts' displacement fields
    assert c["simulate_pair"] == 12 and c["displacement"] == 36 and c["train"] == 3 and c["fig1"] == 1
    # one trivial-predictor snapshot per test box and redshift, analysed like an SR realization (issue 10):
    # 1 test box x (LR, HR, 3 SR, 1 trivial) x 3 z = 18 snapshots, each with power, FOF, HMF (the training
    # pairs are not analysed; the validation pair is scored by training)
    assert c["generate_trivial"] == 3 and c["generate_test"] == 9
    assert c["power"] == c["fof"] == c["hmf"] == 1 * (2 + 3 + 1) * 3


def test_bad_config_fails_naming_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    text = (REPO / "config/config.yaml").read_text().replace("n_hr: 128", "n_hr: 100")
    bad.write_text(text)
    out = subprocess.run([*SNAKEMAKE, "all", "--configfile", str(bad), "-n"], cwd=REPO, env=_env(),
                         capture_output=True, text=True)
    assert out.returncode != 0
    assert "suite.n_hr" in out.stdout + out.stderr


@pytest.mark.slow
def test_tiny_workflow_end_to_end(tmp_path):
    """simulate -> displacement -> train -> generate -> analyze -> figures -> metrics on the tiny config."""
    from srsim.io.power import read_power
    from srsim.io.snapshot import read_header

    results = tmp_path / "results"
    base = [*SNAKEMAKE, "all", "--configfile", ".test/config/config.yaml", "--cores", "2",
            "--config", f"results={results}"]
    run = subprocess.run(base, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=WATCHDOG_S)
    assert run.returncode == 0, run.stderr[-5000:]

    # every target exists: a second run has nothing to do
    again = subprocess.run([*base, "-n"], cwd=REPO, env=_env(), capture_output=True, text=True)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr

    for kind in ("lr", "hr", "sr0"):
        assert read_header(results / f"snapshots/test00/{kind}/z0").n_particles == (8 if kind == "lr" else 64) ** 3
        table, meta = read_power(results / f"analysis/test00/{kind}/z0/power.txt")
        assert len(table["k"]) > 10 and meta["n_mesh"] == 64
    assert (results / "models/z0/model.pt").is_file()
    # training validated on the val pair (train.val_every 3 of 6 steps), which was simulated but not analysed
    val_rows = (results / "models/z0/val.csv").read_text().splitlines()
    assert val_rows[0].startswith("step,l2_ratio") and [r.split(",")[0] for r in val_rows[1:]] == ["3", "6"]
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
