# Shared by serve.sh and test.sh: installs what is missing, skips what is present.
# Safe to source twice; every step checks before it installs.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# Build outside the clone so a fresh clone (and CI) reuses earlier builds on this machine.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mailroom/target}"
mkdir -p "$CARGO_TARGET_DIR"
# A fresh clone (CI) builds its workspace crates at a new path: incremental caches for them are
# never reused and cost gigabytes.
if [ -n "${CI:-}" ]; then export CARGO_INCREMENTAL=0; fi
# In CI every fresh clone links its own test binaries (~550 MB each, debug) into the shared
# cache: there, drop the ones no build has touched for an hour so repeated runs do not fill the
# disk. Libraries stay; relinking is cheap. Outside CI nothing is deleted.
if [ -n "${CI:-}" ]; then
    find "$CARGO_TARGET_DIR/debug/deps" -maxdepth 1 -type f -executable -size +100M -mmin +60 -delete 2>/dev/null || true
fi
export PATH="$HOME/.cargo/bin:$PATH"

CARGO_LEPTOS_VERSION=0.3.10
# wasm-bindgen-cli must equal the wasm-bindgen crate in Cargo.lock.
WASM_BINDGEN_VERSION="$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')"

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# What a fresh Debian 12/13 machine may lack: a C compiler (ring and aws-lc-sys build C),
# python3-venv (the test SMTP peer's venv) and Node >= 20 (Playwright). Installs the Debian
# packages; for Node it names what to install, since Debian 12's own nodejs is 18.
check_system() {
    local missing=()
    command -v cc >/dev/null || missing+=(build-essential)
    python3 -c "import ensurepip, venv" 2>/dev/null || missing+=(python3-venv)
    if [ "${#missing[@]}" -gt 0 ]; then
        log "installing ${missing[*]}"
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}"
    fi
    local node_major
    node_major="$(node --version 2>/dev/null | sed -n 's/^v\([0-9]*\).*/\1/p')"
    if [ -z "$node_major" ] || [ "$node_major" -lt 20 ]; then
        echo "Node.js 20 or newer is needed for the Playwright tests (found: $(node --version 2>/dev/null || echo none))." >&2
        echo "Install it, e.g. from NodeSource (https://github.com/nodesource/distributions) or with nvm, then run this again." >&2
        exit 1
    fi
}

# What every build of the site needs: the WASM target and wasm-bindgen-cli at the version of
# the wasm-bindgen crate in Cargo.lock.
install_rust_tools() {
    if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
        log "adding the wasm32-unknown-unknown target"
        rustup target add wasm32-unknown-unknown
    fi
    if ! wasm-bindgen --version 2>/dev/null | grep -q "$WASM_BINDGEN_VERSION"; then
        log "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (about 3 minutes, once)"
        # Not --locked: its lock file pins a crate this registry lacks.
        cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --force
    fi
}

# cargo-leptos, for the release build only (bench/all): its install compiles about 700 crates.
install_cargo_leptos() {
    if ! cargo leptos --version 2>/dev/null | grep -q "$CARGO_LEPTOS_VERSION"; then
        log "installing cargo-leptos $CARGO_LEPTOS_VERSION (about 20 minutes, once)"
        cargo install cargo-leptos --locked --version "$CARGO_LEPTOS_VERSION"
    fi
}

install_test_tools() {
    # Chromium for Playwright; HAProxy in front of the cluster the cluster tests start.
    local missing=()
    command -v chromium >/dev/null || missing+=(chromium)
    command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
    if [ "${#missing[@]}" -gt 0 ]; then
        log "installing ${missing[*]} from Debian"
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}"
    fi
    if [ ! -d end2end/node_modules/@playwright/test ] || [ end2end/package-lock.json -nt end2end/node_modules/.package-lock.json ]; then
        log "installing the end-to-end test packages"
        (cd end2end && npm ci --no-audit --no-fund)
    fi
}

# The independent peers the tests talk to, in a venv outside the clone: aiosmtpd (SMTP) and
# PyJWT with cryptography (the Google-like token endpoint that verifies service-account JWTs).
AIOSMTPD_VERSION=1.4.6
PYJWT_VERSION=2.10.1
CRYPTOGRAPHY_VERSION=46.0.3
export MAILROOM_TEST_PYTHON="${MAILROOM_TEST_PYTHON:-$HOME/.cache/mailroom/venv/bin/python}"
install_test_peers() {
    if ! "$MAILROOM_TEST_PYTHON" -c "import aiosmtpd, jwt, cryptography, sys; sys.exit(aiosmtpd.__version__ != '$AIOSMTPD_VERSION' or jwt.__version__ != '$PYJWT_VERSION' or cryptography.__version__ != '$CRYPTOGRAPHY_VERSION')" 2>/dev/null; then
        log "installing aiosmtpd $AIOSMTPD_VERSION, PyJWT $PYJWT_VERSION and cryptography $CRYPTOGRAPHY_VERSION into $(dirname "$(dirname "$MAILROOM_TEST_PYTHON")")"
        python3 -m venv "$(dirname "$(dirname "$MAILROOM_TEST_PYTHON")")"
        "$MAILROOM_TEST_PYTHON" -m pip install --quiet --disable-pip-version-check "aiosmtpd==$AIOSMTPD_VERSION" \
            "PyJWT==$PYJWT_VERSION" "cryptography==$CRYPTOGRAPHY_VERSION"
    fi
    command -v openssl >/dev/null || { as_root apt-get update -qq; DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq openssl; }
}

