#!/usr/bin/env bash
# Runs every cargo-fuzz target in the repository for a while (default 60 s each) and prints,
# per target, the executions libFuzzer reports and whether it found a crash.
#   bash scripts/fuzz.sh                    # all targets, 60 s each
#   bash scripts/fuzz.sh 3                  # all targets, 3 s each (the test suite's smoke run)
#   bash scripts/fuzz.sh 300 wire           # only the fuzz crates under wire/, 300 s each
#   bash scripts/fuzz.sh 300 wire/messages  # only that target
#   bash scripts/fuzz.sh --record 60        # also append the figures to docs/fuzzing.md
# Needs the nightly toolchain and cargo-fuzz; installs both when missing. Starting inputs
# come from <crate>/fuzz/seeds/<target>/ when it exists; the corpus grows in
# <crate>/fuzz/corpus/<target>/ (ignored by git). Crashes are left in <crate>/fuzz/artifacts/
# and make this script fail (after every target has run). Logs: target/fuzz-logs/.
# OMEGA_FUZZ_MACHINE describes the machine in recorded rows (default: nproc and CPU model);
# OMEGA_FUZZ_ARGS adds libFuzzer options (e.g. "-max_len=65536"). OMEGA_FUZZ_DEV=1 builds the
# targets without optimisation and without AddressSanitizer (cargo fuzz --dev --sanitizer
# none): much quicker to build, slower to run; the test suite's smoke run uses it, long runs
# should not.
set -euo pipefail
cd "$(dirname "$0")/.."
RECORD=0
if [ "${1:-}" = "--record" ]; then
  RECORD=1
  shift
fi
SECONDS_EACH="${1:-60}"
ONLY="${2:-}"
ONLY_TARGET=""
case "$ONLY" in */*) ONLY_TARGET="${ONLY#*/}" ONLY="${ONLY%%/*}" ;; esac
log() { printf '\033[1m[fuzz]\033[0m %s\n' "$*" >&2; }

# A pinned nightly, so a new nightly cannot break the runs (override: OMEGA_FUZZ_TOOLCHAIN).
TOOLCHAIN="${OMEGA_FUZZ_TOOLCHAIN:-nightly-2026-05-20}"
rustup toolchain list | grep -q "^$TOOLCHAIN" || rustup toolchain install "$TOOLCHAIN" --profile minimal
command -v cargo-fuzz >/dev/null 2>&1 || cargo +"$TOOLCHAIN" install cargo-fuzz --locked
# One target dir for all fuzz crates, so shared dependencies build once.
export CARGO_TARGET_DIR="$PWD/target/fuzz"
LOGS="$PWD/target/fuzz-logs"
PROFILE=()
TIMEOUT=20
# Unoptimised code runs several times slower: a slow input is not a hang.
# The smoke run also leaves out AddressSanitizer (a quicker build and run: it checks that every
# target builds and that no corpus input panics); long runs keep it.
[ "${OMEGA_FUZZ_DEV:-0}" = 1 ] && PROFILE=(--dev --sanitizer none) && TIMEOUT=120
# Twenty-odd sanitizer builds: line tables are enough for a crash's backtrace, and neither
# full debug info nor incremental caches are worth their disk here.
export CARGO_PROFILE_DEV_DEBUG=line-tables-only CARGO_INCREMENTAL=0
mkdir -p "$LOGS"

crates=()
for manifest in */fuzz/Cargo.toml; do
  crate=${manifest%%/fuzz/Cargo.toml}
  [ -n "$ONLY" ] && [ "$crate" != "$ONLY" ] && continue
  crates+=("$crate")
done
[ ${#crates[@]} -gt 0 ] || { echo "no fuzz crate matches '$ONLY'" >&2; exit 1; }

start=$(date +%s)
for crate in "${crates[@]}"; do
  log "building $crate/fuzz"
  (cd "$crate/fuzz" && cargo +"$TOOLCHAIN" fuzz build "${PROFILE[@]}" 2>"$LOGS/build-$crate.log") \
    || { tail -n 40 "$LOGS/build-$crate.log"; exit 1; }
done
built=$(date +%s)
log "built ${#crates[@]} fuzz crates in $((built - start)) s"

date_utc=$(date -u +%Y-%m-%d)
machine="${OMEGA_FUZZ_MACHINE:-$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')}"
rows=()
failed=()
printf '%-44s %14s %10s  %s\n' "target" "executions" "exec/s" "result" >&2
for crate in "${crates[@]}"; do
  for target in $(cd "$crate/fuzz" && cargo +"$TOOLCHAIN" fuzz list); do
    [ -n "$ONLY_TARGET" ] && [ "$target" != "$ONLY_TARGET" ] && continue
    corpus="$crate/fuzz/corpus/$target"
    mkdir -p "$corpus"
    dirs=("corpus/$target")
    [ -d "$crate/fuzz/seeds/$target" ] && dirs+=("seeds/$target")
    out="$LOGS/$crate-$target.log"
    rc=0
    (cd "$crate/fuzz" && cargo +"$TOOLCHAIN" fuzz run "${PROFILE[@]}" "$target" "${dirs[@]}" -- \
      -max_total_time="$SECONDS_EACH" -print_final_stats=1 -rss_limit_mb=2048 -timeout="$TIMEOUT" \
      ${OMEGA_FUZZ_ARGS:-} >"$out" 2>&1) || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$out" | tail -n 1)
    if [ "$rc" -eq 0 ]; then
      result="0 crashes"
    else
      result="FAILED (exit $rc; $(grep -m1 -oE 'ERROR: libFuzzer: [a-z-]+|panicked at [^:]+:[0-9]+' "$out" || echo 'see log'))"
      failed+=("$crate/$target")
    fi
    printf '%-44s %14s %10s  %s\n' "$crate/$target" "${execs:-?}" "${rate:-?}" "$result" >&2
    rows+=("| $date_utc | $crate | \`$target\` | ${SECONDS_EACH} s${OMEGA_FUZZ_ARGS:+ ($OMEGA_FUZZ_ARGS)} | ${execs:-?} | ${rate:-?} | $result | $machine |")
  done
done
log "fuzzed for $(( $(date +%s) - built )) s (${SECONDS_EACH} s per target); logs in $LOGS"

if [ "$RECORD" = 1 ]; then
  printf '%s\n' "${rows[@]}" >> docs/fuzzing.md
  log "appended ${#rows[@]} rows to docs/fuzzing.md"
fi
if [ ${#failed[@]} -gt 0 ]; then
  log "crashes in: ${failed[*]} (inputs in <crate>/fuzz/artifacts/, logs in $LOGS)"
  exit 1
fi
log "no crashes"
