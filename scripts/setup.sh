#!/usr/bin/env bash
# Installs what building and testing Nightjar needs on Debian 12, as root. Idempotent: does
# nothing when everything is already there.
set -euo pipefail

packages=(clang-19 llvm-19 libbpf-dev bpftool libclang-19-dev protobuf-compiler iproute2 iputils-ping util-linux curl)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "setup: no Rust toolchain found; install Rust >= 1.87 with rustup (https://rustup.rs)" >&2
    exit 1
  fi
fi

# Tracepoints are found through tracefs; BPF objects may be pinned in bpffs.
mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing || true
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf || true