# What `cargo leptos build` (debug) runs, step for step and with the same LEPTOS_* variables
# and target directories, so the two share every artifact: the WASM library and its JS
# bindings, the stylesheet, the server. Without cargo-leptos, whose one-time install was a third
# of a cold CI run. One difference: the stylesheet is copied as written, where cargo-leptos
# passes it through lightningcss (minified and with fallbacks for old browsers in release, which
# bench/all still builds with cargo-leptos).
LEPTOS_BUILD_ENV=(LEPTOS_OUTPUT_NAME=mailroom LEPTOS_SITE_ROOT=target/site LEPTOS_SITE_PKG_DIR=pkg
    LEPTOS_SITE_ADDR=127.0.0.1:3000 LEPTOS_RELOAD_PORT=3001 LEPTOS_LIB_DIR=frontend LEPTOS_BIN_DIR=server
    LEPTOS_JS_MINIFY=false LEPTOS_HASH_FILES=false)
build_site() {
    build_front
    log "building the server (debug)"
    env "${LEPTOS_BUILD_ENV[@]}" cargo build --package=server --bin=server --no-default-features
}

# The browser's half: the WASM library, its bindings, the stylesheet. test.sh runs this alone:
# `cargo test` has just built the server binary, and building it again here (without the test
# dependencies' features, which change reqwest's and so SurrealDB's) would compile both again.
build_front() {
    log "building the site (debug): the WASM and its bindings, the stylesheet"
    env "${LEPTOS_BUILD_ENV[@]}" cargo build --package=frontend --lib --target-dir="$CARGO_TARGET_DIR/front" \
        --target=wasm32-unknown-unknown --no-default-features
    mkdir -p target/site/pkg
    wasm-bindgen --target=web --out-name=mailroom --out-dir=target/site/pkg \
        "$CARGO_TARGET_DIR/front/wasm32-unknown-unknown/debug/frontend.wasm"
    # The name leptos' HydrationScripts asks for.
    mv -f target/site/pkg/mailroom_bg.wasm target/site/pkg/mailroom.wasm
    cp style/main.css target/site/pkg/mailroom.css
}

# What bench/all needs beyond the tests: wrk (HTTP load), brotli (precompressed assets) and,
# for release builds, wasm-opt from npm's binaryen 132 (Debian's binaryen breaks the WASM).
BINARYEN_DIR="$HOME/.cache/mailroom/binaryen"
install_bench_tools() {
    local missing=()
    command -v wrk >/dev/null || missing+=(wrk)
    command -v brotli >/dev/null || missing+=(brotli)
    if [ "${#missing[@]}" -gt 0 ]; then
        log "installing ${missing[*]} from Debian"
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}"
    fi
}

install_wasm_opt() {
    if [ ! -x "$BINARYEN_DIR/node_modules/.bin/wasm-opt" ]; then
        log "installing wasm-opt (npm binaryen@132.0.0) into $BINARYEN_DIR"
        mkdir -p "$BINARYEN_DIR"
        (cd "$BINARYEN_DIR" && npm install --no-audit --no-fund --silent binaryen@132.0.0)
    fi
}

build_release_site() {
    install_cargo_leptos
    install_wasm_opt
    log "building the site (cargo leptos build --release)"
    PATH="$BINARYEN_DIR/node_modules/.bin:$PATH" cargo leptos build --release
}

# Brotli and gzip copies next to the script, WASM and stylesheet; the server sends them to
# browsers that accept them (server/src/assets.rs). Stale copies are replaced. $1: brotli's
# quality (11, the best, takes ~5 s for the release WASM; a debug WASM is ten times larger).
compress_site() {
    local file quality="${1:-11}"
    for file in target/site/pkg/*.js target/site/pkg/*.wasm target/site/pkg/*.css; do
        [ -e "$file" ] || continue
        if [ ! "$file.br" -nt "$file" ]; then brotli --force --quality="$quality" --output="$file.br" "$file" && touch "$file.br"; fi
        if [ ! "$file.gz" -nt "$file" ]; then gzip --best --stdout "$file" > "$file.gz"; fi
    done
}
