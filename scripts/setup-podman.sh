#!/usr/bin/env bash
# Install and configure rootless Podman for vantage6nb's Podman runtime, idempotently (run as root).
#
# - installs Debian's podman (with uidmap, and runc where crun cannot run: cgroup v1 hybrid hosts);
# - creates the ordinary user $V6NB_PODMAN_USER (default v6nb-podman) with subuid/subgid ranges;
# - configures its rootless Podman: overlay storage, the local registry ($V6NB_REGISTRY_ADDR,
#   default 127.0.0.1:5000) trusted as insecure, no other registry searched;
# - on cgroup v1, where rootless Podman ignores memory/CPU/pids limits: delegates
#   /sys/fs/cgroup/{memory,cpu,pids}/v6nb-podman to the user and installs the OCI hook that moves
#   each vantage6nb container into the cgroups its node prepared (node_app/runtimes/podman.py);
# - starts `podman system service` as that user on $XDG_RUNTIME_DIR/podman/podman.sock (a unix
#   socket: nothing listens on the network), unless one already answers.
# Containers get no network at all (network none, or a relay side-car's loopback): no slirp4netns,
# no CNI bridge. Fast when everything is already in place.
set -euo pipefail

PODMAN_USER="${V6NB_PODMAN_USER:-v6nb-podman}"
REGISTRY_ADDR="${V6NB_REGISTRY_ADDR:-127.0.0.1:5000}"
CGROUP_PARENT="${V6NB_PODMAN_CGROUP_PARENT:-v6nb-podman}"
STATE_DIR="${V6NB_PODMAN_STATE:-/var/lib/v6nb-podman}"
HOOK=/usr/libexec/v6nb/v6nb-podman-cgroup-hook
HOOKS_DIR=/etc/containers/oci/hooks.d
start_ts=$(date +%s)

log() { printf '[setup-podman] %s\n' "$*" >&2; }

# shellcheck source=lib/apt.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

if [ "$(id -u)" -ne 0 ]; then
    log "must run as root (installs packages, creates a user, delegates cgroups); try: sudo $0"
    log "a node without root: see docs/operations.md, 'Podman (rootless)'"
    exit 1
fi
mkdir -p "$STATE_DIR"

cgroup_v2() { [ -e /sys/fs/cgroup/cgroup.controllers ]; }
# crun refuses cgroup v1 hosts whose v2 hierarchy holds a controller ("hybrid"); runc runs there.
hybrid() { ! cgroup_v2 && [ -n "$(cat /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null)" ]; }

install_packages() {
    local missing=()
    command -v podman >/dev/null 2>&1 || missing+=(podman)
    command -v newuidmap >/dev/null 2>&1 || missing+=(uidmap)
    if hybrid; then command -v runc >/dev/null 2>&1 || missing+=(runc); fi
    if [ "${#missing[@]}" -eq 0 ]; then
        log "packages present ($(podman --version))"
        return
    fi
    log "installing ${missing[*]}"
    apt_install "$STATE_DIR/apt-install.log" "${missing[@]}" || exit 1
}

next_subid_start() {
    # the first 65536-aligned start above every range already handed out (both files)
    awk -F: 'BEGIN { m = 100000 } NF >= 3 { e = $2 + $3; if (e > m) m = e }
             END { print (int((m + 65535) / 65536) * 65536) }' /etc/subuid /etc/subgid 2>/dev/null
}

ensure_user() {
    if ! id "$PODMAN_USER" >/dev/null 2>&1; then
        log "creating user $PODMAN_USER"
        useradd --create-home --user-group --shell /bin/bash "$PODMAN_USER"
    fi
    touch /etc/subuid /etc/subgid
    if ! grep -q "^$PODMAN_USER:" /etc/subuid || ! grep -q "^$PODMAN_USER:" /etc/subgid; then
        local start
        start=$(next_subid_start)
        log "subuid/subgid range $start-$((start + 65535)) for $PODMAN_USER"
        grep -q "^$PODMAN_USER:" /etc/subuid || echo "$PODMAN_USER:$start:65536" >>/etc/subuid
        grep -q "^$PODMAN_USER:" /etc/subgid || echo "$PODMAN_USER:$start:65536" >>/etc/subgid
    fi
}

