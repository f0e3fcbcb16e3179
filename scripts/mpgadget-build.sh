#!/usr/bin/env bash
# Build the real MP-GenIC and MP-Gadget for the tests, once, into a cache outside the checkout.
#
#   bindir=$(scripts/mpgadget-build.sh) && export PATH="$bindir:$PATH"
#
# The build kit (source tarball + build.sh, see its README) is taken from $SRSIM_MPGADGET_KIT, default
# ../shared/mpgadget next to this checkout. The binaries go to
# $SRSIM_CACHE/mpgadget-<first 16 hex of the tarball's sha256>/bin (SRSIM_CACHE default ~/.cache/srsim), so
# a second run with the same tarball reuses them and a new tarball builds afresh. Prints that bin directory
# on stdout; prints nothing and exits 0 when there is no kit (a user's machine): the tests that need the
# binaries then skip. Needs root for apt-get the first time (build.sh installs mpich, gsl, a compiler).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
kit=${SRSIM_MPGADGET_KIT:-$here/../shared/mpgadget}
cache=${SRSIM_CACHE:-$HOME/.cache/srsim}
log() { echo "mpgadget-build: $*" >&2; }

tarball=$(ls "$kit"/MP-Gadget-*-with-depends.tar.gz 2>/dev/null | head -1 || true)
if [ ! -f "$kit/build.sh" ] || [ -z "$tarball" ]; then
    log "no MP-Gadget build kit at $kit (set SRSIM_MPGADGET_KIT): tests with the real MP-Gadget will skip"
    exit 0
fi
sum=$(sha256sum "$tarball" | cut -d' ' -f1)
prefix=$cache/mpgadget-${sum:0:16}
mkdir -p "$prefix"
start=$(date +%s)
# build.sh is idempotent: with BUILD_INFO matching the tarball it only checks the binaries
if ! JOBS=${JOBS:-$(nproc)} bash "$kit/build.sh" "$prefix" >"$prefix/build-srsim.log" 2>&1; then
    tail -n 40 "$prefix/build-srsim.log" >&2
    log "build failed (full log: $prefix/build-srsim.log)"
    exit 1
fi
log "MP-GenIC and MP-Gadget in $prefix/bin ($(( $(date +%s) - start )) s; $(grep '^built:' "$prefix/BUILD_INFO" || true))"
echo "$prefix/bin"
