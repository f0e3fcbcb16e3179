#!/usr/bin/env bash
# Redo one redshift, or only the figures, without touching anything else (docs/cluster.md).
#
#   scripts/rerun.sh z0      [snakemake options]   # every job of z = 0 again, simulations excepted
#   scripts/rerun.sh figures [snakemake options]   # Figs. 1-6 and metrics again
#
#   e.g. scripts/rerun.sh z0 --profile profiles/slurm --configfile config/paper.yaml
#
# Snakemake's --forcerun needs the names of the rules to force, and which rules exist depends on the
# config (big box or not, domain FOF or not): they are read from `snakemake --list-rules` with the
# same options. Simulations write the snapshots of every redshift at once, so a redshift's redo
# keeps them (they still run if missing), as it keeps the linear power spectrum they start from. Figures and metrics depend on every redshift and are not
# part of a redshift's redo; jobs upstream of the figures run only if missing or outdated.
set -euo pipefail

usage() { echo "usage: $0 z<redshift>|figures [snakemake options]" >&2; exit 2; }
[ $# -ge 1 ] || usage
target=$1
shift
snakemake=${SNAKEMAKE:-snakemake}

rules=$($snakemake "$@" --list-rules) || { echo "$0: snakemake --list-rules failed" >&2; exit 1; }
rules=$(printf '%s\n' "$rules" | awk 'NF == 1 {print $1}')

case "$target" in
    figures)
        force=$(printf '%s\n' "$rules" | grep -xE 'fig[0-9]+|metrics' || true)
        # the figures target if the workflow has one, else everything (all else is up to date)
        goal=all
        printf '%s\n' "$rules" | grep -qx figures && goal=figures
        ;;
    z*)
        printf '%s\n' "$rules" | grep -qxF "$target" \
            || { echo "$0: no target '$target' (redshift targets: $(printf '%s\n' "$rules" | grep -xE 'z[0-9.]+' | tr '\n' ' '))" >&2; exit 2; }
        # not forced: targets, the simulations and what every redshift shares (the linear power
        # spectrum), the figures
        force=$(printf '%s\n' "$rules" | grep -vxE 'all|z[0-9.]+|simulate_.*|linear_power|fig[0-9]+|metrics|figures' || true)
        goal=$target
        ;;
    *) usage ;;
esac
[ -n "$force" ] || { echo "$0: nothing to force for '$target'" >&2; exit 1; }

# shellcheck disable=SC2086
exec $snakemake "$goal" "$@" --forcerun $force
