#!/usr/bin/env bash
# Install and start PostgreSQL and RabbitMQ for vantage6nb's production-path tests, idempotently.
#
# - installs Debian's postgresql and rabbitmq-server from the configured apt mirror when missing;
# - starts the PostgreSQL cluster (pg_ctlcluster) listening on 127.0.0.1 only, and creates the test
#   role (LOGIN CREATEDB, so tests can create fresh databases) and its database;
# - starts RabbitMQ detached with AMQP, epmd and Erlang distribution all bound to 127.0.0.1;
# - waits until both answer, and prints how long each step took.
# No systemd is needed. Re-running it when both services answer takes well under a second.
# `setup-services.sh --stop` stops both again.
#
# Tests read the same defaults (tests/support/services.py):
#   V6NB_PG_URL  postgresql+psycopg2://v6nb:v6nb@127.0.0.1:5432/v6nb_test
#   V6NB_AMQP_URL amqp://guest:guest@127.0.0.1:5672//
set -euo pipefail

PG_ROLE="${V6NB_PG_ROLE:-v6nb}"
PG_PASSWORD="${V6NB_PG_PASSWORD:-v6nb}"
PG_DB="${V6NB_PG_DB:-v6nb_test}"
PG_PORT="${V6NB_PG_PORT:-5432}"
AMQP_PORT="${V6NB_AMQP_PORT:-5672}"
STATE_DIR="${V6NB_SERVICES_STATE:-/var/lib/v6nb-services}"
LOG_DIR="$STATE_DIR/log"

now_ms() { date +%s%3N; }
t0=$(now_ms)
step_t=$t0
log() { printf '[setup-services] %s\n' "$*" >&2; }
timing() {
    local t
    t=$(now_ms)
    log "$1 in $((t - step_t)) ms"
    step_t=$t
}

# shellcheck source=lib/apt.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

need_root() {
    if [ "$(id -u)" -ne 0 ]; then
        log "must run as root (installs packages and starts daemons); try: sudo $0"
        exit 1
    fi
}

# A TCP port on loopback that accepts connections (bash's /dev/tcp: no extra tool needed).
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

