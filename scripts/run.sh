#!/usr/bin/env bash
# Omega's main job on a fresh Debian 12 machine: installs what it needs, builds the boot
# image, boots it under QEMU with the demo bundle through the `omega` launcher, verifies
# the provenance log the monitor wrote, and prints how to verify the image itself.
#   OMEGA_QEMU_ACCEL=kvm bash scripts/run.sh     # on a real host with usable KVM
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '\n\033[1m[omega]\033[0m %s\n' "$*" >&2; }

bash scripts/setup.sh
# shellcheck disable=SC1091
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

log "building the host tools (image-build, omega, measurements, policy-compiler)"
cargo build -q --release -p image-build -p omega-host -p measurements -p policy-compiler
BIN=target/release
IMAGE=target/omega/omega.bin

log "building the boot image"
$BIN/image-build --out "$IMAGE"

DEMO=target/demo
rm -rf "$DEMO"
mkdir -p "$DEMO/bundle"
log "making the demo bundle in $DEMO/bundle"
$BIN/policy-compiler compile policy-compiler/examples/healthcare.policy --out "$DEMO/bundle/policy.bin" \
  --rego "$DEMO/policy.rego"
# The smallest valid Wasm module: the Wasm runtime that would run a real agent is not built
# yet, so the demo agent is honestly empty; the monitor hashes and logs it all the same.
printf '\000asm\001\000\000\000' > "$DEMO/bundle/triage.wasm"
cat > "$DEMO/bundle/manifest.json" <<'JSON'
{"version":1,"policy":"policy.bin","agents":[{"name":"triage","module":"triage.wasm"}]}
JSON

ACCEL_FLAG=()
[ "${OMEGA_QEMU_ACCEL:-tcg}" = kvm ] && ACCEL_FLAG=(--kvm)
log "booting the image with the bundle (omega run)"
$BIN/omega run --image "$IMAGE" --bundle "$DEMO/bundle" --log-dir "$DEMO/log" "${ACCEL_FLAG[@]}"

log "verifying the provenance log the monitor streamed to the host"
$BIN/measurements verify-log --entries "$DEMO/log/provenance.log" --checkpoint "$DEMO/log/checkpoint.note" \
  --key "$DEMO/log/log.vkey" --dump

log "how to verify this image"
cat <<EOT
  1. Rebuild from the same commit anywhere and compare:   sha256sum $IMAGE
  2. Its SEV-SNP launch digest (the platform identity), for the VM shape you deploy:
       $BIN/measurements digest --image $IMAGE --vcpus 1 --vcpu-type EPYC-v4
     Cross-check with AMD's tooling (pip install sev-snp-measure):
       sev-snp-measure --mode snp --vcpus 1 --vcpu-type EPYC-v4 --ovmf $IMAGE
  3. On an SNP host, check a report against it:
       $BIN/measurements verify-report --report report.bin --vcek vcek.der \\
         --family milan --expect-measurement <digest from step 2>
  4. The provenance log of this run (checked above):
       $BIN/measurements verify-log --entries $DEMO/log/provenance.log \\
         --checkpoint $DEMO/log/checkpoint.note --key $DEMO/log/log.vkey
  This run used plain QEMU: tee=none, so nothing here was attested by hardware, and the
  log key came over the channel rather than from attested evidence.
EOT
