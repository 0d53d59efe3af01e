#!/usr/bin/env bash
# Builds what the comparisons run: upecho's release binary, the Rust peers
# (peers/src/bin, into target/peers),
# the C reference servers (epoll_server for TCP and Unix sockets,
# udp_mmsg_server for UDP), and, given a git revision, upecho as of that
# revision as target/release/upecho-before (the peer `upecho-before`, for
# before/after comparisons in one run).
#
#   peers/build-peers.sh [REV]
#
# Called by peers/bench-peers.sh and peers/conn-memory.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ -n "${1:-}" ]; then
  tree=$(mktemp -d)
  # A failed or interrupted build must not leave a worktree registered.
  trap 'git worktree remove --force "$tree" 2>/dev/null || rm -rf "$tree"; git worktree prune' EXIT
  git worktree add --quiet --detach "$tree" "$1"
  CARGO_TARGET_DIR=target/before cargo build --release --locked --bin upecho --manifest-path "$tree/Cargo.toml"
  mkdir -p target/release
  cp target/before/release/upecho target/release/upecho-before
fi
cargo build --release --locked --bin upecho
# The Rust peers: a crate of their own (peers/Cargo.toml), built into
# target/peers so that upecho's own build and tests never compile them.
cargo build --release --locked --manifest-path peers/Cargo.toml --target-dir target/peers
cc -O2 -Wall -o target/release/epoll_server peers/c/epoll_server.c
cc -O2 -Wall -o target/release/udp_mmsg_server peers/c/udp_mmsg_server.c
