#!/usr/bin/env bash
# Every side-by-side comparison Omega makes, in one run, then one table:
#   bash scripts/bench.sh              # full run (about 30-60 min on a 2-core machine)
#   QUICK=1 bash scripts/bench.sh      # fewer rounds and boots, for a check that it all works
#   ONLY="boot policy" bash scripts/bench.sh   # a subset: boot policy agents density a2a tools proxy inference log
# Each comparison times the same work on both sides from the same input (see the bench's own
# source for how). Raw outputs go to target/bench/*.out; the table to target/bench/summary.md
# and a plot of the ratios to target/bench/summary.svg.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '\033[1m[bench]\033[0m %s\n' "$*" >&2; }
want() { [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $1 "* ]]; }

bash scripts/setup.sh
# shellcheck disable=SC1091
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

OUT=target/bench
mkdir -p "$OUT"
rm -f "$OUT"/*.out
QUICK=${QUICK:-}
BOOTS=${BOOTS:-$([ -n "$QUICK" ] && echo 2 || echo 7)}
BENCH_FLAG=$([ -n "$QUICK" ] && echo --quick || echo --bench)

if want boot; then
  log "building the image and the demo bundle"
  cargo build -q --release -p image-build -p omega-agents-build
  cargo build -q --release -p qemu-tests --bin boot-compare
  target/release/image-build --out target/omega/omega.bin > "$OUT/image-build.out"
  target/release/agents-build --out target/agents --bundle "$OUT/bundle" > "$OUT/agents-build.out"

  # The Linux peer: Debian's cloud kernel and static busybox, as packaged (no rebuild).
  LINUX=$OUT/linux
  if [ ! -f "$LINUX/.done" ]; then
    log "fetching Debian's cloud kernel and busybox-static (apt-get download)"
    rm -rf "$LINUX" && mkdir -p "$LINUX/debs"
    kpkg=$(apt-cache depends linux-image-cloud-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -n 1)
    [ -n "$kpkg" ] || { echo "no linux-image-cloud-amd64 package found" >&2; exit 1; }
    (cd "$LINUX/debs" && apt-get download -q "$kpkg" busybox-static 2>/dev/null)
    for deb in "$LINUX"/debs/*.deb; do dpkg-deb -x "$deb" "$LINUX/root"; done
    echo "$kpkg" > "$LINUX/.done"
  fi
  KERNEL=$(ls "$LINUX"/root/boot/vmlinuz-*)
  log "boot to first agent ready: Omega vs $(cat "$LINUX/.done") + busybox, $BOOTS boots each"
  target/release/boot-compare --linux-kernel "$KERNEL" --busybox "$LINUX/root/bin/busybox" \
    --bundle "$OUT/bundle" --image target/omega/omega.bin --runs "$BOOTS" | tee "$OUT/boot.out"
fi

if want policy; then
  log "policy decisions from JSON request text: Omega vs regorus (interpreter and RVM)"
  cargo bench -q -p policy-compiler --bench decisions -- --bench | tee "$OUT/policy.out"
fi

if want agents; then
  log "agents: instantiation, idle memory per agent, message round trip, fairness"
  cargo bench -q -p omega-runtime --bench agents -- "$BENCH_FLAG" | tee "$OUT/agents.out"
fi

if want density; then
  log "density in the image: idle agents in a 1 GiB guest, and the host CPU of 100 idle agents"
  cargo build -q --release -p qemu-tests --bin agents-bench
  target/release/agents-bench --agents 2000 --memory 1024 | tee "$OUT/density.out"
  target/release/agents-bench --agents 100 --memory 1024 | tee -a "$OUT/density.out"
fi

if want a2a; then
  log "agent messages: two agents in one runtime vs two a2a-sdk agents over loopback HTTP"
  if [ ! -x target/a2a-venv/bin/python ] || ! target/a2a-venv/bin/python -c 'import a2a' 2>/dev/null; then
    python3 -m venv target/a2a-venv
    target/a2a-venv/bin/pip install -q --disable-pip-version-check -r bench/a2a/requirements.txt
  fi
  OMEGA_A2A_PYTHON="$PWD/target/a2a-venv/bin/python" \
    cargo bench -q -p omega-runtime --bench a2a -- "$BENCH_FLAG" | tee "$OUT/a2a.out"
fi

if want tools; then
  log "MCP tools/call: through omega-tools vs the same server directly"
  bash scripts/install-mcp-servers.sh
  CALLS=$([ -n "$QUICK" ] && echo 300 || echo 2000) \
    cargo bench -q -p omega-tool-gateway --bench latency | tee "$OUT/tools.out"
fi

if want proxy; then
  log "tokens/s: through omega-proxy vs llama.cpp called directly (same model, same settings)"
  OMEGA_MODEL="$(bash scripts/fetch-model.sh)" \
    cargo bench -q -p omega-proxy --bench proxy_vs_direct | tee "$OUT/proxy.out"
fi

if want inference; then
  log "tokens/s and TTFT through the guest (agent -> monitor -> channel -> TLS -> proxy) vs the proxy's plain port"
  cargo build -q --release -p omega-proxy -p image-build
  target/release/image-build --out target/omega/omega.bin > "$OUT/image-build-inference.out"
  OMEGA_MODEL="$(bash scripts/fetch-model.sh)" OMEGA_PROXY_BIN="$PWD/target/release/omega-proxy" \
    OMEGA_IMAGE="$PWD/target/omega/omega.bin" \
    OMEGA_BENCH_ROUNDS="$([ -n "$QUICK" ] && echo 2 || echo 7)" \
    cargo test -q --release -p qemu-tests --test inference -- --ignored --nocapture \
      bench_guest_path_against_the_plain_port 2>&1 | tee "$OUT/inference.out"
fi

if want log; then
  log "provenance log: bytes per entry"
  # The size report runs before criterion's groups; the filter matches no group.
  cargo bench -q -p omega-provenance --bench log -- no-group-matches 2>&1 | tee "$OUT/log.out"
fi

python3 bench/summarize.py "$OUT"
