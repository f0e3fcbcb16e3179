"""The Snakemake workflow: the paper's DAG (dry run) and the tiny configuration end to end."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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
    counts = {}
    for line in out.stdout.splitlines():
        m = re.fullmatch(r"(\S+)\s+(\d+)", line.strip())
        if m and m.group(1) != "total":
            counts[m.group(1)] = int(m.group(2))
    return counts


def test_paper_dag_has_the_full_job_set():
    c = job_counts("all", "config/paper.yaml")
    n_pairs, n_z = 17, 3
    assert c["simulate_pair"] == 2 * n_pairs  # 34 small simulations
    assert c["simulate_bigbox"] == 1  # + the 1 Gpc/h LR box
    assert c["displacement"] == 2 * n_pairs * n_z + n_z


def test_single_redshift_target_only_touches_that_redshift():
    c = job_counts("z2", "config/paper.yaml")
    assert c["displacement"] == 2 * 17 + 1
    assert c["simulate_pair"] == 34  # every simulation produces all redshifts in one run


def test_bad_config_fails_naming_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    text = (REPO / "config/config.yaml").read_text().replace("n_hr: 128", "n_hr: 100")
    bad.write_text(text)
    out = subprocess.run([*SNAKEMAKE, "all", "--configfile", str(bad), "-n"], cwd=REPO, env=_env(),
                         capture_output=True, text=True)
    assert out.returncode != 0
    assert "suite.n_hr" in out.stdout + out.stderr
