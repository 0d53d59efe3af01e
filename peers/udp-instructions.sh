#!/usr/bin/env bash
# User-space instructions per UDP datagram answered, counted by callgrind:
# a figure the machine's noise does not move, for changes whose cost a rate
# cannot show (the echo rule's table and hashes).
#
#   peers/udp-instructions.sh BINARY SIZE...     e.g. target/release/upecho 64 32768
#
# SERVE_ARGS (split on spaces) is added to the server's flags, e.g.
# SERVE_ARGS="--allow-file allow.txt" to count what an allow list costs.
#
# For each size: the server (one thread, under callgrind) answers a client
# that sends N1, then, in a second run, N2 datagrams one at a time on
# loopback; (instructions(N2) - instructions(N1)) / (N2 - N1) is the cost of
# one datagram, start-up and shutdown cancelled out.
set -euo pipefail
binary=$1
shift
n1=2000
n2=12000
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

count() { # SIZE N -> total instructions
  local size=$1 n=$2 out="$work/callgrind.out"
  taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$out" \
    "$binary" serve --udp 127.0.0.1:0 ${SERVE_ARGS:-} >"$work/stdout" 2>"$work/stderr" &
  local pid=$!
  local port=""
  for _ in $(seq 600); do
    port=$(sed -n 's/^listening udp 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$work/stdout")
    [ -n "$port" ] && break
    sleep 0.1
  done
  [ -n "$port" ] || { echo "no readiness line" >&2; kill "$pid"; exit 1; }
  python3 - "$port" "$size" "$n" <<'PY'
import socket, sys
port, size, n = map(int, sys.argv[1:])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(30)
s.connect(("127.0.0.1", port))
payload = (b"echo cost " * (size // 10 + 1))[:size]
for i in range(n):
    s.send(payload)
    assert s.recv(65536) == payload.upper()
PY
  kill -TERM "$pid"
  wait "$pid"
  sed -n 's/^summary: //p' "$out"
}

for size in "$@"; do
  a=$(count "$size" "$n1")
  b=$(count "$size" "$n2")
  echo "$(basename "$binary") size=$size instructions_per_datagram=$(( (b - a) / (n2 - n1) ))"
done
