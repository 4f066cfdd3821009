#!/usr/bin/env bash
# Runs every cargo-fuzz target in the repository for a while (default 60 s each).
#   bash scripts/fuzz.sh            # all targets, 60 s each
#   bash scripts/fuzz.sh 10         # all targets, 10 s each (the test suite's smoke run)
#   bash scripts/fuzz.sh 300 wire   # only the fuzz crates under wire/, 300 s each
# Needs the nightly toolchain and cargo-fuzz; installs both when missing. Crashes are left
# in <crate>/fuzz/artifacts/ and make this script fail.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${1:-60}"
ONLY="${2:-}"
log() { printf '\033[1m[fuzz]\033[0m %s\n' "$*" >&2; }

# A pinned nightly, so a new nightly cannot break the runs (override: OMEGA_FUZZ_TOOLCHAIN).
TOOLCHAIN="${OMEGA_FUZZ_TOOLCHAIN:-nightly-2026-05-20}"
rustup toolchain list | grep -q "^$TOOLCHAIN" || rustup toolchain install "$TOOLCHAIN" --profile minimal
command -v cargo-fuzz >/dev/null 2>&1 || cargo +"$TOOLCHAIN" install cargo-fuzz --locked
# One target dir for all fuzz crates, so shared dependencies build once.
export CARGO_TARGET_DIR="$PWD/target/fuzz"

for manifest in */fuzz/Cargo.toml; do
  crate=${manifest%%/fuzz/Cargo.toml}
  [ -n "$ONLY" ] && [ "$crate" != "$ONLY" ] && continue
  for target in $(cd "$crate" && cargo +"$TOOLCHAIN" fuzz list); do
    log "$crate/$target: ${SECONDS_EACH}s"
    (cd "$crate" && cargo +"$TOOLCHAIN" fuzz run "$target" -- -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 2>&1 | tail -n 3)
  done
done
log "no crashes"
