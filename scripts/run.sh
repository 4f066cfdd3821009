#!/usr/bin/env bash
# Omega's main job on a fresh Debian 12 machine: installs what it needs, builds the boot
# image and the example agents, starts the inference proxy (omega-proxy, the default model),
# boots the image under QEMU with the demo bundle (four agents under the demo policy,
# agents/demo) through the `omega` launcher (--proxy: the monitor's evidence-checked TLS
# session with the proxy rides the Inference stream), prints what each agent
# did and every policy decision with its rule from the verified provenance log, and how to
# verify the image itself. Each step's full output is kept in target/demo/*.out; a failing
# step shows its tail.
#   OMEGA_QEMU_ACCEL=kvm bash scripts/run.sh     # on a real host with usable KVM
#   bash scripts/run.sh --json                   # also write target/demo/report.json (and print it last)
set -euo pipefail
JSON=
for arg in "$@"; do
  case $arg in
    --json) JSON=1 ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."
log() { printf '\n\033[1m[omega]\033[0m %s\n' "$*" >&2; }
# quiet WHAT OUT CMD...: runs CMD with its output in OUT; on failure shows OUT's tail and stops.
quiet() {
  local what=$1 out=$2 status=0
  shift 2
  "$@" >"$out" 2>&1 || status=$?
  if [ "$status" -ne 0 ]; then
    tail -n 60 "$out" >&2
    printf '\n\033[1;31m[omega] FAILED:\033[0m %s (exit status %s; full output in %s)\n' \
      "$what" "$status" "$out" >&2
    exit 1
  fi
}

bash scripts/setup.sh
# shellcheck disable=SC1091
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

BIN=${CARGO_TARGET_DIR:-target}/release
IMAGE=target/omega/omega.bin
DEMO=target/demo
rm -rf "$DEMO"
mkdir -p "$DEMO"

log "building the host tools (image-build, omega, measurements, agents-build, omega-tools, omega-proxy)"
cargo build -q --release -p image-build -p omega-host -p measurements -p omega-agents-build \
  -p omega-tool-gateway -p omega-proxy

# The inference proxy: the default model on free local ports; its TLS port is what the
# launcher relays the guest's Inference stream to. Its identity (binary, model, backend,
# tee none, gpu none) is what the demo policy pins for the in-house model.
log "starting the inference proxy (omega-proxy serve, default model SmolLM2-135M-Instruct)"
quiet "fetch-model" "$DEMO/fetch-model.out" bash scripts/fetch-model.sh
MODEL=$(tail -n 1 "$DEMO/fetch-model.out")
$BIN/omega-proxy serve --model "$MODEL" --listen 127.0.0.1:0 --tls-listen 127.0.0.1:0 \
  >"$DEMO/proxy.out" 2>&1 &
PROXY_PID=$!
trap 'kill "$PROXY_PID" 2>/dev/null || true' EXIT
PROXY_TLS= PROXY_ID= PROXY_HTTP=
for _ in $(seq 1 600); do
  PROXY_HTTP=$(sed -n 's/.* on http:\/\/\([0-9.:]*\).*/\1/p' "$DEMO/proxy.out" | head -n 1)
  PROXY_TLS=$(sed -n 's/.*evidence-bound TLS \([0-9.:]*\).*/\1/p' "$DEMO/proxy.out" | head -n 1)
  PROXY_ID=$(sed -n 's/.*proxy "\(sha256:[0-9a-f]\{64\}\)".*/\1/p' "$DEMO/proxy.out" | head -n 1)
  [ -n "$PROXY_TLS" ] && [ -n "$PROXY_ID" ] && [ -n "$PROXY_HTTP" ] && break
  kill -0 "$PROXY_PID" 2>/dev/null || break
  sleep 0.2
done
if [ -z "$PROXY_TLS" ] || [ -z "$PROXY_ID" ]; then
  tail -n 30 "$DEMO/proxy.out" >&2
  printf '\n\033[1;31m[omega] FAILED:\033[0m omega-proxy did not start (full output in %s)\n' "$DEMO/proxy.out" >&2
  exit 1
fi
echo "  proxy: $BIN/omega-proxy serve --model $MODEL (evidence-bound TLS on $PROXY_TLS)"
echo "  proxy identity (tee none, gpu none): $PROXY_ID"

log "building the boot image"
quiet "image-build" "$DEMO/image-build.out" $BIN/image-build --out "$IMAGE"
grep -E '^(sha256|snp digest):' "$DEMO/image-build.out" | sed 's/^/  /'

log "building the agents (wasm32, reproducible) and the demo bundle in $DEMO/bundle"
quiet "agents-build" "$DEMO/agents-build.out" $BIN/agents-build --out target/agents --bundle "$DEMO/bundle" \
  --proxy-pin "$PROXY_ID"
