# srsim: super-resolution N-body simulations (Li, Ni et al.), end to end.
#
#   snakemake --cores 2 all                                  # the demo (config/config.yaml)
#   snakemake --profile profiles/slurm --configfile config/paper.yaml all   # the paper on a cluster
#   snakemake --cores 2 z0                                   # everything for one redshift
#
# This file only wires stages; every rule calls one `srsim` subcommand (see workflow/rules/).
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/simulate.smk"
include: "workflow/rules/displacement.smk"
include: "workflow/rules/generate.smk"
include: "workflow/rules/analyze.smk"


rule all:
    input:
        all_targets(),
    default_target: True


# One target per redshift: reruns only that redshift's jobs (`snakemake z0`).
for _z in ZS:

    rule:
        name:
            f"z{_z}"
        input:
            all_targets(_z),
