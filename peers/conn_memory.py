#!/usr/bin/env python3
"""Server memory per open connection: upecho against its peers, in one run.

For each server: start it, read its RSS, then for each round open N
connections from this process (the clients live in another process than the
server, so each has its own descriptor limit), do one exchange of SIZE bytes
on every connection, read the server's RSS with all N open, close them all,
wait until the server has closed its side too (its descriptor count is back to
the start: the readiness signal, no sleep), and read RSS again.

Reports KiB of server RSS per open connection for each round, and RSS after
every round's connections have closed, against the start. Traffic stays on
127.0.0.1; every step is bounded in count and time.

With --tls, over TLS: each connection does a full handshake (Python's ssl,
no verification: memory is measured, not trust) before its exchange, against
the peers that serve TLS. With --ws, over WebSocket: each connection is
upgraded (a handshake written by hand, on path /), then its exchange is one
masked binary message and the one message that answers it, against the peers
that serve WebSocket.

Usage: peers/conn_memory.py [--connections 10000] [--rounds 2] [--size 64]
       [--peers upecho,c-epoll,...] [--tls | --ws] [--json FILE]
(run by peers/conn-memory.sh, which builds the servers first)
"""
import argparse
import json
import os
import resource
import shutil
import socket
import ssl
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402  (the server definitions and helpers of the peer harness)

# Servers that hold one process for all connections. socat and ncat fork a
# process per connection (10,000 processes), and the Python servers a thread
# each; they are measured by the rate harness, not here.
DEFAULT_PEERS = ["upecho", "upecho-before", "c-epoll", "tokio-single-64k", "tokio-naive", "tokio-uring-64k"]

PATIENCE = 120.0  # seconds for any one step; each takes under 2 s here


def rss_kib(pid):
    """Resident memory of pid and its descendants, in KiB."""
    total = 0
    for p in peers.tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def fd_count(pid):
    return sum(len(os.listdir(f"/proc/{p}/fd")) for p in peers.tree(pid) if os.path.isdir(f"/proc/{p}/fd"))


def wait_until(predicate, what):
    deadline = time.monotonic() + PATIENCE
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.01)


def client_context():
    """TLS without verification: what is measured is the server's memory."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


UPGRADE = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def recv_exactly(c, size):
    got = b""
    while len(got) < size:
        chunk = c.recv(size - len(got))
        if not chunk:
            raise RuntimeError("server closed a connection")
        got += chunk
    return got


def upgraded(c):
    """Reads a 101 response to UPGRADE, byte by byte (nothing past it)."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += recv_exactly(c, 1)
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"no upgrade: {head[:40]!r}")


def ws_frame(payload):
    """One masked, final binary frame (payloads under 64 KiB)."""
    mask = b"\x11\x22\x33\x44"
    length = bytes([0x80 | len(payload)]) if len(payload) < 126 else b"\xfe" + len(payload).to_bytes(2, "big")
    return b"\x82" + length + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def ws_payload(c):
    """The payload of one unmasked server frame."""
    first, second = recv_exactly(c, 2)
    length = second & 0x7F
    if length == 126:
        length = int.from_bytes(recv_exactly(c, 2), "big")
    elif length == 127:
        length = int.from_bytes(recv_exactly(c, 8), "big")
    return recv_exactly(c, length)


