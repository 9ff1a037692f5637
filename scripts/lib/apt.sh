# shellcheck shell=bash
# apt_install LOG_FILE PACKAGE...: install Debian packages without starting their services (there is
# no init system here), waiting for another apt run's lock, and refreshing a stale index once.
# The caller defines log() and has checked it runs as root.
apt_install() {
    local logfile="$1"
    shift
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod +x "$policy"
        created_policy=1
    fi
    local apt_opts=(-y --no-install-recommends -o DPkg::Lock::Timeout=900) status=0
    if ! DEBIAN_FRONTEND=noninteractive apt-get install "${apt_opts[@]}" "$@" >"$logfile" 2>&1; then
        log "apt-get install failed; running apt-get update and retrying"
        apt-get -o DPkg::Lock::Timeout=900 update >>"$logfile" 2>&1 || true
        if ! DEBIAN_FRONTEND=noninteractive apt-get install "${apt_opts[@]}" "$@" >>"$logfile" 2>&1; then
            log "apt-get install $* failed; see $logfile:"
            tail -n 20 "$logfile" >&2
            status=1
        fi
    fi
    [ "$created_policy" -eq 1 ] && rm -f "$policy"
    return "$status"
}
