# srsim: super-resolution N-body simulations (Li, Ni et al.), end to end.
#
#   snakemake all --cores 2                                  # the demo (config/config.yaml)
#   snakemake all --profile profiles/slurm --configfile config/paper.yaml   # the paper on a cluster
#   snakemake z0 --cores 2                                   # everything for one redshift
#
# This file only wires stages; every rule calls one `srsim` subcommand (see workflow/rules/).
import os
import sys
from pathlib import Path

from snakemake.utils import min_version

from srsim.config import validate_config

min_version("9.0")


# Without --configfile: the demo. With one, that file is the whole config: a default `configfile:` would be
# merged under it, and a paper run would inherit demo-only keys (train.max_steps, figures.zoom, ...).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


# Validated once: the schema (which fills the defaults) and the cross-key checks (n_hr / n_lr a power of
# two, model depth, seeds); a bad config fails naming the key.
validate_config(config, "config")

# analysis.engine nbodykit needs the optional extra: without it, fail now, naming it, not in the middle of a
# run (jobs in conda environments, --software-deployment-method conda, bring their own: envs/nbodykit.yaml)
if config["analysis"]["engine"] == "nbodykit" and not workflow.deployment_settings.deployment_method:
    from srsim.analysis.nbodykit_engine import require

    require()

# Jobs call the `srsim` of the environment running Snakemake, also when it was started as
# .venv/bin/snakemake without activating the venv (conda jobs put their own environment first).
# `snakemake --lint` flags PATH as "used but not asserted with envvars": it is extended here, not required,
# and an `envvars:` directive would ship this machine's PATH to cluster jobs (tests/test_lint.py allows it).
os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
# envs/*.post-deploy.sh install this checkout into the conda environments (--software-deployment-method conda)
os.environ.setdefault("SRSIM_ROOT", workflow.basedir)


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/simulate.smk"
include: "workflow/rules/displacement.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/generate.smk"
include: "workflow/rules/analyze.smk"
include: "workflow/rules/figures.smk"


rule all:
    default_target: True
    input:
        all_targets(),


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
