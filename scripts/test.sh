#!/usr/bin/env bash
# Installs what is missing and runs every test: rustfmt, clippy (warnings denied), unit and
# integration tests, then Playwright against the real server.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

check_system
install_rust_tools
install_test_tools
install_test_peers

log "cargo fmt --check"
cargo fmt --all --check

log "clippy, warnings denied"
cargo clippy -p app -p server --features app/ssr --all-targets -- -D warnings
cargo clippy -p frontend --target wasm32-unknown-unknown -- -D warnings

# SurrealDB's own server, for the cluster tests (built once per machine).
MAILROOM_SURREAL_BIN="$(bash scripts/build-surreal.sh | tail -n1)"
export MAILROOM_SURREAL_BIN

log "unit and integration tests"
cargo test -p app -p server --features app/ssr

build_site

log "Playwright"
export MAILROOM_SERVER_BIN="$CARGO_TARGET_DIR/debug/server"
export LEPTOS_SITE_ROOT="$ROOT/target/site"
(cd end2end && npx playwright test)
log "Playwright against a cluster (SurrealDB's server, three nodes, HAProxy)"
(cd end2end && npx playwright test -c cluster.config.ts)
log "all tests passed"
