#!/usr/bin/env bash
# Run by Snakemake (--software-deployment-method conda) once inside each new environment (every
# envs/<name>.post-deploy.sh links here): install the srsim package from this checkout, without
# dependencies (the environment file has them all).
set -euo pipefail
root=${SRSIM_ROOT:-$PWD}
if [ ! -f "$root/pyproject.toml" ] || ! grep -q '^name = "srsim"' "$root/pyproject.toml"; then
    echo "srsim post-deploy: $root is not the srsim checkout; set SRSIM_ROOT to it" >&2
    exit 1
fi
python -m pip install --no-deps --no-build-isolation --quiet -e "$root"
