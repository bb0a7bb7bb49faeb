#!/usr/bin/env bash
# Every test tier: ABI drift check, formatting, lints, unit tests (tier 0) and the kernel
# integration tests (tier 1, root: they load the real programs). CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

echo "== ABI bindings match bpf/include/abi"
cargo xtask codegen --check
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test (tier 0 and tier 1)"
cargo test --workspace -- --test-threads=1
