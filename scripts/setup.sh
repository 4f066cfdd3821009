#!/usr/bin/env bash
# Installs everything Omega needs on a fresh Debian 12 machine: QEMU 10 from
# bookworm-backports, the Rust targets, and the Python test oracles. Idempotent.
set -euo pipefail
log() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

need_apt=()
if ! command -v qemu-system-x86_64 >/dev/null 2>&1 \
   || ! qemu-system-x86_64 --version | grep -Eq 'version (9|[1-9][0-9])\.'; then
  need_apt+=(qemu)
fi
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
dpkg -s ovmf >/dev/null 2>&1 || need_apt+=(ovmf)
# The inference proxy builds llama.cpp (cmake, clang/libclang for its bindings); the tool
# gateway's tests run the reference MCP servers (Node.js, npm).
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)
dpkg -s libclang-dev >/dev/null 2>&1 || need_apt+=(libclang-dev)
command -v clang >/dev/null 2>&1 || need_apt+=(clang)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
# The fleet (issue 17): etcd for the scheduler and its tests; protoc for the etcd-client build.
command -v etcd >/dev/null 2>&1 || need_apt+=(etcd-server)
command -v protoc >/dev/null 2>&1 || need_apt+=(protobuf-compiler)

if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing system packages: ${need_apt[*]}"
  if [ -r /etc/os-release ] && grep -q 'VERSION_CODENAME=bookworm' /etc/os-release \
     && ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo 'deb http://deb.debian.org/debian bookworm-backports main' \
      | $SUDO tee /etc/apt/sources.list.d/bookworm-backports.list >/dev/null
  fi
  $SUDO apt-get update -qq
  pkgs=(build-essential python3 python3-pip python3-venv ovmf curl ca-certificates
        cmake clang libclang-dev etcd-server protobuf-compiler)
  command -v npm >/dev/null 2>&1 || pkgs+=(nodejs npm)
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
  if grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm-backports qemu-system-x86 >/dev/null
  else
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-system-x86 >/dev/null
  fi
fi
log "$(qemu-system-x86_64 --version | head -n1)"

if ! command -v rustup >/dev/null 2>&1; then
  log "installing rustup (stable toolchain)"
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain none
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi
cd "$(dirname "$0")/.."
# rust-toolchain.toml names the toolchain and its targets; this installs them.
rustup show active-toolchain >/dev/null 2>&1 || rustup toolchain install
rustup target add x86_64-unknown-none wasm32-unknown-unknown >/dev/null \
  || { echo "setup: cannot install the Rust targets x86_64-unknown-none and wasm32-unknown-unknown" >&2; exit 1; }
log "rust: $(rustc --version)"
