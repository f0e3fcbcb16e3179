"""The README's and the Makefile's commands, run as written: they can never drift from the workflow again.

`make -n demo` gives the exact command `make demo` runs; every `snakemake` line of the README's code blocks
runs as a dry run in the environment `source .venv/bin/activate` gives (the report line needs a finished
run: tests/test_workflow.py runs it after the tiny workflow).
"""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from dryrun import REPO, SNAKEMAKE, WATCHDOG_S, rule_counts, run, user_env


def readme_blocks() -> list[list[str]]:
    """The lines of each ```bash block of the README."""
    text = (REPO / "README.md").read_text()
    return [block.splitlines() for block in re.findall(r"```bash\n(.*?)```", text, re.S)]


def readme_snakemake_commands() -> list[list[str]]:
    """Each `snakemake ...` line of the README as argv, comment stripped."""
    out = []
    for block in readme_blocks():
        for line in block:
            argv = shlex.split(line, comments=True)
            if argv and argv[0] == "snakemake":
                out.append(argv)
    return out


def as_dry_run(argv: list[str]) -> list[str]:
    """A README command run by this interpreter's Snakemake, as a quiet dry run."""
    args = argv[1:]
    if "-n" not in args and "--dry-run" not in args:
        args.append("-n")
    return [*SNAKEMAKE, *args, "--quiet", "rules"]


def test_readme_activates_the_venv_before_any_snakemake_line():
    lines = [line for block in readme_blocks() for line in block if line.strip()]
    first = next(i for i, line in enumerate(lines) if line.startswith("snakemake"))
    assert any(line.startswith("source .venv/bin/activate") for line in lines[:first])
    assert any(line.startswith("make demo") for line in lines) and any(line.startswith("make test") for line in lines)


def test_make_demo_runs_a_snakemake_command_that_plans_the_demo():
    """`make -n demo` prints the command; run as a dry run it plans the demo's whole DAG."""
    printed = subprocess.run(["make", "-n", "demo"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert printed.returncode == 0, printed.stderr
    lines = [line for line in printed.stdout.splitlines() if re.search(r"(^|/)snakemake\s", line)]
    assert len(lines) == 1, printed.stdout
    argv = shlex.split(lines[0])
    assert Path(argv[0]).name == "snakemake" and "all" in argv
    # the venv's snakemake when this is that venv (make test), else this interpreter's
    exe = [argv[0]] if Path(argv[0]).parent == Path(sys.executable).parent else SNAKEMAKE
    # --forceall: the whole plan, whatever a checkout's results/demo already holds
    out = run([*exe, *argv[1:], "-n", "--forceall", "--quiet", "rules"], env=user_env(SRSIM_CORES="2"))
    counts = rule_counts(out.stdout)
    assert counts["simulate_pair"] == 12 and counts["train"] == 3 and counts["metrics"] == 1, out.stdout[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("argv", [a for a in readme_snakemake_commands() if "--report" not in a],
                         ids=lambda a: " ".join(a[1:]))
def test_readme_snakemake_line_dry_runs(argv):
    out = subprocess.run(as_dry_run(argv), cwd=REPO, env=user_env(), capture_output=True, text=True,
                         timeout=WATCHDOG_S)
    assert out.returncode == 0, " ".join(argv) + "\n" + out.stdout[-3000:] + out.stderr[-3000:]
    counts = rule_counts(out.stdout)
    assert counts or "Nothing to be done" in out.stdout + out.stderr, out.stdout[-2000:]
    if "paper.yaml" in argv:
        assert counts["simulate_pair"] == 34 and counts["fof_domain"] == 6000
    target = argv[1]
    if target == "figures":
        assert counts["figures"] == 1 and counts["metrics"] == 1
    if target == "z0":
        assert "z0" in counts and "metrics" not in counts


def test_readme_has_the_commands_this_test_runs():
    commands = readme_snakemake_commands()
    targets = [argv[1] for argv in commands]
    assert {"all", "z0", "figures"} <= set(targets)
    assert any("--report" in argv for argv in commands)
    # the target first: after --configfile (several values) it would be read as a config file
    for argv in commands:
        assert not argv[1].startswith("-"), argv
