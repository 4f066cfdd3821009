#!/usr/bin/env bash
# Builds the example agents (agents/) reproducibly to target/agents/NAME.wasm and prints
# each module's SHA-256 (the policy's `agent … hash` pin). Extra arguments go to
# agents-build (--help lists them).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run -q --release -p omega-agents-build -- "$@"