(cd "$DEMO/bundle" && sha256sum ./*.wasm) | sed 's/^/  /; s/ \.\// /'
cat <<'EOT'
  The scenario (policy: agents/demo/demo.policy, pinned to these hashes):
    triage       asks the in-house model a general question (through the proxy), reads
                 phi-labelled patient records, asks the model to rate them (denied: the
                 proxy has no proven TEE), sends the ratings to the summariser (cleared for
                 phi), ends the session
    summariser   answers triage with a summary, then stops
    scheduler    looks a patient up and books a slot through the FHIR and calendar tools
    exfiltrator  reads a record and tries to get it out: to the scheduler (not cleared for
                 phi), to the public model, by e-mail
EOT

log "installing the MCP servers (pinned: the Python MCP SDK for the demo's clinic servers)"
quiet "install-mcp-servers" "$DEMO/install-mcp-servers.out" bash scripts/install-mcp-servers.sh
MCP_DIR=${OMEGA_MCP_DIR:-$HOME/.cache/omega/mcp}
mkdir -p "$DEMO/tools"
sed -e "s|@PYTHON@|$MCP_DIR/venv/bin/python|g" -e "s|@CLINIC@|$PWD/agents/demo/tools/clinic.py|g" \
  -e "s|@BUNDLE@|$PWD/$DEMO/bundle|g" -e "s|@LOGS@|$PWD/$DEMO/tools|g" \
  agents/demo/tools.toml.in > "$DEMO/tools/tools.toml"
echo "  tool gateway: $BIN/omega-tools --manifest $DEMO/tools/tools.toml (servers fhir, calendar, mail:"
echo "  agents/demo/tools/clinic.py on the official Python MCP SDK; pins from the bundle's policy)"

ACCEL_FLAG=()
[ "${OMEGA_QEMU_ACCEL:-tcg}" = kvm ] && ACCEL_FLAG=(--kvm)
log "booting the image with the bundle (omega run); the agents run in the monitor"
quiet "omega run (the boot)" "$DEMO/omega-run.out" \
  $BIN/omega run --image "$IMAGE" --bundle "$DEMO/bundle" --log-dir "$DEMO/log" "${ACCEL_FLAG[@]}" \
  --tool-gateway "$BIN/omega-tools --manifest $DEMO/tools/tools.toml" --proxy "$PROXY_TLS"
echo "  what each agent did (the monitor's console; agents cannot log once they hold labelled data):"
grep -E '^guest \| omega: (agent |agents: |tools: |inference: )' "$DEMO/omega-run.out" | sed 's/^guest | omega: /    /'
python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' \
  "http://$PROXY_HTTP/health" > "$DEMO/proxy-health.json" 2>/dev/null || echo '{}' > "$DEMO/proxy-health.json"
echo "  what the proxy served (its own /health; the launcher relayed only the evidence exchange and TLS):"
echo "    $(cat "$DEMO/proxy-health.json")"
grep -E '^guest \| omega: bundle delivered' "$DEMO/omega-run.out" | sed 's/^guest | omega: /  monitor: /'
grep -Eo 'the image exited cleanly.*' "$DEMO/omega-run.out" | sed 's/^/  launcher: /'
echo "  what reached each tool server (its own request log, written before the MCP SDK reads a line):"
for server in fhir calendar mail; do
  calls=$(grep -c '"tools/call"' "$DEMO/tools/$server.requests.log" 2>/dev/null || true)
  echo "    $server: ${calls:-0} tools/call"
done

# The verifier commands the launcher printed for this run (`omega: verify: measurements …`),
# run with this checkout's measurements: each principal's evidence, and the log through the
# key in the log's evidence (plain QEMU: the evidence is unattested, hence --allow-unattested).
measurements() { "$BIN/measurements" "$@"; }
sed -n 's/^omega: verify: //p' "$DEMO/omega-run.out" > "$DEMO/verify-commands.sh"
grep -q '^measurements verify-log ' "$DEMO/verify-commands.sh" || {
  tail -n 60 "$DEMO/omega-run.out" >&2
  printf '\n\033[1;31m[omega] FAILED:\033[0m omega run printed no verify-log command\n' >&2
  exit 1
}
VERIFY_LOG=$(grep '^measurements verify-log ' "$DEMO/verify-commands.sh")

log "every policy decision, from the provenance log the host stored (measurements verify-log --evidence … --dump)"
quiet "measurements verify-log" "$DEMO/verify-log.out" eval "$VERIFY_LOG --dump"
# --dump lines: `INDEX +MS ACTION agent=A target=T allow|deny rule=R …`; lifecycle entries
# (files hashed, agents started, names defined) are left out here, they stay in the log.
awk '
  BEGIN { verb["data"] = "read"; verb["message"] = "send"; verb["tool"] = "call"; verb["infer"] = "infer" }
  $1 ~ /^[0-9]+$/ && $3 != "lifecycle" {
    delete f
    for (i = 4; i <= NF; i++) if (split($i, kv, "=") == 2) f[kv[1]] = kv[2]
    d = $6 == "deny" ? "DENY" : $6
    if (!header++) printf "  %5s  %-12s %-6s %-22s %-6s %s\n", "entry", "agent", "action", "target", "result", "rule"
    printf "  %5s  %-12s %-6s %-22s %-6s %s\n", $1, f["agent"], ($3 in verb ? verb[$3] : $3), f["target"], d, f["rule"]
    n++; if ($6 == "deny") denied++
  }
  END { printf "  %d decisions, %d denied\n", n, denied }
' "$DEMO/verify-log.out"
cat <<'EOT'
  rules: a name is the policy rule that decided; target-pin: the policy pins the target's
  identity and it does not match: tools by the SHA-256 of their tools/list entry, which the
  monitor computes itself from the gateway's listing (the scheduler's tools match); models by
  the identity the inference proxy's evidence proved in the monitor's session with it (the
  in-house model matches; the public one is pinned to no running proxy);
  flow:LABEL: the data carries LABEL and the receiver is not cleared for it; for a model,
  the monitor clears it for no label while no proxy TEE is proven (this proxy says tee none),
  so triage's and the summariser's prompts with records are denied flow:phi and they fall
  back to keyword and extractive summaries, labelled as such.
EOT

log "how to verify this image"
cat <<EOT
  1. Rebuild from the same commit anywhere and compare:   sha256sum $IMAGE
  2. Its SEV-SNP launch digest (the platform identity), for the VM shape you deploy:
       $BIN/measurements digest --image $IMAGE --vcpus 1 --vcpu-type EPYC-v4
     Cross-check with AMD's tooling (pip install sev-snp-measure):
       sev-snp-measure --mode snp --vcpus 1 --vcpu-type EPYC-v4 --ovmf $IMAGE
  3. On an SNP host, the monitor's evidence carries its report; check each principal with
       $BIN/measurements verify-evidence --evidence DIR/evidence/platform.bin --principal platform \\
         --nonce <your nonce> --image $IMAGE --vcpus 1 --vcpu-type EPYC-v4 --vcek vcek.der --family milan
     the log with verify-log --evidence DIR/evidence/log.bin, each agent's signed A2A card
     (DIR/cards/AGENT.json) with verify-card, and the inference proxy the monitor proved with
       --principal model:NAME --expect-proxy sha256:<the identity omega-proxy logs>
     on DIR/evidence/model_NAME.bin (omega run prints all of them).
  This run used plain QEMU: tee=none. Nothing here is attested by hardware: the evidence is
  UNATTESTED (accepted only with --allow-unattested), so it shows what the monitor claims,
  not that a TEE vouches for it. The nonce of this run: $(cat "$DEMO/log/nonce.hex")
EOT

log "verifying this run: the commands omega run printed ($DEMO/verify-commands.sh)"
# Each principal's check shows its verdict; the log's shows its checks too (its verdict line
# is what scripts/test.sh looks for); the cards' checks follow.
echo "[" > "$DEMO/verifications.json"
sep=""
while IFS= read -r cmd; do
  printf '  $ %s\n' "$cmd"
  quiet "$cmd" "$DEMO/verify.out" eval "$cmd" </dev/null
  verdict=$(grep -E '^VERIFIED' "$DEMO/verify.out" | tail -n 1)
  python3 -c 'import json,sys; print(sys.argv[1] + json.dumps({"command": sys.argv[2], "verdict": sys.argv[3]}))' \
    "$sep" "$cmd" "$verdict" >> "$DEMO/verifications.json"
  sep=","
  case $cmd in
    "measurements verify-log "*) grep -E '^(PASS|VERIFIED)' "$DEMO/verify.out" | sed '/^VERIFIED/!s/^/    /' ;;
    *) grep -E '^VERIFIED' "$DEMO/verify.out" | sed 's/^/    /' ;;
  esac
done < "$DEMO/verify-commands.sh"
echo "]" >> "$DEMO/verifications.json"

if [ -n "$JSON" ]; then
  python3 scripts/lib/run_report.py "$DEMO" > "$DEMO/report.json"
  log "machine-readable report: $DEMO/report.json"
  cat "$DEMO/report.json"
fi
