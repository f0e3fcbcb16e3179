# srsim: super-resolution N-body simulations (Li, Ni et al.), end to end.
#
#   snakemake --cores 2 all                                  # the demo (config/config.yaml)
#   snakemake --profile profiles/slurm --configfile config/paper.yaml all   # the paper on a cluster
#   snakemake --cores 2 z0                                   # everything for one redshift
#
# This file only wires stages; every rule calls one `srsim` subcommand (see workflow/rules/).
import os
from pathlib import Path

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


# envs/*.post-deploy.sh install this checkout into the conda environments (--software-deployment-method conda)
os.environ.setdefault("SRSIM_ROOT", workflow.basedir)


validate(config, "workflow/schemas/config.schema.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/simulate.smk"
include: "workflow/rules/displacement.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/generate.smk"
include: "workflow/rules/analyze.smk"
include: "workflow/rules/figures.smk"


rule all:
    input:
        all_targets(),
    default_target: True


# Only the figures and metrics (`snakemake figures`): reruns nothing upstream that is up to date.
rule figures:
    input:
        TARGETS["figures"](),


onsuccess:
    # the human-readable verdict is the last thing a run prints
    if Path(METRICS_TXT).exists():
        print(Path(METRICS_TXT).read_text())


# One target per redshift: reruns only that redshift's jobs (`snakemake z0`).
for _z in ZS:

    rule:
        name:
            f"z{_z}"
        input:
            all_targets(_z),
