#!/usr/bin/env bash
# Runs Mailroom as a cluster on this machine: one SurrealDB server (surrealkv on disk), three
# nodes on it (node-a, node-b, node-c) and HAProxy in front of them, round robin, checking each
# node's /healthz. Prints the URL. Ctrl-C or SIGTERM stops HAProxy, then the nodes (they release
# what they are sending), then the database.
#
# Environment (all optional):
#   MAILROOM_CLUSTER_DIR         data, logs and generated config     (data/cluster)
#   MAILROOM_CLUSTER_PORT        HAProxy, the URL users open         (8080)
#   MAILROOM_CLUSTER_DB_PORT     the SurrealDB server                (8000)
#   MAILROOM_CLUSTER_NODE_PORTS  one port per node, 1 to 9 of them   ("3101 3102 3103")
#   MAILROOM_CLUSTER_DB_USER     the database's root user            (root)
#   MAILROOM_CLUSTER_DB_PASS     its password        (generated once into $MAILROOM_CLUSTER_DIR/db-password)
#   MAILROOM_CLUSTER_SKIP_BUILD  1: run the binaries already built instead of building first
# Every other MAILROOM_* variable reaches every node (see the README's configuration table).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

CLUSTER_DIR="${MAILROOM_CLUSTER_DIR:-$ROOT/data/cluster}"
CLUSTER_PORT="${MAILROOM_CLUSTER_PORT:-8080}"
DB_PORT="${MAILROOM_CLUSTER_DB_PORT:-8000}"
read -r -a NODE_PORTS <<< "${MAILROOM_CLUSTER_NODE_PORTS:-3101 3102 3103}"
NODE_LETTERS=(a b c d e f g h i)
DB_USER="${MAILROOM_CLUSTER_DB_USER:-root}"
SERVER="$CARGO_TARGET_DIR/debug/server"

if [ "${#NODE_PORTS[@]}" -lt 1 ] || [ "${#NODE_PORTS[@]}" -gt 9 ]; then
    echo "MAILROOM_CLUSTER_NODE_PORTS: give 1 to 9 ports" >&2
    exit 2
fi
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in "$CLUSTER_PORT" "$DB_PORT" "${NODE_PORTS[@]}"; do
    if port_in_use "$port"; then
        echo "port $port is in use: stop what listens there or choose other ports (see the top of $0)" >&2
        exit 2
    fi
done

# --- what it runs: HAProxy from Debian, SurrealDB's server, Mailroom's server and site ---
check_system
if ! command -v haproxy >/dev/null && [ ! -x /usr/sbin/haproxy ]; then
    log "installing HAProxy from Debian"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq haproxy
fi
HAPROXY="$(command -v haproxy || echo /usr/sbin/haproxy)"
SURREAL="$(bash scripts/build-surreal.sh | tail -n1)"
if [ "${MAILROOM_CLUSTER_SKIP_BUILD:-}" != 1 ]; then
    install_rust_tools
    build_site
fi
[ -x "$SERVER" ] || { echo "no server binary at $SERVER: run without MAILROOM_CLUSTER_SKIP_BUILD" >&2; exit 1; }

