#!/usr/bin/env bash
# Install Debian's HAProxy for the load-balanced deployment and its test, idempotently.
#
# Only the package: nothing is started (the packaged service stays off; there is no init system
# here). A balancer is run with a configuration that `v6nb server haproxy-config` writes, e.g.
#   python -m server_app haproxy-config --bind 127.0.0.1:7600 127.0.0.1:7601 127.0.0.1:7602 > lb.cfg
#   haproxy -f lb.cfg -db
# as tests/integration/test_load_balancer.py does (docs/operations.md). Re-running it with HAProxy
# present takes well under a second.
set -euo pipefail

log() { printf '[setup-haproxy] %s\n' "$*" >&2; }
LOG_DIR="${V6NB_SERVICES_STATE:-/var/lib/v6nb-services}/log"

# shellcheck source=lib/apt.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

if command -v haproxy >/dev/null 2>&1; then
    log "present: $(haproxy -v | head -n 1)"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    log "haproxy is missing and installing it needs root; try: sudo $0"
    exit 1
fi
mkdir -p "$LOG_DIR"
log "installing haproxy"
apt_install "$LOG_DIR/apt-haproxy.log" haproxy || exit 1
log "installed: $(haproxy -v | head -n 1)"
