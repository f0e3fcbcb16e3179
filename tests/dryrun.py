"""Shared by the workflow tests: run Snakemake as a user would, and read what a dry run prints."""

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).parent.parent
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
# a hung Snakemake is stopped after this long; no verdict depends on how long a run takes
WATCHDOG_S = 3600
SITE_VARS = ("SRSIM_SLURM_ACCOUNT", "SRSIM_SLURM_PARTITION", "SRSIM_SLURM_GPU_PARTITION", "SRSIM_SLURM_SITE",
             "SBATCH_ACCOUNT", "SBATCH_PARTITION")


def user_env(**extra) -> dict:
    """The environment of a user who activated this interpreter's venv, without this machine's slurm site
    settings (the profile reads them)."""
    env = {k: v for k, v in os.environ.items() if k not in SITE_VARS}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["SRSIM_SLURM_SITE"] = os.devnull
    env.update(extra)
    return env


def run(cmd, env=None, check=True, cwd=REPO) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, cwd=cwd, env=env or user_env(), capture_output=True, text=True, timeout=WATCHDOG_S)
    if check:
        assert out.returncode == 0, f"{cmd}\n" + out.stdout[-3000:] + out.stderr[-3000:]
    return out


def rule_counts(stdout: str) -> dict[str, int]:
    """{rule: number of jobs} from the 'Job stats' table a dry run prints."""
    counts = {}
    for line in stdout.splitlines():
        m = re.fullmatch(r"(\S+)\s+(\d+)", line.strip())
        if m and m.group(1) != "total":
            counts[m.group(1)] = int(m.group(2))
    return counts


def dry_run_jobs(stdout: str) -> list[dict]:
    """[{rule, wildcards, output, threads, mem_mb, resources}] from what a (non-quiet) dry run prints (threads 1
    and mem_mb None where the job states none; resources the job's own as strings)."""
    jobs, current = [], None
    for line in stdout.splitlines():
        m = re.match(r"^(?:local)?rule (\S+):$", line.strip())
        if m:
            current = {"rule": m.group(1), "wildcards": {}, "output": [], "threads": 1, "mem_mb": None,
                       "resources": {}}
            jobs.append(current)
        elif current and line.strip().startswith("threads:"):
            current["threads"] = int(line.split(":", 1)[1])
        elif current and line.strip().startswith("resources:"):
            mem = re.search(r"\bmem_mb=(\d+)", line)
            current["mem_mb"] = int(mem.group(1)) if mem else None
            current["resources"] = dict(kv.strip().split("=", 1) for kv in line.split(":", 1)[1].split(",")
                                        if "=" in kv)
        elif current and line.strip().startswith("output:"):
            current["output"] = [p.strip() for p in line.split(":", 1)[1].split(",")]
        elif current and line.strip().startswith("wildcards:"):
            current["wildcards"] = dict(kv.strip().split("=", 1) for kv in line.split(":", 1)[1].split(","))
    return jobs


def counts_of(jobs: list[dict]) -> dict[str, int]:
    counts = {}
    for job in jobs:
        counts[job["rule"]] = counts.get(job["rule"], 0) + 1
    return counts
