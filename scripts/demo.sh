#!/usr/bin/env bash
# The main job: build Nightjar, then run the agent on this machine while a short built-in
# workload runs, printing the workload's events as JSON lines.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo build --release --bin nightjar
exec target/release/nightjar demo "$@"
