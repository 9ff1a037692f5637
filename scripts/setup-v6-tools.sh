#!/usr/bin/env bash
# Install vantage6's algorithm tools (vantage6-algorithm-tools from PyPI) once, for the tests that run
# vantage6-style algorithms unmodified (tests/integration/test_vantage6_compat*.py):
#
#   $V6NB_CACHE/vantage6-tools-<version>/wheels   every wheel they need (plus setuptools and wheel), so
#                                                 a Docker image builds from them with --network none
#   $V6NB_CACHE/vantage6-tools-<version>/venv     a virtual environment with the tools installed from
#                                                 those wheels (their sqlalchemy==1.4.46 pin cannot
#                                                 share our interpreter); the process runtime runs the
#                                                 test algorithms in it
#
# Idempotent: a second run finds both complete and does nothing. $V6NB_CACHE defaults to /var/cache/v6nb.
# Usage: scripts/setup-v6-tools.sh [--print-dir]
set -euo pipefail

CACHE="${V6NB_CACHE:-/var/cache/v6nb}"
VERSION="${V6NB_V6_TOOLS_VERSION:-4.15.2}"
DIR="$CACHE/vantage6-tools-$VERSION"
log() { printf '[setup-v6-tools %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

mkdir -p "$DIR"
if [ ! -f "$DIR/wheels/.complete" ]; then
    log "building wheels for vantage6-algorithm-tools==$VERSION into $DIR/wheels (once)"
    rm -rf "$DIR/wheels.partial"
    # pandas and numpy as in v6nb/python (scripts/build-images.sh's wheels), when those exist: an
    # image built on it then adds only the tools' own dependencies
    pins=()
    for pkg in pandas numpy; do
        whl=$(find "$CACHE/wheels" -maxdepth 2 -name "$pkg-[0-9]*.whl" 2>/dev/null | sort | tail -n1)
        [ -n "$whl" ] && pins+=("$pkg==$(basename "$whl" | cut -d- -f2)")
    done
    python3 -m pip wheel --quiet --disable-pip-version-check -w "$DIR/wheels.partial" \
        "vantage6-algorithm-tools==$VERSION" setuptools wheel "${pins[@]}" 2>"$DIR/pip-wheel.log" ||
        python3 -m pip wheel --quiet --disable-pip-version-check -w "$DIR/wheels.partial" \
            "vantage6-algorithm-tools==$VERSION" setuptools wheel 2>"$DIR/pip-wheel.log" || {
        log "pip wheel failed; see $DIR/pip-wheel.log"
        tail -n 20 "$DIR/pip-wheel.log" >&2
        exit 1
    }
    touch "$DIR/wheels.partial/.complete"
    rm -rf "$DIR/wheels"
    mv "$DIR/wheels.partial" "$DIR/wheels"
fi
if [ ! -f "$DIR/venv/.complete" ]; then
    log "creating $DIR/venv from those wheels"
    rm -rf "$DIR/venv"
    python3 -m venv "$DIR/venv"
    "$DIR/venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-index \
        --find-links "$DIR/wheels" "vantage6-algorithm-tools==$VERSION" setuptools wheel \
        2>"$DIR/pip-install.log" || {
        log "installing into the venv failed; see $DIR/pip-install.log"
        tail -n 20 "$DIR/pip-install.log" >&2
        exit 1
    }
    touch "$DIR/venv/.complete"
fi
if [ "${1:-}" = "--print-dir" ]; then
    echo "$DIR"
fi
