"""Benchmark how long Snakemake takes to plan the workflow: a quiet dry run of each config's `all`.

The paper's DAG has about 6,700 jobs (6,000 of them domain-FOF jobs of the big box); the tiny test config's
about 30. Each dry run is repeated and the fastest kept; the paper's time is reported as a ratio to the tiny
config's, measured in the same run, so a loaded machine shifts both.

    python benchmarks/dag.py [--repeat 2] [--profile slurm|local|none] [--out PATH]

Prints a table and writes JSON (default benchmarks/results/dag.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONFIGS = {"tiny": ".test/config/config.yaml", "demo": "config/config.yaml", "paper": "config/paper.yaml"}


def dry_run(configfile: str, profile: str | None) -> dict:
    """Wall and CPU seconds of one quiet dry run, and its job count."""
    cmd = [sys.executable, "-m", "snakemake", "all", "-n", "--quiet", "rules", "--configfile", configfile]
    if profile:
        cmd += ["--profile", str(REPO / "profiles" / profile)]
    env = dict(os.environ, SRSIM_SLURM_SITE=os.devnull)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise SystemExit(f"dry run of {configfile} failed:\n{out.stderr[-3000:]}")
    total = [line.split()[-1] for line in out.stdout.splitlines() if line.startswith("total")]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "jobs": int(total[0]) if total else 0}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2, help="dry runs per config (the fastest is kept)")
    parser.add_argument("--profile", default="slurm", choices=["slurm", "local", "none"])
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "dag.json"))
    args = parser.parse_args(argv)
    profile = None if args.profile == "none" else args.profile

    rows = {}
    for name, configfile in CONFIGS.items():
        runs = [dry_run(configfile, profile) for _ in range(args.repeat)]
        rows[name] = min(runs, key=lambda r: r["wall_s"])
    base = rows["tiny"]["wall_s"]
    print(f"Snakemake DAG build (dry run of `all`, profile {args.profile}, best of {args.repeat}) on "
          f"{platform.node()}, {os.cpu_count()} cores")
    print(f"{'config':>8} {'jobs':>7} {'wall s':>8} {'cpu s':>7} {'x tiny':>7}")
    for name, r in rows.items():
        r["ratio_to_tiny"] = r["wall_s"] / base
        print(f"{name:>8} {r['jobs']:>7} {r['wall_s']:>8.1f} {r['cpu_s']:>7.1f} {r['ratio_to_tiny']:>7.1f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": platform.node(), "cores": os.cpu_count(), "profile": args.profile,
                               "repeat": args.repeat, "configs": rows}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
