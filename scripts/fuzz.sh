#!/usr/bin/env bash
# Fuzzes the transforms, bench's reply verifier and the PROXY protocol header
# parser with libFuzzer (cargo fuzz), each target for a bounded time. Not part
# of `cargo test`.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 300, every target)
#
# cargo fuzz needs nightly compiler flags (sanitizers); RUSTC_BOOTSTRAP=1 lets
# the stable toolchain accept them. Installs cargo-fuzz if it is missing.
# Findings (crashing inputs) land in fuzz/artifacts/TARGET/; the corpus grows
# in fuzz/corpus/TARGET/ and is reused by the next run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=${1:-300}
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
  targets=(transform bench_verify proxy_header)
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
for target in "${targets[@]}"; do
  echo "== fuzz $target for ${seconds}s"
  cargo fuzz run "$target" -- -max_total_time="$seconds" -print_final_stats=1
done
