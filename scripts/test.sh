#!/usr/bin/env bash
# Runs Omega's whole test suite on a fresh Debian 12 machine: installs what it needs
# (scripts/setup.sh, Python test oracles), builds the boot image, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '\033[1m[test]\033[0m %s\n' "$*" >&2; }

bash scripts/setup.sh
# shellcheck disable=SC1091
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

# Test oracles from PyPI, in a venv so the system Python stays untouched.
VENV=target/oracles-venv
if [ ! -x "$VENV/bin/sev-snp-measure" ] || [ ! -f "$VENV/.opa-ok" ]; then
  log "installing test oracles (sev-snp-measure, OPA bindings) into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check sev-snp-measure
  "$VENV/bin/pip" install -q --disable-pip-version-check --ignore-requires-python --no-deps \
    opa-golib-python-bindings==0.4.4 && touch "$VENV/.opa-ok"
fi
export PATH="$PWD/$VENV/bin:$PATH"
export OMEGA_ORACLE_PYTHON="$PWD/$VENV/bin/python"

log "building the boot image"
cargo run -q --release -p image-build -- --out target/omega/omega.bin
export OMEGA_IMAGE="$PWD/target/omega/omega.bin"

log "running the workspace tests"
cargo test --workspace --no-fail-fast
log "checking that the benchmarks still compile"
cargo test --workspace --benches --no-run -q

log "running the main job end to end (scripts/run.sh): boot with the demo bundle, verify the log"
bash scripts/run.sh > target/run-smoke.log 2>&1 || { tail -n 60 target/run-smoke.log; exit 1; }
grep -q '^VERIFIED$' target/run-smoke.log || { tail -n 60 target/run-smoke.log; echo "run.sh did not verify its log"; exit 1; }
log "main job: verified"
