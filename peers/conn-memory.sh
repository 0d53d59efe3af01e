#!/usr/bin/env bash
# Server memory per open connection, upecho against its peers, in one run:
# builds the servers (as peers/bench-peers.sh does), then runs
# peers/conn_memory.py, which opens 10,000 connections to each server from a
# separate process, one exchange each, and reads the server's RSS with them all
# open and after they all closed, round after round. Takes about 2 minutes.
#
#   peers/conn-memory.sh [--before REV] [--connections 10000] [--rounds 2] [--size 64] [--peers a,b] [--json FILE]
#
# --before REV (first) also builds upecho as of git revision REV, the peer
# `upecho-before`. Needs python3 and cc. Traffic stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

missing=()
for tool in python3 cc; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    declare -A pkg=([python3]=python3 [cc]=gcc)
    apt-get update -qq
    for tool in "${missing[@]}"; do
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkg[$tool]}" >/dev/null
    done
  else
    echo "missing tools: ${missing[*]} (install them, or run as root to have apt-get do it)" >&2
    exit 1
  fi
fi

before=
if [ "${1:-}" = "--before" ]; then
  before=$2
  shift 2
fi
peers/build-peers.sh ${before:+"$before"}
exec python3 peers/conn_memory.py "$@"
