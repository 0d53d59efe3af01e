#!/usr/bin/env bash
# Builds upecho as a static binary (glibc, linked in: it runs on scratch)
# and the image of the Containerfile from it.
#
#   contrib/container/build.sh [TAG]     # default tag: upecho
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
tag="${1:-upecho}"
# The target named explicitly: crt-static then applies to upecho alone, not
# to the build scripts and proc macros, which must stay dynamic. getrandom
# calls getrandom(2) itself: in a static binary its default looks the
# function up at run time, finds nothing, and falls back to /dev/urandom,
# which a scratch image does not have (the WebSocket client's key failed).
RUSTFLAGS="-C target-feature=+crt-static --cfg getrandom_backend=\"linux_getrandom\"" \
  cargo build --release --locked --target x86_64-unknown-linux-gnu --bin upecho
podman build --quiet -t "$tag" -f Containerfile .
