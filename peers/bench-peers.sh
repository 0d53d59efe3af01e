#!/usr/bin/env bash
# The peer comparison in one run: builds release binaries, compiles the C
# reference servers, then runs peers/peers.py, which pins each server to CPU 0
# and `upecho bench` to CPU 1 and writes docs/BENCHMARKS.md, docs/bench/chart.svg
# and docs/bench/benchmarks-results.json. Every load runs over one transport
# (TCP, UDP, a Unix stream socket or TLS) against the peers that serve it. Takes
# about an hour (590 runs of about 6 s).
#
#   peers/bench-peers.sh [--before REV] [--repeats 5] [--duration 3] [--warmup 1] [--peers a,b] [--loads a,b]
#                          [--transports tcp,udp,unix,tls] [--dry-run]
#
# --before REV (first) also builds upecho as of git revision REV into
# target/release/upecho-before, the peer `upecho-before`: name it in --peers
# to compare a change with what came before it, paired, in the same run.
# --transports udp,unix runs only the UDP and Unix-socket loads (write them
# elsewhere with --markdown NAME.md); --dry-run prints the runs, in order.
#
# Needs: socat, ncat, stdbuf/tr (coreutils), taskset (util-linux), python3, cc,
# for TLS openssl, stunnel4, haproxy, and for WebSocket node with Debian's
# node-ws and python3-websockets.
# Installs the missing ones with apt-get when run as root. Traffic stays on
# 127.0.0.1 and Unix sockets in a temporary directory; every run is bounded by
# --duration.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

missing=()
for tool in socat ncat stdbuf taskset python3 cc openssl stunnel4 haproxy node; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
[ -d /usr/share/nodejs/ws ] || missing+=(node-ws)
/usr/bin/python3 -c 'import websockets' 2>/dev/null || missing+=(python3-websockets)
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    declare -A pkg=([socat]=socat [ncat]=ncat [stdbuf]=coreutils [taskset]=util-linux [python3]=python3 [cc]=gcc
                  [openssl]=openssl [stunnel4]=stunnel4 [haproxy]=haproxy [node]=nodejs [node-ws]=node-ws
                  [python3-websockets]=python3-websockets)
    apt-get update -qq
    for tool in "${missing[@]}"; do
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkg[$tool]}" >/dev/null
    done
  else
    echo "missing tools: ${missing[*]} (install them, or run as root to have apt-get do it)" >&2
    exit 1
  fi
fi
if [ "$(nproc)" -lt 2 ]; then
  echo "needs 2 CPUs: one for the server, one for the load generator" >&2
  exit 1
fi

before=
if [ "${1:-}" = "--before" ]; then
  before=$2
  shift 2
fi
peers/build-peers.sh ${before:+"$before"}
exec python3 peers/peers.py --out docs ${before:+--before-rev "$before"} "$@"