# --- what the nodes share: the database, the instance key, the public URL ---
mkdir -p "$CLUSTER_DIR"
CLUSTER_DIR="$(cd "$CLUSTER_DIR" && pwd)"
if [ -z "${MAILROOM_CLUSTER_DB_PASS:-}" ] && [ ! -f "$CLUSTER_DIR/db-password" ]; then
    (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$CLUSTER_DIR/db-password")
fi
DB_PASS="${MAILROOM_CLUSTER_DB_PASS:-$(cat "$CLUSTER_DIR/db-password")}"
if [ -z "${MAILROOM_ADMIN_EMAIL:-}" ]; then
    if [ ! -f "$CLUSTER_DIR/first-admin.txt" ]; then
        (umask 077; printf 'admin@example.com\n%s\n' "$(head -c 18 /dev/urandom | base64 | tr -d '/+=')" > "$CLUSTER_DIR/first-admin.txt")
    fi
    MAILROOM_ADMIN_EMAIL="$(sed -n 1p "$CLUSTER_DIR/first-admin.txt")"
    MAILROOM_ADMIN_PASSWORD="$(sed -n 2p "$CLUSTER_DIR/first-admin.txt")"
    export MAILROOM_ADMIN_EMAIL MAILROOM_ADMIN_PASSWORD
fi
export MAILROOM_DATABASE_URL="ws://127.0.0.1:$DB_PORT"
export MAILROOM_DATABASE_USER="$DB_USER"
export MAILROOM_DATABASE_PASSWORD="$DB_PASS"
export MAILROOM_SECRET_KEY_FILE="${MAILROOM_SECRET_KEY_FILE:-$CLUSTER_DIR/secret.key}"
# Links in mail point at the balancer, and the nodes accept its host name and origin.
export MAILROOM_PUBLIC_URL="${MAILROOM_PUBLIC_URL:-http://127.0.0.1:$CLUSTER_PORT}"
# HAProxy's X-Forwarded-For names the client, so rate limits count clients, not the balancer.
export MAILROOM_TRUSTED_PROXIES="${MAILROOM_TRUSTED_PROXIES:-127.0.0.1/32}"
export LEPTOS_SITE_ROOT="${LEPTOS_SITE_ROOT:-$ROOT/target/site}"
# The host part of the public URL: every node answers to it, wherever it is bound.
PUBLIC_HOST="${MAILROOM_PUBLIC_URL#*://}"

# --- start and stop ---
PIDS=()   # in start order; stopped in reverse
NAMES=()
alive() { local state; state="$(ps -o stat= -p "$1" 2>/dev/null)" && [[ $state != Z* ]]; }

# stop INDEX...: SIGTERM to these processes together, then waits for each; after 15 s (a node
# stops within ten, see Server::run) SIGKILL.
stop() {
    local i tries running
    for i in "$@"; do
        if alive "${PIDS[$i]}"; then kill -TERM "${PIDS[$i]}" 2>/dev/null || true; fi
    done
    for ((tries = 0; tries < 150; tries++)); do
        running=0
        for i in "$@"; do
            if alive "${PIDS[$i]}"; then running=1; fi
        done
        if ((running == 0)); then break; fi
        sleep 0.1
    done
    for i in "$@"; do
        if alive "${PIDS[$i]}"; then
            echo "${NAMES[$i]} (pid ${PIDS[$i]}) did not stop within 15 s: killing it" >&2
            kill -KILL "${PIDS[$i]}" 2>/dev/null || true
        fi
        wait "${PIDS[$i]}" 2>/dev/null || true
        echo "stopped ${NAMES[$i]}"
    done
}

# HAProxy first (no new requests), then the nodes together (each releases what it is sending,
# in the database), then the database.
stop_all() {
    trap - INT TERM EXIT
    [ "${#PIDS[@]}" -gt 0 ] || return 0
    log "stopping the cluster"
    local i balancer=() nodes=() database=()
    for i in "${!NAMES[@]}"; do
        case "${NAMES[$i]}" in
            haproxy) balancer+=("$i") ;;
            surreal) database+=("$i") ;;
            *) nodes+=("$i") ;;
        esac
    done
    stop "${balancer[@]}"
    stop "${nodes[@]}"
    stop "${database[@]}"
    PIDS=()
}
trap 'stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM
trap stop_all EXIT

# start NAME LOG COMMAND...: in a session of its own, so a Ctrl-C in the terminal reaches only
# this script, which stops everything in order.
start() {
    local name="$1" logfile="$2"
    shift 2
    setsid "$@" >>"$logfile" 2>&1 < /dev/null &
    PIDS+=("$!")
    NAMES+=("$name")
}

# wait_for NAME LOG SECONDS COMMAND...: until COMMAND succeeds; stops everything if the last
# process started exits or the time runs out.
wait_for() {
    local name="$1" logfile="$2" deadline=$((SECONDS + $3))
    shift 3
    until "$@" >/dev/null 2>&1; do
        if ! alive "${PIDS[-1]}"; then
            echo "$name exited during start-up; the end of $logfile:" >&2
            tail -n 20 "$logfile" >&2
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            echo "$name was not ready within $3 s; the end of $logfile:" >&2
            tail -n 20 "$logfile" >&2
            exit 1
        fi
        sleep 0.2
    done
}

log "SurrealDB on 127.0.0.1:$DB_PORT, data in $CLUSTER_DIR/db"
# Credentials through the environment: a command line is visible to every local user.
start surreal "$CLUSTER_DIR/surreal.log" env SURREAL_USER="$DB_USER" SURREAL_PASS="$DB_PASS" \
    SURREAL_ONLINE_VERSION_CHECK=false "$SURREAL" start --bind "127.0.0.1:$DB_PORT" "surrealkv://$CLUSTER_DIR/db"
