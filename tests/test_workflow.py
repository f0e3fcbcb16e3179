"""The Snakemake workflow: the paper's DAG (dry run) and the tiny configuration end to end."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dryrun import rule_counts

REPO = Path(__file__).parent.parent
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def _env():
    env = dict(os.environ)
    # rules call the `srsim` console script of this interpreter's environment
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


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
    c = job_counts("all", "config/config.yaml")
    assert "simulate_bigbox" not in c and "fig5" not in c and "fig6" not in c
    assert c["simulate_pair"] == 6 and c["train"] == 3 and c["fig1"] == 1


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
    from srsim.analysis.power import read_power
    from srsim.io.snapshot import read_header

    results = tmp_path / "results"
    base = [*SNAKEMAKE, "all", "--configfile", ".test/config/config.yaml", "--cores", "2",
            "--config", f"results={results}"]
    run = subprocess.run(base, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stderr[-5000:]

    # every target exists: a second run has nothing to do
    again = subprocess.run([*base, "-n"], cwd=REPO, env=_env(), capture_output=True, text=True)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr

    for kind in ("lr", "hr", "sr0"):
        assert read_header(results / f"snapshots/test00/{kind}/z0").n_particles == (8 if kind == "lr" else 64) ** 3
        table, meta = read_power(results / f"analysis/test00/{kind}/z0/power.txt")
        assert len(table["k"]) > 10 and meta["n_mesh"] == 64
    assert (results / "models/z0/model.pt").is_file()
    for fig in ("fig1_projections", "fig2_realizations", "fig3_power", "fig4_hmf"):
        for ext in ("png", "pdf"):
            assert (results / f"figures/{fig}.{ext}").stat().st_size > 1000, fig

    metrics = json.loads((results / "metrics.json").read_text())
    assert set(metrics) >= {"sim", "criteria", "power", "hmf", "pass"}
    assert set(metrics["power"]) == {"0"} and set(metrics["hmf"]) == {"0"}
    power = metrics["power"]["0"]
    for kind in ("sr", "lr"):
        assert {"max_abs_dev", "rms_dev", "n_bins", "k_max_used"} <= set(power[kind])
        assert power[kind]["n_bins"] > 0 and power[kind]["max_abs_dev"] >= power[kind]["rms_dev"] >= 0
    assert "pass" in power and "bins" in metrics["hmf"]["0"]
    # the summary table is printed at the end of the run
    assert "Overall: power" in run.stdout + run.stderr
