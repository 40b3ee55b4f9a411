#!/usr/bin/env bash
# Builds SurrealDB's server, the `surreal` binary of tools/surreal, once per machine and prints
# its path on the last line of stdout: SURREAL="$(bash scripts/build-surreal.sh | tail -n1)".
# A later run only checks a stamp: the binary is rebuilt when tools/surreal changes (a new
# version, other features), never for a change in the app.
#
# MAILROOM_SURREAL_PROFILE=dev (the default: unoptimised, what the tests use) or fast (optimised,
# for the benchmarks; a binary of its own, surreal-fast).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

SURREAL_CACHE="${MAILROOM_SURREAL_CACHE:-$HOME/.cache/mailroom}"
SURREAL_PROFILE="${MAILROOM_SURREAL_PROFILE:-dev}"
case "$SURREAL_PROFILE" in
    dev) SURREAL_BIN="$SURREAL_CACHE/bin/surreal"; profile_dir=debug; cold="about 12 minutes" ;;
    fast) SURREAL_BIN="$SURREAL_CACHE/bin/surreal-fast"; profile_dir=fast; cold="about 25 minutes" ;;
    *) echo "MAILROOM_SURREAL_PROFILE: dev or fast, not $SURREAL_PROFILE" >&2; exit 2 ;;
esac
SURREAL_STAMP="$SURREAL_BIN.stamp"
# Its own target directory: nothing in it is shared with the app's build, and the app's
# site build never waits for it.
SURREAL_TARGET_DIR="${MAILROOM_SURREAL_TARGET_DIR:-$SURREAL_CACHE/surreal-target}"

surreal_version="$(sed -n 's/^surrealdb-server = { version = "=\([^"]*\)".*/\1/p' tools/surreal/Cargo.toml)"
[ -n "$surreal_version" ] || { echo "tools/surreal/Cargo.toml: no pinned surrealdb-server version" >&2; exit 1; }
# Comments aside, any change to the crate (version, features, lock, profiles, main) rebuilds it.
stamp="surrealdb-server $surreal_version $SURREAL_PROFILE $({ grep -v '^[[:space:]]*#' tools/surreal/Cargo.toml; cat tools/surreal/Cargo.lock tools/surreal/src/main.rs; } | sha256sum | cut -c1-16)"

if [ -x "$SURREAL_BIN" ] && [ "$(cat "$SURREAL_STAMP" 2>/dev/null)" = "$stamp" ]; then
    echo "$SURREAL_BIN"
    exit 0
fi

log "building SurrealDB $surreal_version (surreal, profile $SURREAL_PROFILE: $cold on two cores, once per machine) into $SURREAL_TARGET_DIR" >&2
mkdir -p "$(dirname "$SURREAL_BIN")"
CARGO_TARGET_DIR="$SURREAL_TARGET_DIR" cargo build --locked --profile "$SURREAL_PROFILE" --manifest-path tools/surreal/Cargo.toml >&2
# Copied then renamed: a run that reads the binary meanwhile never sees half of it.
cp "$SURREAL_TARGET_DIR/$profile_dir/surreal" "$SURREAL_BIN.tmp.$$"
mv "$SURREAL_BIN.tmp.$$" "$SURREAL_BIN"
echo "$stamp" > "$SURREAL_STAMP"
SURREAL_ONLINE_VERSION_CHECK=false "$SURREAL_BIN" version >&2
echo "$SURREAL_BIN"
