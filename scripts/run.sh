#!/usr/bin/env bash
# Omega's main job on a fresh Debian 12 machine: installs what it needs, builds the boot
# image, boots it under QEMU, and prints what happened and how to verify it.
#   OMEGA_QEMU_ACCEL=kvm bash scripts/run.sh     # on a real host with usable KVM
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '\n\033[1m[omega]\033[0m %s\n' "$*" >&2; }

bash scripts/setup.sh
# shellcheck disable=SC1091
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

log "building the host tools and the boot image"
cargo build -q --release -p image-build -p measurements
IMAGE=target/omega/omega.bin
target/release/image-build --out "$IMAGE"

ACCEL="${OMEGA_QEMU_ACCEL:-tcg}"
QEMU=(qemu-system-x86_64 -machine microvm -accel "$ACCEL" -m 128M -bios "$IMAGE"
      -nographic -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=0x04)
log "booting: ${QEMU[*]}"
set +e
timeout 120 "${QEMU[@]}" </dev/null
status=$?
set -e
case $status in
  33) log "the image booted and exited cleanly (QEMU status 33 = Omega success)";;
  35) log "the image reported a failure (QEMU status 35)"; exit 1;;
  124) log "QEMU did not finish within 120 s"; exit 1;;
  *) log "QEMU ended with status $status (0 means a triple fault or reset)"; exit 1;;
esac

log "how to verify this image"
cat <<EOT
  1. Rebuild from the same commit anywhere and compare:   sha256sum $IMAGE
  2. Its SEV-SNP launch digest (the platform identity), for the VM shape you deploy:
       target/release/measurements digest --image $IMAGE --vcpus 1 --vcpu-type EPYC-v4
     Cross-check with AMD's tooling (pip install sev-snp-measure):
       sev-snp-measure --mode snp --vcpus 1 --vcpu-type EPYC-v4 --ovmf $IMAGE
  3. On an SNP host, check a report against it:
       target/release/measurements verify-report --report report.bin --vcek vcek.der \\
         --family milan --expect-measurement <digest from step 2>
  This run used plain QEMU: tee=none, nothing here was attested by hardware.
EOT
