#!/usr/bin/env bash
# Installs what is missing and runs every test: rustfmt, clippy (warnings denied), unit and
# integration tests, then Playwright against the real server.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

check_system
# The toolchain of rust-toolchain.toml (rustup installs it on first use), installed now, before
# two cargo runs could both want it.
cargo --version >/dev/null

# SurrealDB's own server, for the cluster tests: built once per machine (about 10 minutes cold),
# in the background while the tools install and clippy runs, since each of those leaves a core
# idle for minutes at a time (one big crate, a link).
surreal_log="$(mktemp)"
bash scripts/build-surreal.sh > "$surreal_log.path" 2> "$surreal_log" &
surreal_build=$!
trap 'kill "$surreal_build" 2>/dev/null || true' EXIT

install_rust_tools
install_test_tools
install_test_peers

log "cargo fmt --check"
cargo fmt --all --check

log "clippy, warnings denied"
cargo clippy -p app -p server --features app/ssr --all-targets -- -D warnings
cargo clippy -p frontend --target wasm32-unknown-unknown -- -D warnings

log "SurrealDB's server"
if ! wait "$surreal_build"; then
    echo "building SurrealDB's server failed; the end of its log:" >&2
    tail -n 40 "$surreal_log" >&2
    exit 1
fi
grep -E "Finished|building SurrealDB" "$surreal_log" || true
MAILROOM_SURREAL_BIN="$(tail -n1 "$surreal_log.path")"
export MAILROOM_SURREAL_BIN
rm -f "$surreal_log" "$surreal_log.path"

log "unit and integration tests"
cargo test -p app -p server --features app/ssr

# The server binary the Playwright runs start is the one `cargo test` just built and tested.
build_front

log "Playwright"
export MAILROOM_SERVER_BIN="$CARGO_TARGET_DIR/debug/server"
export LEPTOS_SITE_ROOT="$ROOT/target/site"
(cd end2end && npx playwright test)
log "Playwright against a cluster (SurrealDB's server, three nodes, HAProxy)"
(cd end2end && npx playwright test -c cluster.config.ts)
log "each benchmark once, tiny, against this debug build (so the scripts cannot rot)"
bash bench/all --smoke
log "all tests passed"
