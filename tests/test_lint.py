"""The workflow as the Snakemake ecosystem checks it: `snakemake --lint` and `snakefmt --check`."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dryrun import REPO, SNAKEMAKE, WATCHDOG_S, user_env

# Each remaining lint is justified where it arises (the comment next to the code).
JUSTIFIED = {
    # Snakefile: PATH is extended for the jobs, not required; `envvars:` would ship it to cluster nodes
    "Environment variable PATH used but not asserted with envvars directive",
}


def test_snakemake_lint_has_only_justified_warnings():
    out = subprocess.run([*SNAKEMAKE, "--lint"], cwd=REPO, env=user_env(), capture_output=True, text=True,
                         timeout=WATCHDOG_S)
    text = out.stdout + out.stderr
    found = [m.group(1).strip() for m in re.finditer(r"^\s+\* (.+?)(?: in line \d+)?\.?:$", text, re.M)]
    unjustified = [f for f in found if not any(f.startswith(j) for j in JUSTIFIED)]
    assert not unjustified, text[-4000:]
    assert "Traceback" not in text and "Error" not in text, text[-4000:]


def test_snakefmt_check_passes():
    exe = shutil.which("snakefmt", path=str(Path(sys.executable).parent)) or shutil.which("snakefmt")
    if exe is None:
        pytest.fail("snakefmt is not installed: `pip install -e '.[test]'` installs it")
    files = ["Snakefile", *sorted(str(p.relative_to(REPO)) for p in (REPO / "workflow" / "rules").glob("*.smk"))]
    out = subprocess.run([exe, "--check", "--diff", *files], cwd=REPO, capture_output=True, text=True,
                         timeout=WATCHDOG_S)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
