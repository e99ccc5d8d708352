#!/usr/bin/env bash
# The one command that runs every check and test: formatting, lints, unit and integration
# tests, then the end-to-end suite against the real binary with real client libraries.
# Exits non-zero as soon as anything fails.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

step() { printf '\n==> %s\n' "$*" >&2; }

step "setup"
bash scripts/setup.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "postgres"
# One throwaway PostgreSQL cluster for the tests of the deployments catalogue on PostgreSQL
# (they read FLUMEN_TEST_POSTGRES_URL), stopped whatever way this script ends.
postgres_dir="$repo_root/target/postgres"
trap 'bash scripts/postgres.sh stop "$postgres_dir"' EXIT
FLUMEN_TEST_POSTGRES_URL="$(bash scripts/postgres.sh start "$postgres_dir" "${FLUMEN_TEST_POSTGRES_PORT:-54329}")"
export FLUMEN_TEST_POSTGRES_URL

step "cargo test"
# CI runs the log's crash and model tests at full length (hundreds of kill -9 rounds and
# property cases, a few minutes); a developer's run takes the short version unless asked.
if [ "${CI:-}" = "true" ]; then
  export FLUMEN_SLOW_TESTS="${FLUMEN_SLOW_TESTS:-1}"
fi
cargo test --workspace

step "cargo build --bin flumen"
cargo build --bin flumen

step "end-to-end tests"
FLUMEN_BIN="${CARGO_TARGET_DIR:-$repo_root/target}/debug/flumen" python3 -m pytest tests/e2e -q

step "browser tests"
# The web page in Debian's Chromium, driven by playwright-core (tests/browser/README.md).
FLUMEN_BIN="${CARGO_TARGET_DIR:-$repo_root/target}/debug/flumen" \
    node --test --test-concurrency=1 tests/browser/
