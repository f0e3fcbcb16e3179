#!/usr/bin/env bash
# Install nbodykit (the optional analysis engine, `analysis.engine: nbodykit`) once, into a venv cached outside
# the checkout, for the tests that compare it with srsim's own engine.
#
#   py=$(scripts/nbodykit-install.sh) && export SRSIM_NBODYKIT_PYTHON=$py
#
# The kit (install.sh + the two C source archives its dependencies would download, see its README) is taken
# from $SRSIM_NBODYKIT_KIT, default ../shared/nbodykit next to this checkout. The venv goes to
# $SRSIM_CACHE/nbodykit-<first 16 hex of the kit's sha256>/venv (SRSIM_CACHE default ~/.cache/srsim), so a
# second run with the same kit reuses it. It also gets srsim's own dependencies (not srsim itself: the tests
# put the checkout's src/ first on PYTHONPATH). Prints that venv's python on stdout; prints nothing and exits 0
# when there is no kit (a user's machine): the nbodykit tests then skip. Needs root for apt-get the first time.
# Users install the engine with `pip install -e ".[nbodykit]"` where nbodykit installs (see docs/cluster.md).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
kit=${SRSIM_NBODYKIT_KIT:-$here/../shared/nbodykit}
cache=${SRSIM_CACHE:-$HOME/.cache/srsim}
log() { echo "nbodykit-install: $*" >&2; }

if [ ! -f "$kit/install.sh" ] || [ ! -d "$kit/sources" ]; then
    log "no nbodykit kit at $kit (set SRSIM_NBODYKIT_KIT): the nbodykit engine tests will skip"
    exit 0
fi
sum=$(cat "$kit/install.sh" "$kit"/sources/* | sha256sum | cut -d' ' -f1)
prefix=$cache/nbodykit-${sum:0:16}
venv=$prefix/venv
if [ -f "$prefix/OK" ] && "$venv/bin/python" -c "import nbodykit, jsonschema, bigfile, h5py, yaml, tqdm, numba" 2>/dev/null; then
    log "nbodykit in $venv (cached: $(cat "$prefix/OK"))"
    echo "$venv/bin/python"
    exit 0
fi
rm -rf "$venv" "$prefix/OK"
mkdir -p "$prefix"
start=$(date +%s)
log "installing nbodykit into $venv (20-40 minutes the first time; log: $prefix/install.log)"
if ! bash "$kit/install.sh" "$venv" >"$prefix/install.log" 2>&1 \
    || ! "$venv/bin/pip" install -q --disable-pip-version-check "numpy==$("$venv/bin/python" -c 'import numpy; print(numpy.__version__)')" \
        jsonschema pyyaml tqdm h5py bigfile numba >>"$prefix/install.log" 2>&1; then
    tail -n 30 "$prefix/install.log" >&2
    log "install failed (full log: $prefix/install.log): the nbodykit engine tests will skip"
    exit 1
fi
secs=$(( $(date +%s) - start ))
echo "installed in ${secs} s on $(date -u +%FT%TZ), $(nproc) cores" > "$prefix/OK"
log "nbodykit in $venv (${secs} s)"
echo "$venv/bin/python"
