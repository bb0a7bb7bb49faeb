#!/usr/bin/env bash
# Every test tier: ABI drift check, formatting, lints, unit tests (tier 0) and the kernel
# integration tests (tier 1, root: they load the real programs). CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

# The container-runtime tests start their own containerd (crates/k8s/tests/support); the demo
# does not need it, so only the test command installs it.
test_packages=(containerd runc busybox-static)
missing=()
for p in "${test_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "test: installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; }
fi

echo "== ABI bindings match bpf/include/abi"
cargo xtask codegen --check
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test (tier 0 and tier 1)"
# A hang fails the run with a name instead of eating CI's budget: each test's own waits are
# bounded, and this bounds the whole suite (a cold run takes about 6 minutes).
timeout --kill-after=30s 40m cargo test --workspace -- --test-threads=1