def one_round(port, pid, n, size, fds_at_start, tls, ws=False):
    """Opens n connections, one exchange each; returns (RSS open, RSS after close)."""
    message = bytes((i * 7 + 97) % 256 for i in range(size))
    expected = message.upper()
    conns = []
    ctx = client_context() if tls else None
    try:
        for _ in range(n):
            conn = socket.create_connection(("127.0.0.1", port), timeout=PATIENCE)
            conns.append(ctx.wrap_socket(conn, server_hostname="localhost") if tls else conn)
        if ws:
            for c in conns:
                c.sendall(UPGRADE)
            for c in conns:
                upgraded(c)
        for c in conns:
            c.sendall(ws_frame(message) if ws else message)
        for c in conns:
            got = ws_payload(c) if ws else recv_exactly(c, size)
            if got != expected:
                raise RuntimeError("wrong reply")
        # Every connection has been served once, so the server has accepted
        # them all: its memory now includes all n.
        wait_until(lambda: fd_count(pid) >= fds_at_start + n, "the server to hold every connection")
        open_rss = rss_kib(pid)
    finally:
        for c in conns:
            c.close()
    wait_until(lambda: fd_count(pid) <= fds_at_start, "the server to close every connection")
    # Servers may return freed memory on a timer (upecho: on its once-a-second
    # tick); read RSS after two seconds more.
    time.sleep(2)
    return open_rss, rss_kib(pid)


def measure(name, n, rounds, size, tls, ws=False):
    builders, env = peers.PEERS[name]
    argv = builders["ws" if ws else "tls" if tls else "tcp"]
    port = peers.free_port()
    proc = subprocess.Popen(argv(f"127.0.0.1:{port}"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, **env}, start_new_session=True)
    try:
        peers.wait_listening("tcp", f"127.0.0.1:{port}", proc)
        # wait_listening's probe connection must be gone before counting.
        time.sleep(0.2)
        fds, start = fd_count(proc.pid), rss_kib(proc.pid)
        result = {"server": name, "connections": n, "size": size, "tls": tls, "ws": ws, "rss_start_kib": start,
                  "rounds": []}
        for _ in range(rounds):
            open_rss, closed_rss = one_round(port, proc.pid, n, size, fds, tls, ws)
            result["rounds"].append({
                "rss_open_kib": open_rss,
                "kib_per_connection": round((open_rss - start) / n, 2),
                "rss_after_close_kib": closed_rss,
                "after_close_minus_start_mib": round((closed_rss - start) / 1024, 1),
            })
        return result
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--peers", default=",".join(DEFAULT_PEERS))
    parser.add_argument("--tls", action="store_true", help="over TLS, against the peers that serve it")
    parser.add_argument("--ws", action="store_true", help="over WebSocket, against the peers that serve it")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < args.connections + 100:
        sys.exit(f"the descriptor hard limit {hard} is below {args.connections} connections")

    names = [p for p in args.peers.split(",") if p]
    results = []
    transport = "ws" if args.ws else "tls" if args.tls else "tcp"
    for name in names:
        builders, _ = peers.PEERS[name]
        if transport not in builders:
            print(f"skipping {name}: it does not serve {transport}", file=sys.stderr)
            continue
        program = builders[transport]("127.0.0.1:1")[0]
        if not (os.path.exists(program) or shutil.which(program)):
            print(f"skipping {name}: not built", file=sys.stderr)
            continue
        results.append(measure(name, args.connections, args.rounds, args.size, args.tls, args.ws))
        print(f"measured {name}", file=sys.stderr)

    cmd = " ".join(["peers/conn_memory.py"] + sys.argv[1:])
    print(f"`{cmd}`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
          f"{args.connections} {'TLS ' if args.tls else 'WebSocket ' if args.ws else ''}connections, "
          f"one {args.size}-byte exchange each, "
          "then all held open\n")
    head = "| server | RSS at start | " + " | ".join(
        f"round {i + 1}: KiB per connection | after close" for i in range(args.rounds)) + " |"
    print(head)
    print("| --- | ---: |" + " ---: | ---: |" * args.rounds)
    for r in results:
        cells = [f"{r['rss_start_kib'] / 1024:.1f} MiB"]
        for rd in r["rounds"]:
            cells += [f"{rd['kib_per_connection']:.2f}", f"{rd['after_close_minus_start_mib']:+.1f} MiB"]
        print(f"| {r['server']} | " + " | ".join(cells) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": cmd, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
