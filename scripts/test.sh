#!/usr/bin/env bash
# Runs Omega's whole test suite on a fresh Debian 12 machine: installs what it needs
# (scripts/setup.sh, Python test oracles), builds the boot image, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
# Each step says how long the run has taken so far, so a slow CI run shows where it went.
log() { printf '\033[1m[test]\033[0m (%d:%02d) %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*" >&2; }

bash scripts/setup.sh
# A clean checkout gains nothing from incremental compilation's caches, which cost time and
# disk (CI's disk is not large: one run ran out of it).
[ -n "${CI:-}" ] && export CARGO_INCREMENTAL=0
# shellcheck disable=SC1091
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

# Test oracles from PyPI, pinned, in a venv so the system Python stays untouched. A failed
# install fails this script (set -e); the stamp records what the venv holds, so a version
# change here reinstalls.
VENV=target/oracles-venv
SNP_MEASURE=sev-snp-measure==0.0.13
OPA=opa-golib-python-bindings==0.4.4
OPENAI=openai==3.51.0
ORACLES="$SNP_MEASURE $OPA $OPENAI"
if [ "$(cat "$VENV/.oracles" 2>/dev/null)" != "$ORACLES" ]; then
  log "installing test oracles ($ORACLES) into $VENV"
  rm -f "$VENV/.oracles"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "$SNP_MEASURE"
  # Its wheel declares Requires-Python >=3.14 but runs on Debian 12's 3.11 (the OPA tests
  # prove it: they evaluate a valid module before anything else).
  "$VENV/bin/pip" install -q --disable-pip-version-check --ignore-requires-python --no-deps "$OPA"
  "$VENV/bin/pip" install -q --disable-pip-version-check "$OPENAI"
  "$VENV/bin/python" -c 'import sevsnpmeasure, opa_bindings, openai' \
    || { echo "the test oracles do not import after installing them" >&2; exit 1; }
  echo "$ORACLES" > "$VENV/.oracles"
fi
export PATH="$PWD/$VENV/bin:$PATH"
export OMEGA_ORACLE_PYTHON="$PWD/$VENV/bin/python"

log "checking formatting and lints (cargo fmt, clippy -D warnings on the host and the bare-metal target)"
cargo fmt --all --check
# --all-targets: tests and benchmarks too (the benchmarks are only built by this check and by
# their own runs).
cargo clippy -q --workspace --all-targets -- -D warnings
# One package per run, as image-build builds them: the kernel's rustls turns on zeroize's
# `alloc` feature, which a joint run would unify into the loader (which has no allocator).
cargo clippy -q --target x86_64-unknown-none -p omega-kernel -- -D warnings
cargo clippy -q --target x86_64-unknown-none -p omega-loader -- -D warnings
cargo clippy -q --target x86_64-unknown-none -p omega-kernel --features test-hooks -- -D warnings
# The guest's inference client (rustls without std, RustCrypto soft backends) must build for
# the kernel's target, not only check: LLVM errors from SIMD code paths appear at codegen.
cargo clippy -q --target x86_64-unknown-none -p omega-inference-client -- -D warnings
cargo build -q --release --target x86_64-unknown-none -p omega-inference-client
# The SNP report checks, shared by `measurements` and the in-image coordinator, stay no_std
# (the image build compiles them for the monitor's target).
cargo clippy -q --target x86_64-unknown-none -p omega-snp-verify -- -D warnings
cargo clippy -q -p omega-sdk -p omega-example-agents --target wasm32-unknown-unknown \
  --features omega-example-agents/wasm-agents --profile agent -- -D warnings

# Steps that wait on the network or on one core run side by side: each writes its output to
# target/setup-logs/NAME.log, and `await` fails the run with that log's tail if it failed.
mkdir -p target/setup-logs
declare -A JOBS
background() { local name=$1; shift; "$@" > "target/setup-logs/$name.log" 2>&1 & JOBS[$name]=$!; }
await() {
  local name
  for name; do
    wait "${JOBS[$name]}" || { tail -n 40 "target/setup-logs/$name.log"; echo "[test] $name failed (target/setup-logs/$name.log)" >&2; exit 1; }
  done
}

log "fetching the default model (SmolLM2-135M-Instruct Q4_1), NVIDIA's sample GPU attestation evidence (nv-local-gpu-verifier 2.7.3), both pinned by SHA-256, the MCP servers the tool gateway's tests run and the A2A SDK (bench/a2a/requirements.txt), in the background"
background model bash -c 'bash scripts/fetch-model.sh > target/setup-logs/model.path'
background nv-samples bash -c 'bash scripts/fetch-nvidia-gpu-samples.sh > target/setup-logs/nv-samples.path'
background mcp-servers bash scripts/install-mcp-servers.sh
background a2a-sdk bash -c '{ [ -x target/a2a-venv/bin/python ] || python3 -m venv target/a2a-venv; } && target/a2a-venv/bin/pip install -q -r bench/a2a/requirements.txt'

# The two images build side by side (their own target directories; each build ends in LTO
# on one core); the tool itself first, so the two runs do not wait on each other.
log "building the boot images (production, and with test hooks for the QEMU fault-injection tests)"
cargo build -q --release -p image-build
background image cargo run -q --release -p image-build -- --out target/omega/omega.bin
background image-test-hooks cargo run -q --release -p image-build -- --test-hooks --out target/omega/omega-test-hooks.bin
await image image-test-hooks
export OMEGA_IMAGE="$PWD/target/omega/omega.bin"
export OMEGA_TEST_HOOKS_IMAGE="$PWD/target/omega/omega-test-hooks.bin"

# The release host tools, built once with run.sh's package selection (so run.sh reuses them):
# the QEMU inference tests use this omega-proxy instead of building llama.cpp again in debug
# with another feature set.
log "building the release host tools (run.sh's set; omega-proxy for the QEMU inference tests)"
cargo build -q --release -p image-build -p omega-host -p measurements -p omega-agents-build \
  -p omega-tool-gateway -p omega-proxy
export OMEGA_PROXY_BIN="$PWD/target/release/omega-proxy"

await model nv-samples mcp-servers a2a-sdk
OMEGA_MODEL="$(cat target/setup-logs/model.path)"
OMEGA_NV_SAMPLES_DIR="$(cat target/setup-logs/nv-samples.path)"
export OMEGA_MODEL OMEGA_NV_SAMPLES_DIR

log "running the workspace tests"
cargo test --workspace --no-fail-fast

# Every cargo-fuzz target for a few seconds (docs/fuzzing.md): catches a target that no
# longer builds and any crash its corpus or a short run finds. The long runs are
# `bash scripts/fuzz.sh [SECONDS]`.
log "fuzzing smoke run: every cargo-fuzz target for ${OMEGA_FUZZ_SMOKE_SECONDS:-2} s (scripts/fuzz.sh)"
# Built without optimisation (OMEGA_FUZZ_DEV): a fraction of the release build's time, and
# a few seconds of unoptimised fuzzing still catch a broken target or a corpus crash.
OMEGA_FUZZ_DEV=1 bash scripts/fuzz.sh "${OMEGA_FUZZ_SMOKE_SECONDS:-2}"

log "running the main job end to end (scripts/run.sh): boot with the demo bundle, verify the log"
bash scripts/run.sh --json > target/run-smoke.log 2>&1 || { tail -n 60 target/run-smoke.log; exit 1; }
grep -q '"all_verified": true' target/demo/report.json || { echo "run.sh --json: not every verifier command passed"; exit 1; }
grep -qx 'VERIFIED (UNATTESTED platform: no TEE)' target/run-smoke.log || { tail -n 60 target/run-smoke.log; echo "run.sh did not verify its log"; exit 1; }
log "disk used by target/: $(du -sh target 2>/dev/null | cut -f1) (free: $(df -h --output=avail . | tail -1 | tr -d ' '))"
log "main job: verified; the whole suite passed"
