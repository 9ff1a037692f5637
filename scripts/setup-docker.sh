#!/usr/bin/env bash
# Install and start Debian's Docker engine and registry for vantage6nb, idempotently.
#
# - installs docker.io and docker-registry from the configured apt mirror when missing;
# - starts dockerd with no bridge, no iptables and no masquerading (only loopback networking),
#   unless an engine already answers;
# - starts a registry on 127.0.0.1:5000 with filesystem storage, unless one already answers.
# No systemd is needed: both daemons run in the background, logging under $V6NB_DOCKER_STATE.
set -euo pipefail

STATE_DIR="${V6NB_DOCKER_STATE:-/var/lib/v6nb-docker}"
REGISTRY_ADDR="${V6NB_REGISTRY_ADDR:-127.0.0.1:5000}"
LOG_DIR="$STATE_DIR/log"
start_ts=$(date +%s)

log() { printf '[setup-docker] %s\n' "$*" >&2; }

# shellcheck source=lib/apt.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

need_root() {
    if [ "$(id -u)" -ne 0 ]; then
        log "must run as root (installs packages and starts dockerd); try: sudo $0"
        exit 1
    fi
}

install_packages() {
    local missing=()
    command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
    [ -x /usr/bin/docker-registry ] || missing+=(docker-registry)
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    if [ "${#missing[@]}" -eq 0 ]; then
        log "packages present"
        return
    fi
    need_root
    log "installing ${missing[*]}"
    apt_install "$LOG_DIR/apt-install.log" "${missing[@]}" || exit 1
}

engine_answers() { docker info >/dev/null 2>&1; }

start_engine() {
    if engine_answers; then
        log "docker engine already answers"
        return
    fi
    need_root
    log "starting dockerd (bridge=none, iptables=false, ip-masq=false)"
    # Debian's docker.io wants containerd and runc on PATH; both come as dependencies.
    nohup dockerd --bridge=none --iptables=false --ip-masq=false --ip6tables=false \
        --userland-proxy=false \
        --pidfile "$STATE_DIR/dockerd.pid" \
        >"$LOG_DIR/dockerd.log" 2>&1 </dev/null &
    local i
    for i in $(seq 1 120); do
        if engine_answers; then
            log "docker engine up after ${i} checks"
            return
        fi
        sleep 0.5
    done
    log "dockerd did not answer within 60 s; last log lines:"
    tail -n 30 "$LOG_DIR/dockerd.log" >&2 || true
    exit 1
}

registry_answers() { curl -fsS -o /dev/null "http://$REGISTRY_ADDR/v2/" 2>/dev/null; }

start_registry() {
    if registry_answers; then
        log "registry already answers on $REGISTRY_ADDR"
        return
    fi
    need_root
    mkdir -p "$STATE_DIR/registry"
    cat >"$STATE_DIR/registry.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $STATE_DIR/registry
  delete:
    enabled: true
http:
  addr: $REGISTRY_ADDR
YAML
    log "starting docker-registry on $REGISTRY_ADDR"
    nohup /usr/bin/docker-registry serve "$STATE_DIR/registry.yml" \
        >"$LOG_DIR/registry.log" 2>&1 </dev/null &
    echo $! >"$STATE_DIR/registry.pid"
    local i
    for i in $(seq 1 60); do
        if registry_answers; then
            log "registry up"
            return
        fi
        sleep 0.5
    done
    log "registry did not answer within 30 s; last log lines:"
    tail -n 30 "$LOG_DIR/registry.log" >&2 || true
    exit 1
}

check_networks() {
    local nets
    nets=$(docker network ls --format '{{.Driver}}' | sort -u | tr '\n' ' ')
    for d in $nets; do
        case "$d" in
        null | host) ;;
        *)
            log "unexpected docker network driver '$d' (expected only none/host): $nets"
            exit 1
            ;;
        esac
    done
    log "docker networks: $nets(no bridge)"
}

mkdir -p "$LOG_DIR" 2>/dev/null || true
install_packages
start_engine
start_registry
check_networks
log "done in $(($(date +%s) - start_ts)) s"