# write FILE (owned by the user) from stdin, only when its content changes; prints "changed"
put_user_file() {
    local file="$1" tmp
    tmp=$(mktemp)
    cat >"$tmp"
    if [ -f "$file" ] && cmp -s "$tmp" "$file"; then
        rm -f "$tmp"
        return
    fi
    install -D -o "$PODMAN_USER" -g "$PODMAN_USER" -m 0644 "$tmp" "$file"
    rm -f "$tmp"
    echo changed
}

configure_user() {
    local home conf changed=""
    home=$(getent passwd "$PODMAN_USER" | cut -d: -f6)
    conf="$home/.config/containers"
    install -d -o "$PODMAN_USER" -g "$PODMAN_USER" -m 0755 "$home/.config" "$conf"
    changed+=$(put_user_file "$conf/storage.conf" <<'EOF'
# vantage6nb: native overlay (kernel >= 5.13), no fuse-overlayfs needed
[storage]
driver = "overlay"
EOF
)
    changed+=$(put_user_file "$conf/registries.conf" <<EOF
# vantage6nb: images come from the local registry only; short names are never searched for
unqualified-search-registries = []

[[registry]]
location = "$REGISTRY_ADDR"
insecure = true
EOF
)
    local runtime_line=""
    hybrid && runtime_line='runtime = "runc"'
    changed+=$(put_user_file "$conf/containers.conf" <<EOF
# vantage6nb: see scripts/setup-podman.sh
[containers]
netns = "none"

[engine]
$runtime_line
hooks_dir = ["/usr/share/containers/oci/hooks.d", "$HOOKS_DIR"]
EOF
)
    USER_UID=$(id -u "$PODMAN_USER")
    RUN_DIR="/run/user/$USER_UID"
    install -d -o "$PODMAN_USER" -g "$PODMAN_USER" -m 0700 "$RUN_DIR"
    SOCKET="$RUN_DIR/podman/podman.sock"
    [ -n "$changed" ] && CONFIG_CHANGED=1
    log "user configuration in $conf${changed:+ (updated)}"
}

as_user() {
    (cd / && runuser -u "$PODMAN_USER" -- env HOME="$(getent passwd "$PODMAN_USER" | cut -d: -f6)" \
        XDG_RUNTIME_DIR="$RUN_DIR" "$@")
}