wait_for surreal "$CLUSTER_DIR/surreal.log" 60 curl -fsS "http://127.0.0.1:$DB_PORT/health"

# One at a time: the first start on a fresh database creates the instance key and the first
# admin; the others then find both.
for i in "${!NODE_PORTS[@]}"; do
    node="node-${NODE_LETTERS[$i]}"
    port="${NODE_PORTS[$i]}"
    mkdir -p "$CLUSTER_DIR/$node"
    log "$node on 127.0.0.1:$port"
    # Each in a directory of its own: a node reads a .env file where it runs.
    start "$node" "$CLUSTER_DIR/$node.log" env -C "$CLUSTER_DIR/$node" \
        MAILROOM_NODE_ID="$node" MAILROOM_BIND="127.0.0.1:$port" "$SERVER"
    wait_for "$node" "$CLUSTER_DIR/$node.log" 120 curl -fsS "http://127.0.0.1:$port/healthz"
done

cat > "$CLUSTER_DIR/haproxy.cfg" <<EOF
# Generated by scripts/cluster.sh; rewritten at every start.
global
    log stdout format raw local0 info
    maxconn 4096

defaults
    mode http
    log global
    option httplog
    option forwardfor
    timeout connect 5s
    timeout http-request 10s
    # The SMTP status stream (server-sent events) stays open while an admin page is; it sends
    # a keep-alive every 15 s, well inside these.
    timeout client 1m
    timeout server 1m
    # Upgraded connections (WebSocket) may idle for an hour.
    timeout tunnel 1h

frontend mailroom
    bind 127.0.0.1:$CLUSTER_PORT
    default_backend nodes

backend nodes
    balance roundrobin
    # Sessions live in the database: any node serves any request, no stickiness.
    # The check names the public host, which every node answers to (see server/src/origin.rs).
    option httpchk
    http-check send meth GET uri /healthz ver HTTP/1.1 hdr Host $PUBLIC_HOST
    http-check expect status 200
    default-server inter 2s fall 2 rise 2
EOF
for i in "${!NODE_PORTS[@]}"; do
    echo "    server node-${NODE_LETTERS[$i]} 127.0.0.1:${NODE_PORTS[$i]} check" >> "$CLUSTER_DIR/haproxy.cfg"
done
"$HAPROXY" -c -q -f "$CLUSTER_DIR/haproxy.cfg"

log "HAProxy on 127.0.0.1:$CLUSTER_PORT"
start haproxy "$CLUSTER_DIR/haproxy.log" "$HAPROXY" -db -f "$CLUSTER_DIR/haproxy.cfg"
wait_for haproxy "$CLUSTER_DIR/haproxy.log" 30 curl -fsS "http://127.0.0.1:$CLUSTER_PORT/healthz"

log "Mailroom cluster: $MAILROOM_PUBLIC_URL/login"
if [ -f "$CLUSTER_DIR/first-admin.txt" ] && [ "$MAILROOM_ADMIN_EMAIL" = "$(sed -n 1p "$CLUSTER_DIR/first-admin.txt")" ]; then
    log "sign in as $MAILROOM_ADMIN_EMAIL with the password in $CLUSTER_DIR/first-admin.txt: $MAILROOM_ADMIN_PASSWORD"
else
    log "sign in as $MAILROOM_ADMIN_EMAIL with MAILROOM_ADMIN_PASSWORD"
fi
for i in "${!PIDS[@]}"; do
    printf '    %-8s pid %-7s log %s\n' "${NAMES[$i]}" "${PIDS[$i]}" "$CLUSTER_DIR/${NAMES[$i]}.log"
done
log "Ctrl-C stops everything"

# Report what exits meanwhile (a killed node is routed around); without HAProxy nothing is served.
reported=()
while true; do
    sleep 1 &
    wait $! || true
    for i in "${!PIDS[@]}"; do
        pid="${PIDS[$i]}"
        if [ -z "${reported[$i]:-}" ] && ! alive "$pid"; then
            reported[i]=1
            status=0
            wait "$pid" 2>/dev/null || status=$?
            echo "${NAMES[$i]} (pid $pid) exited with status $status; see $CLUSTER_DIR/${NAMES[$i]}.log" >&2
            [ "${NAMES[$i]}" != haproxy ] || exit 1
        fi
    done
done
