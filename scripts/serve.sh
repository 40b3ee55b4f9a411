#!/usr/bin/env bash
# Installs what is missing, builds, and serves Mailroom at http://127.0.0.1:3000 on the
# embedded database under ./data, with a first admin ready to sign in.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

check_system
install_rust_tools
build_site

mkdir -p data
if [ -z "${MAILROOM_ADMIN_EMAIL:-}" ]; then
    if [ ! -f data/first-admin.txt ]; then
        (umask 077; printf 'admin@example.com\n%s\n' "$(head -c 18 /dev/urandom | base64 | tr -d '/+=')" > data/first-admin.txt)
    fi
    export MAILROOM_ADMIN_EMAIL="$(sed -n 1p data/first-admin.txt)"
    export MAILROOM_ADMIN_PASSWORD="$(sed -n 2p data/first-admin.txt)"
fi
export MAILROOM_BIND="${MAILROOM_BIND:-127.0.0.1:3000}"
export LEPTOS_SITE_ROOT="${LEPTOS_SITE_ROOT:-target/site}"

log "Mailroom: http://$MAILROOM_BIND/login"
if [ -f data/first-admin.txt ] && [ "$MAILROOM_ADMIN_EMAIL" = "$(sed -n 1p data/first-admin.txt)" ]; then
    log "sign in as $MAILROOM_ADMIN_EMAIL with the password in data/first-admin.txt: $MAILROOM_ADMIN_PASSWORD"
else
    log "sign in as $MAILROOM_ADMIN_EMAIL with MAILROOM_ADMIN_PASSWORD"
fi
exec "$CARGO_TARGET_DIR/debug/server"