install_packages() {
    local missing=()
    command -v pg_ctlcluster >/dev/null 2>&1 && command -v psql >/dev/null 2>&1 || missing+=(postgresql)
    [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || command -v rabbitmq-server >/dev/null 2>&1 ||
        missing+=(rabbitmq-server)
    if [ "${#missing[@]}" -eq 0 ]; then
        log "packages present"
        return
    fi
    need_root
    log "installing ${missing[*]}"
    apt_install "$LOG_DIR/apt-install.log" "${missing[@]}" || exit 1
}

# --- PostgreSQL ----------------------------------------------------------------------------------

as_postgres() { runuser -u postgres -- "$@"; }

pg_cluster() {
    # "<version> <name>" of the first cluster; creates one when the package made none.
    local line
    line=$(pg_lsclusters -h 2>/dev/null | awk 'NR==1 {print $1, $2}')
    if [ -z "$line" ]; then
        need_root
        local version
        version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
        log "creating PostgreSQL cluster $version/main"
        pg_createcluster "$version" main >>"$LOG_DIR/postgres-setup.log" 2>&1
        line="$version main"
    fi
    echo "$line"
}

pg_login() {
    PGPASSWORD="$PG_PASSWORD" PGCONNECT_TIMEOUT=5 psql -q -h 127.0.0.1 -p "$PG_PORT" \
        -U "$PG_ROLE" -d "$PG_DB" -c 'SELECT 1' >/dev/null 2>&1
}

pg_ready() { pg_isready -q -h 127.0.0.1 -p "$PG_PORT" 2>/dev/null; }

start_postgres() {
    local version name
    read -r version name < <(pg_cluster)
    local conf="/etc/postgresql/$version/$name/conf.d/v6nb.conf"
    local want
    want=$(printf "listen_addresses = '127.0.0.1'\nport = %s\n" "$PG_PORT")
    if [ ! -f "$conf" ] || [ "$(cat "$conf")" != "$want" ]; then
        need_root
        printf '%s\n' "$want" >"$conf"
        # Changed settings need a restart when the cluster is already up.
        if pg_lsclusters -h | awk -v v="$version" -v n="$name" '$1==v && $2==n {print $4}' |
            grep -q online; then
            log "restarting PostgreSQL $version/$name to apply $conf"
            pg_ctlcluster "$version" "$name" restart >>"$LOG_DIR/postgres-setup.log" 2>&1
        fi
    fi
    if pg_ready; then
        log "PostgreSQL $version/$name already answers on 127.0.0.1:$PG_PORT"
    else
        need_root
        log "starting PostgreSQL $version/$name on 127.0.0.1:$PG_PORT"
        # pg_ctlcluster drops to the cluster owner (postgres) by itself.
        pg_ctlcluster "$version" "$name" start >>"$LOG_DIR/postgres-setup.log" 2>&1 || {
            log "pg_ctlcluster start failed; last log lines:"
            tail -n 20 "$LOG_DIR/postgres-setup.log" "/var/log/postgresql/postgresql-$version-$name.log" >&2 || true
            exit 1
        }
        local i
        for i in $(seq 1 120); do
            pg_ready && break
            sleep 0.25
        done
        pg_ready || {
            log "PostgreSQL did not answer within 30 s"
            exit 1
        }
    fi
    timing "PostgreSQL up"
    if pg_login; then
        log "role '$PG_ROLE' logs in to database '$PG_DB'"
        timing "PostgreSQL role and database checked"
        return
    fi
    need_root
    # Role and database: create when missing; the password is (re)applied so a changed
    # V6NB_PG_PASSWORD takes effect.
    as_postgres psql -q -v ON_ERROR_STOP=1 -p "$PG_PORT" -d postgres >/dev/null <<SQL
SELECT 'CREATE ROLE "$PG_ROLE" LOGIN CREATEDB'
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$PG_ROLE') \gexec
ALTER ROLE "$PG_ROLE" LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
SELECT 'CREATE DATABASE "$PG_DB" OWNER "$PG_ROLE"'
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$PG_DB') \gexec
SQL
    pg_login || {
        log "role '$PG_ROLE' still cannot log in to '$PG_DB' over 127.0.0.1; check pg_hba.conf"
        exit 1
    }
    timing "PostgreSQL role '$PG_ROLE' and database '$PG_DB' ready"
}

# --- RabbitMQ ------------------------------------------------------------------------------------

RABBIT_ENV=(
    RABBITMQ_NODENAME=rabbit@localhost
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
    RABBITMQ_NODE_PORT="$AMQP_PORT"
    ERL_EPMD_ADDRESS=127.0.0.1
    RABBITMQ_DIST_PORT=$((AMQP_PORT + 20000))
    # The Erlang distribution listener (the only other port) on loopback too.
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
    RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
    RABBITMQ_LOG_BASE="$LOG_DIR/rabbitmq"
)

rabbit() { env "${RABBIT_ENV[@]}" "$@"; }

launch_rabbitmq() {
    # Started first and waited for last: its ~7 s boot overlaps PostgreSQL's start.
    RABBIT_LAUNCHED=0
    if port_open "$AMQP_PORT"; then
        log "RabbitMQ already answers on 127.0.0.1:$AMQP_PORT"
        return
    fi
    need_root
    mkdir -p "$LOG_DIR/rabbitmq"
    chown rabbitmq:rabbitmq "$LOG_DIR/rabbitmq" 2>/dev/null || true
    log "starting RabbitMQ on 127.0.0.1:$AMQP_PORT (epmd and distribution on loopback)"
    # The Debian wrapper drops to the rabbitmq user; -detached returns once the VM is spawned.
    rabbit rabbitmq-server -detached >>"$LOG_DIR/rabbitmq-start.log" 2>&1
    RABBIT_LAUNCHED=1
}

wait_rabbitmq() {
    local i
    for i in $(seq 1 240); do
        port_open "$AMQP_PORT" && break
        sleep 0.25
    done
    if ! port_open "$AMQP_PORT"; then
        log "RabbitMQ did not answer within 60 s; last log lines:"
        tail -n 30 "$LOG_DIR/rabbitmq-start.log" "$LOG_DIR"/rabbitmq/*.log >&2 2>/dev/null || true
        exit 1
    fi
    if [ "$RABBIT_LAUNCHED" -eq 1 ]; then
        log "RabbitMQ up $(($(now_ms) - rabbit_t0)) ms after its launch"
    fi
    timing "RabbitMQ ready"
}

check_loopback_only() {
    # Every port the two services listen on must be bound to loopback.
    command -v ss >/dev/null 2>&1 || return 0
    local bad
    bad=$(ss -Hltnp 2>/dev/null | grep -E 'postgres|beam|epmd' |
        awk '{print $4}' | grep -vE '^(127\.0\.0\.1|\[::1\]|\[::ffff:127\.0\.0\.1\]):' || true)
    if [ -n "$bad" ]; then
        log "services listen on non-loopback addresses: $bad"
        exit 1
    fi
    log "listening on loopback only"
}

stop_services() {
    need_root
    local version name
    while read -r version name; do
        pg_ctlcluster "$version" "$name" stop 2>/dev/null && log "stopped PostgreSQL $version/$name"
    done < <(pg_lsclusters -h 2>/dev/null | awk '$4 ~ /online/ {print $1, $2}')
    if port_open "$AMQP_PORT"; then
        rabbit rabbitmqctl -q stop >/dev/null 2>&1 && log "stopped RabbitMQ"
    fi
    # epmd (Erlang's port mapper, started with the broker) outlives it: ask it to exit once the
    # broker has deregistered (epmd refuses to stop while a node is registered).
    if port_open 4369 && command -v epmd >/dev/null 2>&1; then
        local i
        for i in $(seq 1 40); do
            env ERL_EPMD_ADDRESS=127.0.0.1 epmd -names 2>/dev/null | grep -q '^name ' || break
            sleep 0.25
        done
        env ERL_EPMD_ADDRESS=127.0.0.1 epmd -kill >/dev/null 2>&1 || true
    fi
    return 0
}

if [ "${1:-}" = "--stop" ]; then
    stop_services
    exit 0
fi
mkdir -p "$LOG_DIR" 2>/dev/null || true
install_packages
timing "packages"
rabbit_t0=$(now_ms)
launch_rabbitmq
start_postgres
wait_rabbitmq
check_loopback_only
log "done in $(($(now_ms) - t0)) ms"
log "V6NB_PG_URL=postgresql+psycopg2://$PG_ROLE:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB"
log "V6NB_AMQP_URL=amqp://guest:guest@127.0.0.1:$AMQP_PORT//"
