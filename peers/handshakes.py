#!/usr/bin/env python3
"""Full TLS handshakes per second: `openssl s_time -new` against upecho and
the TLS peers of peers.py, in one run.

Each server is pinned to CPU 0 and s_time to CPU 1; servers are interleaved
across repeats (a new order each repeat) and the median and range of
connections per second are reported, with upecho's paired ratio. s_time opens
a connection, does a full handshake (no resumption with -new), and closes, as
many times as it can in --time seconds; one connection at a time, TLS 1.3,
TLS_AES_128_GCM_SHA256 for every server (and the group OpenSSL offers first,
X25519), so they compare
the same handshake. Traffic stays on 127.0.0.1.

Usage: peers/handshakes.py [--repeats 5] [--time 4] [--peers upecho,tokio-rustls,...]
(build first: peers/build-peers.sh)
"""
import argparse
import os
import random
import re
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402

DEFAULT = ["upecho", "tokio-rustls", "stunnel+upecho", "haproxy+upecho", "socat-tls", "ncat-tls"]


def one(name, seconds):
    builders, env = peers.PEERS[name]
    endpoint = f"127.0.0.1:{peers.free_port()}"
    server = subprocess.Popen(["taskset", "-c", peers.SERVER_CPU] + builders["tls"](endpoint),
                              env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        peers.wait_listening("tls", endpoint, server)
        out = subprocess.run(["taskset", "-c", peers.CLIENT_CPU, "openssl", "s_time", "-connect", endpoint,
                              "-new", "-time", str(seconds), "-tls1_3", "-ciphersuites", "TLS_AES_128_GCM_SHA256"],
                             env={**os.environ, "OPENSSL_CONF": "/dev/null"}, capture_output=True, text=True,
                             timeout=seconds + 60).stdout
        m = re.search(r"(\d+) connections in ([\d.]+)s;", out)
        return int(m.group(1)) / float(m.group(2)) if m else None
    finally:
        os.killpg(server.pid, 9)
        server.wait()
        time.sleep(peers.SETTLE_S)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--time", type=int, default=4)
    parser.add_argument("--peers", default=",".join(DEFAULT))
    args = parser.parse_args()
    names = args.peers.split(",")
    rates = {n: [] for n in names}
    for repeat in range(args.repeats):
        order = names[:]
        random.shuffle(order)
        for name in order:
            rate = one(name, args.time)
            rates[name].append(rate)
            print(f"[{repeat + 1}/{args.repeats}] {name}: {rate}", file=sys.stderr)
    cmd = " ".join(["peers/handshakes.py"] + sys.argv[1:])
    print(f"`{cmd}`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: `openssl s_time -new -tls1_3 "
          f"-ciphersuites TLS_AES_128_GCM_SHA256`, one connection at a time, {args.time} s per run\n")
    print("| server | full handshakes/s, median (range) | upecho / this, per repeat |")
    print("| --- | ---: | ---: |")
    for name in names:
        got = [r for r in rates[name] if r]
        if not got:
            print(f"| {name} | failed | |")
            continue
        pairs = [u / r for u, r in zip(rates["upecho"], rates[name]) if u and r] if "upecho" in rates else []
        pair = (f"{statistics.median(pairs):.2f} ({min(pairs):.2f}-{max(pairs):.2f})"
                if pairs and name != "upecho" else "")
        print(f"| {name} | {statistics.median(got):,.0f} ({min(got):,.0f}-{max(got):,.0f}) | {pair} |")


if __name__ == "__main__":
    main()
