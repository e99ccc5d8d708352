#!/usr/bin/env bash
# Installs what the end-to-end tests need on a fresh Debian 12 machine and builds the
# Go client used by tests/e2e. Idempotent: anything already present is skipped.
# Quiet on success; any failure stops the script with a non-zero exit.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

log() { printf 'setup: %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        log "need root to run: $*"
        return 1
    fi
}

# --- Debian packages -------------------------------------------------------------------
# golang-github-fluent-fluent-logger-golang-dev is the Go library inside Docker's fluentd
# logging driver; the Go client in tests/e2e/go is built against it in GOPATH mode.
# rsyslog and bsdutils (logger) are the real syslog senders of tests/e2e; openssl makes
# their TLS certificates; curl reads a live stream (`curl -N`, test_tail_ws.py).
# postgresql is the deployments catalogue's second database: scripts/postgres.sh runs
# throwaway clusters of it for `cargo test` (scripts/test.sh) and tests/e2e (pg.py).
# chromium is the browser that tests/browser drives (npm's playwright-core, which downloads
# no browser of its own).
apt_packages=(golang-go golang-github-fluent-fluent-logger-golang-dev curl rsyslog bsdutils openssl
    postgresql chromium)
missing=()
for pkg in "${apt_packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$pkg")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing apt packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq
    as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- Python packages -------------------------------------------------------------------
requirements="tests/e2e/requirements.txt"
if ! python3 - "$requirements" <<'PY'
import sys
from importlib.metadata import version, PackageNotFoundError
ok = True
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    name, _, want = line.partition("==")
    name = name.split("[", 1)[0]  # moto[server]: the package is moto
    try:
        ok &= version(name.strip()) == want.strip()
    except PackageNotFoundError:
        ok = False
sys.exit(0 if ok else 1)
PY
then
    log "installing Python packages from $requirements"
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PIP_BREAK_SYSTEM_PACKAGES=1 \
        python3 -m pip install -q -r "$requirements"
fi

# --- Node packages ---------------------------------------------------------------------
# tests/e2e/node: the client libraries; tests/browser: playwright-core and fluent-logger.
for node_dir in tests/e2e/node tests/browser; do
    stamp="$node_dir/node_modules/.flumen-lock-sha256"
    lock_sum="$(sha256sum "$node_dir/package-lock.json" | cut -d' ' -f1)"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_sum" ]; then
        log "installing Node packages in $node_dir (npm ci)"
        (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
        printf '%s\n' "$lock_sum" >"$stamp"
    fi
done

# --- Go client -------------------------------------------------------------------------
# GOPATH mode against Debian's /usr/share/gocode: no module download needed (or possible).
# The build cache lives under target/ so that it works without $HOME and stays out of git.
mkdir -p target/e2e
GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= GOCACHE="$repo_root/target/e2e/go-cache" \
    go build -o target/e2e/fluent-go-client ./tests/e2e/go/

# --- S3 server -------------------------------------------------------------------------
# s3s-fs (crates.io): a real S3 server that checks SigV4 signatures and stores objects as
# files, for the S3 output's tests (tests/e2e/test_s3_output.py). 0.14 is the last release
# that builds with Rust 1.95. About 3 minutes to build on 2 cores, once.
s3s_fs_version=0.14.1
if [ "$(target/tools/bin/s3s-fs --version 2>/dev/null)" != "s3s-fs $s3s_fs_version" ]; then
    log "installing s3s-fs $s3s_fs_version (cargo install)"
    cargo install --quiet --locked --features binary --root target/tools s3s-fs@"$s3s_fs_version"
fi

# --- Rust components used by scripts/test.sh -------------------------------------------
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    log "installing rustfmt and clippy"
    rustup component add rustfmt clippy >/dev/null
fi