delegate_cgroups() {
    if cgroup_v2; then
        log "cgroup v2: rootless Podman applies limits itself (needs systemd's delegation to the user)"
        return
    fi
    local ctl dir
    for ctl in memory cpu pids; do
        dir="/sys/fs/cgroup/$ctl/$CGROUP_PARENT"
        mkdir -p "$dir"
        chown "$PODMAN_USER:$PODMAN_USER" "$dir" "$dir/cgroup.procs" "$dir/tasks"
    done
    install -d -m 0755 "$(dirname "$HOOK")" "$HOOKS_DIR"
    local tmp
    tmp=$(mktemp)
    cat >"$tmp" <<'EOF'
#!/usr/bin/python3 -IS
"""OCI prestart hook (vantage6nb): put a run's container into the cgroups its node prepared.

Rootless Podman ignores resource limits on cgroup v1. A vantage6nb node makes the cgroups
/sys/fs/cgroup/{memory,cpu,pids}/<parent>/<hostname> with the run's limits; this hook, run by the
OCI runtime before the container's process starts, moves that process into them. Containers whose
hostname names no such cgroup are left alone. Installed by scripts/setup-podman.sh.
"""
import json
import os
import re
import sys

state = json.load(sys.stdin)
parent = sys.argv[1] if len(sys.argv) > 1 else "v6nb-podman"
try:
    with open(os.path.join(state["bundle"], "config.json"), encoding="utf-8") as fh:
        key = json.load(fh).get("hostname") or ""
except (OSError, ValueError, KeyError, TypeError):
    sys.exit(0)
if not re.fullmatch(r"v6nb-[A-Za-z0-9_.-]{1,58}", key):
    sys.exit(0)
for ctl in ("memory", "cpu", "pids"):
    procs = f"/sys/fs/cgroup/{ctl}/{parent}/{key}/cgroup.procs"
    if os.path.exists(procs):
        with open(procs, "w", encoding="ascii") as fh:  # fails the start if it cannot: no silent run
            fh.write(str(int(state["pid"])))
EOF
    if ! cmp -s "$tmp" "$HOOK" 2>/dev/null; then
        install -m 0755 "$tmp" "$HOOK"
        CONFIG_CHANGED=1
    fi
    cat >"$tmp" <<EOF
{"version": "1.0.0", "hook": {"path": "$HOOK", "args": ["v6nb-podman-cgroup-hook", "$CGROUP_PARENT"]}, "when": {"always": true}, "stages": ["prestart"]}
EOF
    if ! cmp -s "$tmp" "$HOOKS_DIR/v6nb-cgroups.json" 2>/dev/null; then
        install -m 0644 "$tmp" "$HOOKS_DIR/v6nb-cgroups.json"
        CONFIG_CHANGED=1
    fi
    rm -f "$tmp"
    log "cgroup v1: /sys/fs/cgroup/{memory,cpu,pids}/$CGROUP_PARENT delegated; hook $HOOK"
}

service_answers() { curl -fsS --max-time 2 --unix-socket "$SOCKET" -o /dev/null http://d/_ping 2>/dev/null; }

check_storage() {
    local driver
    driver=$(as_user podman info --format '{{.Store.GraphDriverName}}' 2>/dev/null || true)
    if [ "$driver" != "overlay" ]; then
        log "storage driver is '${driver:-unknown}', not overlay: resetting $PODMAN_USER's Podman storage"
        as_user podman system reset -f >/dev/null 2>&1 || true
    fi
}

start_service() {
    local pidfile="$RUN_DIR/podman/service.pid"
    if service_answers; then
        if [ "${CONFIG_CHANGED:-0}" -eq 0 ]; then
            log "podman service already answers on $SOCKET"
            return
        fi
        log "configuration changed: restarting the podman service"
        [ -s "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
        local i
        for i in $(seq 1 50); do service_answers || break; sleep 0.1; done
    fi
    check_storage
    install -d -o "$PODMAN_USER" -g "$PODMAN_USER" -m 0700 "$(dirname "$SOCKET")"
    log "starting podman system service as $PODMAN_USER on unix://$SOCKET"
    # the service writes its own pid (runuser stays its parent): a restart stops exactly it
    as_user setsid sh -c 'echo $$ >"$1"; exec podman system service --time=0 "unix://$2"' \
        sh "$RUN_DIR/podman/service.pid" "$SOCKET" >"$STATE_DIR/service.log" 2>&1 </dev/null &
    local i
    for i in $(seq 1 100); do
        if service_answers; then
            log "podman service up"
            return
        fi
        sleep 0.1
    done
    log "podman service did not answer within 10 s; last log lines:"
    tail -n 20 "$STATE_DIR/service.log" >&2 || true
    exit 1
}

CONFIG_CHANGED=0
install_packages
command -v curl >/dev/null 2>&1 || apt_install "$STATE_DIR/apt-install.log" curl
ensure_user
configure_user
delegate_cgroups
start_service
chmod 0755 "$STATE_DIR"
echo "$SOCKET" >"$STATE_DIR/socket"
log "done in $(($(date +%s) - start_ts)) s (socket $SOCKET; node setting podman_socket)"
