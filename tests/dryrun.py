"""Shared by the workflow tests: read the job table of `snakemake -n --quiet rules`."""

import re


def rule_counts(stdout: str) -> dict[str, int]:
    """{rule: number of jobs} from the 'Job stats' table a dry run prints."""
    counts = {}
    for line in stdout.splitlines():
        m = re.fullmatch(r"(\S+)\s+(\d+)", line.strip())
        if m and m.group(1) != "total":
            counts[m.group(1)] = int(m.group(2))
    return counts
