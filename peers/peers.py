#!/usr/bin/env python3
"""Peer comparison: upecho against other uppercase-echo servers, in one run.

Each server is pinned to CPU 0, `upecho bench` to CPU 1. Loads and servers are
interleaved across repeats; medians are reported. Server CPU comes from the
scheduler's accounting (/proc/PID/task/*/schedstat) summed over the server's
whole process tree (socat and ncat fork per connection).

Every load runs over one transport (TCP, UDP or a Unix stream socket) and is
run against the peers that serve that transport: each peer names its
transports and, for each, how to start it on an endpoint (127.0.0.1:PORT for
TCP and UDP, a socket path in a temporary directory for Unix).

Usage: peers/peers.py --out docs [--repeats 5] [--duration 3] [--warmup 1]
       [--peers a,b] [--loads a,b] [--transports tcp,udp,unix] [--dry-run]
       (run by peers/bench-peers.sh)
"""
import argparse
import json
import math
import os
import platform
import random
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(ROOT, "target", "release")
# The Rust peers (peers/src/bin), built by peers/build-peers.sh.
PEER_BIN = os.path.join(ROOT, "target", "peers", "release")
UPECHO = os.path.join(REL, "upecho")
SERVER_CPU, CLIENT_CPU = "0", "1"
TRANSPORTS = ("tcp", "udp", "unix", "tls", "ws")
TR = "stdbuf -o0 tr a-z A-Z"


def port(addr):
    return addr.rsplit(":", 1)[1]


_TLS_FILES = []


def tls_files():
    """(certificate chain, key): an ECDSA P-256 certificate for localhost and
    127.0.0.1, made once per run by openssl in a temporary directory; every
    TLS peer serves the same one."""
    if not _TLS_FILES:
        tmp = tempfile.mkdtemp(prefix="upecho-peers-tls-")
        cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-keyout", key, "-out", cert, "-days", "7", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _TLS_FILES.extend([cert, key])
    return tuple(_TLS_FILES)


def upecho_peer(binary):
    """upecho serves every transport: one listener flag per run."""
    return {"tcp": lambda a: [binary, "serve", "--tcp", a, "-q"],
            "udp": lambda a: [binary, "serve", "--udp", a, "-q"],
            "unix": lambda p: [binary, "serve", "--unix", p, "-q"],
            "tls": lambda a: [binary, "serve", "--tls", a, "-q",
                              "--tls-cert", tls_files()[0], "--tls-key", tls_files()[1]],
            "ws": lambda a: [binary, "serve", "--ws", a, "-q"]}


def tls_wrapped(write_config, front):
    """A TLS terminator in front of plain upecho (the operator's deployment):
    upecho on a free port, the terminator on the endpoint, started by one
    `sh` so that both are in the server's process tree (pinned, counted,
    stopped together). `write_config(path, endpoint, backend)` writes the
    terminator's configuration; `front(path)` is its argv."""
    def build(endpoint):
        backend = f"127.0.0.1:{free_port()}"
        path = os.path.join(tempfile.mkdtemp(prefix="upecho-peers-front-"), "front.conf")
        write_config(path, endpoint, backend)
        command = " ".join(front(path))
        return ["sh", "-c", f"{UPECHO} serve --tcp {backend} -q & exec {command}"]
    return build


def stunnel_config(path, endpoint, backend):
    cert, key = tls_files()
    with open(path, "w") as f:
        f.write(f"foreground = yes\npid =\ndebug = warning\n[echo]\naccept = {endpoint}\n"
                f"connect = {backend}\ncert = {cert}\nkey = {key}\n")


def haproxy_config(path, endpoint, backend):
    cert, key = tls_files()
    combined = path + ".pem"
    with open(combined, "w") as f:
        f.write(open(cert).read() + open(key).read())
    with open(path, "w") as f:
        f.write(f"global\n  maxconn 9000\ndefaults\n  mode tcp\n  timeout connect 5s\n"
                f"  timeout client 60s\n  timeout server 60s\nfrontend tls\n"
                f"  bind {endpoint} ssl crt {combined}\n  default_backend echo\n"
                f"backend echo\n  server upecho {backend}\n")


# name -> ({transport: argv builder}, extra environment). A builder takes the
# endpoint: "127.0.0.1:PORT" for tcp, udp and tls, a socket path for unix.
# TLS peers serve tls_files()'s certificate.
PEERS = {
    "upecho": (upecho_peer(UPECHO), {}),
    # upecho with its metrics endpoint on, for the cost of counting (paired
    # against upecho in one run; not compared by default).
    "upecho-metrics": ({t: (lambda b: lambda a: b(a) + ["--metrics", "127.0.0.1:0"])(build)
                        for t, build in upecho_peer(UPECHO).items()}, {}),
    # upecho with an allow list of 1,000 networks (peers/allow-1000.txt), for
    # the cost of access control (paired against upecho; not by default).
    "upecho-allow1000": ({t: (lambda b: lambda a: b(a) + ["--allow-file",
                                                         os.path.join(ROOT, "peers", "allow-1000.txt")])(build)
                          for t, build in upecho_peer(UPECHO).items()}, {}),
    # An earlier build of upecho, for before/after comparisons in one run:
    # peers/bench-peers.sh --before REV builds it.
    "upecho-before": (upecho_peer(os.path.join(REL, "upecho-before")), {}),
    "c-epoll": ({"tcp": lambda a: [os.path.join(REL, "epoll_server"), port(a)]}, {}),
    "tokio-single-64k": ({"tcp": lambda a: [os.path.join(PEER_BIN, "single_thread"), a]}, {}),
    "tokio-uring-64k": ({"tcp": lambda a: [os.path.join(PEER_BIN, "uring"), a]}, {}),
    "tokio-naive": ({"tcp": lambda a: [os.path.join(PEER_BIN, "naive_tokio"), a]}, {}),
    "socat": ({"tcp": lambda a: ["socat", f"TCP-LISTEN:{port(a)},bind=127.0.0.1,reuseaddr,fork,backlog=1024",
                                 f"EXEC:{TR}"]}, {}),
    "ncat": ({"tcp": lambda a: ["ncat", "-l", "127.0.0.1", port(a), "--keep-open", "--max-conns", "10000",
                                "--exec", "/usr/bin/stdbuf -o0 /usr/bin/tr a-z A-Z"]}, {}),
    "python-threading": ({"tcp": lambda a: [sys.executable, os.path.join(ROOT, "peers", "python", "threading_server.py"),
                                            port(a)]}, {}),
    "tutorial": ({"tcp": lambda a: [sys.executable, os.path.join(ROOT, "peers", "python", "tutorial_server.py"),
                                    port(a)]}, {}),
    # UDP peers.
    "c-mmsg": ({"udp": lambda a: [os.path.join(REL, "udp_mmsg_server"), port(a)]}, {}),
    "tokio-udp": ({"udp": lambda a: [os.path.join(PEER_BIN, "udp_tokio"), a]}, {}),
    # socat forks a process (and `tr`) per datagram, which answers its sender.
    "socat-udp": ({"udp": lambda a: ["socat", f"UDP-RECVFROM:{port(a)},bind=127.0.0.1,reuseaddr,fork",
                                     f"EXEC:{TR}"]}, {}),
    # socat's per-client mode, not compared by default: it mixes up the
    # datagrams of clients it has no process for yet (UDP_NOTE).
    "socat-udp-listen": ({"udp": lambda a: ["socat", f"UDP-LISTEN:{port(a)},bind=127.0.0.1,reuseaddr,fork",
                                            f"EXEC:{TR}"]}, {}),
    # Unix stream peers. socat's default backlog (5) refuses most of 50
    # simultaneous connects on a Unix socket: 1024, as for TCP.
    "c-epoll-unix": ({"unix": lambda p: [os.path.join(REL, "epoll_server"), p]}, {}),
    # TLS peers.
    "tokio-rustls": ({"tls": lambda a: [os.path.join(PEER_BIN, "tls_tokio"), a, *tls_files()]}, {}),
    "stunnel+upecho": ({"tls": tls_wrapped(stunnel_config, lambda conf: ["stunnel4", conf])}, {}),
    "haproxy+upecho": ({"tls": tls_wrapped(haproxy_config, lambda conf: ["haproxy", "-db", "-f", conf])}, {}),
    "socat-tls": ({"tls": lambda a: ["socat", f"OPENSSL-LISTEN:{port(a)},bind=127.0.0.1,reuseaddr,fork,"
                                     f"backlog=1024,cert={tls_files()[0]},key={tls_files()[1]},verify=0",
                                     f"EXEC:{TR}"]}, {}),
    "ncat-tls": ({"tls": lambda a: ["ncat", "-l", "127.0.0.1", port(a), "--ssl", "--ssl-cert", tls_files()[0],
                                    "--ssl-key", tls_files()[1], "--keep-open", "--max-conns", "10000",
                                    "--exec", "/usr/bin/stdbuf -o0 /usr/bin/tr a-z A-Z"]}, {}),
    # WebSocket peers: each answers a message with one message of its type,
    # upper-cased (ASCII a-z).
    "ws-tungstenite": ({"ws": lambda a: [os.path.join(PEER_BIN, "ws_tungstenite"), a]}, {}),
    "ws-fastwebsockets": ({"ws": lambda a: [os.path.join(PEER_BIN, "ws_fastwebsockets"), a]}, {}),
    "node-ws": ({"ws": lambda a: ["node", os.path.join(ROOT, "peers", "node", "ws_server.js"), a]},
                {"NODE_PATH": "/usr/share/nodejs"}),
    # Debian's Python, which has Debian's python3-websockets.
    "python-websockets": ({"ws": lambda a: ["/usr/bin/python3", os.path.join(ROOT, "peers", "python",
                                                                            "websockets_server.py"), port(a)]}, {}),
    "tokio-unix": ({"unix": lambda p: [os.path.join(PEER_BIN, "unix_tokio"), p]}, {}),
    "socat-unix": ({"unix": lambda p: ["socat", f"UNIX-LISTEN:{p},fork,backlog=1024", f"EXEC:{TR}"]}, {}),
}

# Compared when --peers is not given: every peer but the earlier build and
# socat's UDP-LISTEN mode.
DEFAULT_PEERS = [p for p in PEERS if p not in ("upecho-before", "upecho-metrics", "upecho-allow1000",
                                                "socat-udp-listen")]

# The flags of a load run by `openssl s_time -new` instead of `upecho bench`.
S_TIME = ["(openssl s_time -new -tls1_3 -ciphersuites TLS_AES_128_GCM_SHA256)"]

# name -> (transport, bench flags). The endpoint comes first: ADDR for tcp and
# udp, --unix PATH for unix.
LOADS = {
    "64B pingpong x1": ("tcp", ["--mode", "pingpong", "--size", "64", "--connections", "1"]),
    "64B pingpong x50": ("tcp", ["--mode", "pingpong", "--size", "64", "--connections", "50"]),
    "64B pingpong x500": ("tcp", ["--mode", "pingpong", "--size", "64", "--connections", "500"]),
    "4KiB pingpong x50": ("tcp", ["--mode", "pingpong", "--size", "4096", "--connections", "50"]),
    "64KiB stream x1": ("tcp", ["--mode", "stream", "--size", "65536", "--connections", "1"]),
    "64KiB stream x16": ("tcp", ["--mode", "stream", "--size", "65536", "--connections", "16"]),
    "udp 64B pingpong x50": ("udp", ["--udp", "--size", "64", "--connections", "50"]),
    "udp 64B pingpong x500": ("udp", ["--udp", "--size", "64", "--connections", "500"]),
    "unix 64B pingpong x50": ("unix", ["--size", "64", "--connections", "50"]),
    "unix 64KiB stream x16": ("unix", ["--mode", "stream", "--size", "65536", "--connections", "16"]),
    # Over TLS, full handshakes in bench's set-up (not timed); --insecure: the
    # peers' certificate is self-signed (bench still checks the handshake).
    "tls 64B pingpong x50": ("tls", ["--tls", "--insecure", "--size", "64", "--connections", "50"]),
    "tls 64KiB stream x1": ("tls", ["--tls", "--insecure", "--mode", "stream", "--size", "65536",
                                    "--connections", "1"]),
    "tls 64KiB stream x16": ("tls", ["--tls", "--insecure", "--mode", "stream", "--size", "65536",
                                     "--connections", "16"]),
    # Connection churn: connect, one verified 64-byte exchange, close, again
    # (with --tls a full handshake each time). The rate is cycles per second.
    "connect x1": ("tcp", ["--mode", "connect", "--size", "64", "--connections", "1"]),
    "connect x8": ("tcp", ["--mode", "connect", "--size", "64", "--connections", "8"]),
    "tls connect x1": ("tls", ["--tls", "--insecure", "--mode", "connect", "--size", "64",
                               "--connections", "1"]),
    # The same handshakes counted by another generator: `openssl s_time -new`
    # (full handshakes one at a time, TLS 1.3, TLS_AES_128_GCM_SHA256, no
    # data), for the whole warm-up plus window.
    "tls handshakes (s_time)": ("tls", S_TIME),
    # WebSocket: each write one binary message, every reply checked.
    "ws 64B pingpong x50": ("ws", ["--size", "64", "--connections", "50"]),
    "ws 64KiB stream x16": ("ws", ["--mode", "stream", "--size", "65536", "--connections", "16"]),
}


def transport(load):
    return LOADS[load][0]


def connects(load):
    """A load whose rate is connections (each with its exchange) per second."""
    flags = LOADS[load][1]
    return flags is S_TIME or "connect" in flags


def serves(peer, load):
    return transport(load) in PEERS[peer][0]


def load_peers(peers, load):
    """The peers of `peers` that serve `load`'s transport, in their order."""
    return [p for p in peers if serves(p, load)]


def bench_target(transport, endpoint):
    """The arguments of `upecho bench` that name the server."""
    if transport == "ws":
        return ["--ws", f"ws://{endpoint}/"]
    return ["--unix", endpoint] if transport == "unix" else [endpoint]


def free_port(kind=socket.SOCK_STREAM):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PROBE = b"upecho-peers readiness probe"


def wait_listening(transport, endpoint, proc, limit=10.0):
    """Returns once the server answers on `endpoint`: a TCP or Unix connect is
    accepted, or (UDP) a probe datagram comes back upper-cased."""
    deadline = time.monotonic() + limit
    probe = None
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            try:
                if transport in ("tcp", "tls", "ws"):
                    with socket.create_connection(("127.0.0.1", int(port(endpoint))), timeout=1):
                        return
                elif transport == "unix":
                    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                        s.settimeout(1)
                        s.connect(endpoint)
                        return
                else:
                    # One socket for every try: a late reply to an earlier
                    # probe counts too.
                    target = ("127.0.0.1", int(port(endpoint)))
                    if probe is None:
                        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                        probe.bind(("127.0.0.1", 0))
                    probe.sendto(PROBE, target)
                    until = min(deadline, time.monotonic() + 0.2)
                    while (left := until - time.monotonic()) > 0:
                        if not select.select([probe], [], [], left)[0]:
                            break
                        reply, source = probe.recvfrom(65536)
                        if reply == PROBE.upper() and source == target:
                            return
                    continue
            except OSError:
                pass
            time.sleep(0.02)
    finally:
        if probe is not None:
            probe.close()
    raise RuntimeError("server did not listen in time")


def tree(pid):
    """pid and all its descendants."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


TICK_NS = 1e9 / os.sysconf("SC_CLK_TCK")


def cpu_ns(pid):
    """CPU time of every thread of pid's process tree, in nanoseconds, plus
    what the tree's processes have reaped: the time of children that exited
    and were waited for (cutime and cstime, in clock ticks). socat's UDP peer
    forks a process per datagram; without the second part their time would
    vanish with them."""
    total = 0
    for p in tree(pid):
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/schedstat") as f:
                    total += int(f.read().split()[0])
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += round((int(fields[13]) + int(fields[14])) * TICK_NS)
        except (OSError, ValueError, IndexError):
            pass
    return total


def group_alive(pgid):
    """True if a live (non-zombie) process of process group pgid remains."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[2]) == pgid and fields[0] != "Z":
                    return True
            except (OSError, ValueError, IndexError):
                pass
    return False


# After a server stops, the next measurement waits until its whole process
# group is gone and then this long more: tearing down hundreds of socat or ncat
# processes otherwise eats into the next server's run.
SETTLE_S = 1.0


def endpoint_for(transport, tmp):
    """A fresh endpoint: a free port, or a socket path in the directory tmp."""
    if transport == "unix":
        return os.path.join(tmp, "echo.sock")
    kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
    return f"127.0.0.1:{free_port(kind)}"


def commands(peer, load, endpoint, args):
    """The server's and the load generator's argv for one run."""
    builders, _ = PEERS[peer]
    kind, flags = LOADS[load]
    server = ["taskset", "-c", SERVER_CPU] + builders[kind](endpoint)
    if flags is S_TIME:
        seconds = max(1, round(args.warmup + args.duration))
        return server, ["taskset", "-c", CLIENT_CPU, "openssl", "s_time", "-connect", endpoint, "-new",
                        "-time", str(seconds), "-tls1_3", "-ciphersuites", "TLS_AES_128_GCM_SHA256"]
    bench = (["taskset", "-c", CLIENT_CPU, UPECHO, "bench"] + bench_target(kind, endpoint) +
             ["--json", "--seed", "1", "--duration", str(args.duration), "--warmup", str(args.warmup)] + flags)
    return server, bench


def s_time_report(out):
    """What `openssl s_time` printed, as the fields of a bench report: full
    handshakes (connections) per second, each one a request."""
    m = re.search(r"(\d+) connections in ([\d.]+)s;", out)
    if not m:
        return {"error": "no rate in openssl s_time's output"}
    count, seconds = int(m.group(1)), float(m.group(2))
    return {"mode": "connect", "requests": count, "requests_per_s": count / seconds if seconds else None,
            "errors": 0}


def run_one(peer, load, args):
    _, env = PEERS[peer]
    kind = transport(load)
    # Unix sockets live in a directory of their own, removed after the run.
    tmp = tempfile.mkdtemp(prefix="upecho-peers-") if kind == "unix" else None
    endpoint = endpoint_for(kind, tmp)
    server_cmd, cmd = commands(peer, load, endpoint, args)
    server = subprocess.Popen(server_cmd, env={**os.environ, **env},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_listening(kind, endpoint, server)
        start = time.monotonic()
        bench = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env={**os.environ, "OPENSSL_CONF": "/dev/null"} if cmd[3] == "openssl" else None)
        time.sleep(max(0.0, start + args.warmup - time.monotonic()))
        cpu0 = cpu_ns(server.pid)
        time.sleep(max(0.0, start + args.warmup + args.duration - time.monotonic()))
        cpu1 = cpu_ns(server.pid)
        out, err = bench.communicate(timeout=args.duration + args.warmup + 60)
        if cmd[3] == "openssl":
            report = s_time_report(out)
            # s_time ran through the warm-up too; the server's CPU is the
            # window's: the requests of the window, at the run's rate.
            if report.get("requests_per_s"):
                report["requests"] = report["requests_per_s"] * args.duration
        else:
            report = json.loads(out) if out.strip() else {"error": err.strip()}
        report["bench_exit"] = bench.returncode
        report["bench_stderr"] = err.strip()
        # Threads that exit during the window take their CPU time with them; a
        # negative difference says so, and is reported as unknown.
        report["server_cpu_s"] = (cpu1 - cpu0) / 1e9 if cpu1 >= cpu0 else None
        report["peer"], report["load"] = peer, load
        report["command"] = " ".join(cmd)
        report["server_command"] = " ".join(server_cmd)
        return report
    finally:
        try:
            os.killpg(server.pid, signal.SIGKILL)  # the group we started, by its leader's pid
        except ProcessLookupError:
            pass
        server.wait()
        deadline = time.monotonic() + 30
        while group_alive(server.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        time.sleep(SETTLE_S)


def median(rows, key):
    values = [r.get(key) for r in rows if isinstance(r.get(key), (int, float))]
    return statistics.median(values) if values else None


def cpu_per_unit(r):
    """Server CPU seconds per round trip (pingpong) or per byte (stream)."""
    unit = r.get("bytes") if r.get("mode") == "stream" else r.get("requests")
    return r["server_cpu_s"] / unit if r.get("server_cpu_s") is not None and unit else None


def paired(results, load, peer, key):
    """upecho's figure over `peer`'s, per repeat: the two ran back to back, so a
    shift of the whole machine between repeats moves both and cancels out. `key`
    is a field of the results or a function of one."""
    value = key if callable(key) else (lambda r: r.get(key))
    by_repeat = {}
    for r in results:
        v = value(r) if r["load"] == load and r["peer"] in ("upecho", peer) else None
        if isinstance(v, (int, float)):
            by_repeat.setdefault(r["repeat"], {})[r["peer"]] = v
    ratios = [v["upecho"] / v[peer] for v in by_repeat.values() if v.get(peer) and "upecho" in v]
    return sorted(ratios)


def fmt_paired(ratios):
    if not ratios:
        return "-"
    return f"{statistics.median(ratios):.2f}x ({ratios[0]:.2f}-{ratios[-1]:.2f})"


def summarise(results, peers, loads):
    table = {}
    for load in loads:
        for peer in load_peers(peers, load):
            rows = [r for r in results if r["peer"] == peer and r["load"] == load]
            timed = [r for r in rows if r.get("server_cpu_s") is not None]
            per_req = [r["server_cpu_s"] * 1e6 / r["requests"] for r in timed if r.get("requests")]
            per_mb = [r["server_cpu_s"] * 1e3 / (r["bytes"] / 1e6) for r in timed if r.get("bytes")]
            table[(load, peer)] = {
                "requests_per_s": median(rows, "requests_per_s"),
                "mb_per_s": median(rows, "mb_per_s"),
                "p50_us": median(rows, "p50_us"),
                "p99_us": median(rows, "p99_us"),
                "p999_us": median(rows, "p999_us"),
                "errors": sum(r.get("errors", 0) or 0 for r in rows),
                "lost": median(rows, "lost"),
                "starved": median(rows, "starved"),
                "client_cpu": median(rows, "client_cpu_percent"),
                "server_cpu_us_per_req": statistics.median(per_req) if per_req else None,
                "server_cpu_ms_per_mb": statistics.median(per_mb) if per_mb else None,
                "runs": len(rows),
            }
    return table


def fmt(x, digits=0):
    return "-" if x is None else f"{x:,.{digits}f}"


def wrap(text, width):
    """text's words in lines of at most about `width` pixels of 11 px sans-serif."""
    lines = []
    for word in text.split():
        if lines and (len(lines[-1]) + 1 + len(word)) * 6.2 <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def write_chart(path, table, peers, loads):
    """Grouped bars: each peer's throughput relative to the best peer, per load
    (only the peers that serve the load's transport)."""
    colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
              "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
              "#f7b6d2", "#dbdb8d"]
    shown = [p for p in peers if any(serves(p, load) for load in loads)]
    width, left, top, bottom = 960, 60, 40, 110
    group_w = (width - left - 20) / len(loads)
    # Room for load names over two lines and three rows of legend; more if needed.
    names_extra = 13 * max(0, max(len(wrap(load, group_w - 12)) for load in loads) - 2)
    height = 420 + names_extra + 18 * max(0, math.ceil(len(shown) / 5) - 3)
    plot_h = 420 - top - bottom
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="11">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<text x="{left}" y="20" font-size="14">Throughput relative to the best peer per load '
             f'(requests/s for pingpong, MB/s for stream; median of repeats)</text>']
    for frac in (0, 0.25, 0.5, 0.75, 1.0):
        y = top + plot_h * (1 - frac)
        parts.append(f'<line x1="{left}" x2="{width - 20}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{frac:.2f}</text>')
    for gi, load in enumerate(loads):
        key = "mb_per_s" if "stream" in load else "requests_per_s"
        here = load_peers(peers, load)
        best = max([(table[(load, p)][key] or 0) for p in here] + [0]) or 1
        bar_w = group_w * 0.8 / max(1, len(here))
        for pi, peer in enumerate(here):
            value = (table[(load, peer)][key] or 0) / best
            x = left + gi * group_w + group_w * 0.1 + pi * bar_w
            h = plot_h * value
            color = colors[peers.index(peer) % len(colors)]
            parts.append(f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w - 1:.1f}" '
                         f'height="{h:.1f}" fill="{color}"><title>{peer}: {value:.2f}</title></rect>')
        for li, line in enumerate(wrap(load, group_w - 12)):
            parts.append(f'<text x="{left + gi * group_w + group_w / 2:.1f}" y="{top + plot_h + 16 + 13 * li}" '
                         f'text-anchor="middle">{line}</text>')
    for pi, peer in enumerate(shown):
        x = left + (pi % 5) * 170
        y = 420 - 60 + names_extra + (pi // 5) * 18
        color = colors[peers.index(peer) % len(colors)]
        parts.append(f'<rect x="{x}" y="{y - 9}" width="10" height="10" fill="{color}"/>')
        parts.append(f'<text x="{x + 14}" y="{y}">{peer}</text>')
    parts.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(parts) + "\n")


def machine():
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} CPUs, Linux {platform.release()}"


def outputs(stem):
    """The results file and chart of a report named STEM.md, relative to docs/."""
    return f"bench/{stem}-results.json", "bench/chart.svg" if stem == "benchmarks" else f"bench/{stem}.svg"


RUN_HEADERS = {
    "tcp": "Each run, with PORT a free port:",
    "udp": "Each UDP run, with PORT a free UDP port:",
    "unix": "Each Unix-socket run, with PATH a socket path in a new temporary directory (removed after the run):",
    "tls": "Each TLS run, with PORT a free port and CERT/KEY the run's certificate (the front ends' "
           "configuration files are written to a temporary directory; upecho behind them on a free port):",
    "ws": "Each WebSocket run, with PORT a free port:",
}

TCP_NOTE = (
    "- The peers: `tutorial` is the tutorial's server (one client at a time, so all "
    "connections but one starve; its `recv(1024)`/`send` stalls about 44 ms per 4 KiB round "
    "trip on Nagle and delayed ACK); `python-threading` the same logic on "
    "`ThreadingTCPServer`; `socat` and `ncat` run `stdbuf -o0 tr a-z A-Z` per connection "
    "(ncat's errors: when the client half-closes, ncat closes the connection before `tr` has returned everything still owed); "
    "`tokio-naive` is `peers/src/bin/naive_tokio.rs` (multi-thread, 8 KiB); `tokio-single-64k` "
    "is `peers/src/bin/single_thread.rs`; `tokio-uring-64k` is `peers/src/bin/uring.rs` (io_uring); "
    "`c-epoll` is `peers/c/epoll_server.c` (level-triggered, 64 KiB, `cc -O2`).")

UDP_NOTE = (
    "- UDP: `upecho bench --udp` sends each connection's datagrams from a socket of its own and counts "
    "a reply that has not come within 1 s as `lost` (median of the repeats; `-` when the load generator "
    "did not report it), not as an error. The UDP peers: `c-mmsg` is `peers/c/udp_mmsg_server.c` "
    "(one blocking socket, up to 64 datagrams per `recvmmsg` and per `sendmmsg`, `SO_RCVBUF` 4 MiB as "
    "upecho asks for, `cc -O2`); `tokio-udp` is `peers/src/bin/udp_tokio.rs` (current-thread "
    "`recv_from`/`send_to`, 64 KiB); `socat-udp` is `socat UDP-RECVFROM:PORT,fork`, which forks a "
    "process running `stdbuf -o0 tr a-z A-Z` per datagram (their CPU time is counted when socat "
    "reaps them). socat's per-client mode, `UDP-LISTEN:PORT,fork` (the peer `socat-udp-listen`, not "
    "run by default), does not serve concurrent clients: it connects its socket to the first sender, "
    "forks a process for it and only then binds a new socket, so the datagrams other clients had "
    "queued go to that process and come back to the first sender merged into one wrong reply, and "
    "theirs are lost; as a client sends again only after 1 s without a reply, only a few new clients "
    "get a process of their own per second (15 of 50 in 5 s when tried), with wrong replies all along.")

UNIX_NOTE = (
    "- Unix stream sockets: the server listens on a path in a temporary directory of its own. "
    "`tokio-unix` is `peers/src/bin/unix_tokio.rs` (current-thread, a task and 64 KiB per connection, as "
    "`tokio-single-64k`); `c-epoll-unix` is `peers/c/epoll_server.c` given the socket's path; "
    "`socat-unix` is `socat UNIX-LISTEN:PATH,fork,backlog=1024` running `stdbuf -o0 tr a-z A-Z` per "
    "connection (socat's default backlog of 5 refuses simultaneous connects).")

WS_NOTE = (
    "- WebSocket: `upecho bench --ws ws://ADDR/` upgrades every connection in its set-up, sends each "
    "write as one binary message and checks the reply payloads byte by byte. `ws-tungstenite` is "
    "`peers/src/bin/ws_tungstenite.rs` (tokio-tungstenite's echo example, upper-casing; its defaults: 128 KiB "
    "read and write buffers); `ws-fastwebsockets` is `peers/src/bin/ws_fastwebsockets.rs` (fastwebsockets' "
    "echo example on hyper's upgrade, fragments collected); `node-ws` is `peers/node/ws_server.js` (Debian's "
    "`node-ws`, permessage-deflate off); `python-websockets` is `peers/python/websockets_server.py` (Debian's "
    "`python3-websockets`, compression off).")

TLS_NOTE = (
    "- TLS: every peer serves one ECDSA P-256 certificate made by openssl for the run; bench does the full "
    "handshakes in its set-up (not timed) and verifies every reply byte as over TCP, doing the same crypto "
    "as the server on the other core, so it is often the limit (`*`). `tokio-rustls` is "
    "`peers/src/bin/tls_tokio.rs` (multi-thread, a task and 64 KiB per connection, rustls' defaults); "
    "`stunnel+upecho` and `haproxy+upecho` terminate TLS in front of plain upecho (both processes counted, "
    "both on the server's core; stunnel with `debug = warning`, HAProxy `mode tcp`, one thread); "
    "`socat-tls` is `socat OPENSSL-LISTEN:PORT,fork,verify=0` and `ncat-tls` `ncat --ssl -k`, each "
    "running `stdbuf -o0 tr a-z A-Z` per connection.")


def later_runs(results, started):
    """How the report says that some loads were run apart, later (results
    merged from several runs of the same settings): '' when all are one run."""
    runs = {}
    for r in results:
        runs.setdefault(r.get("started", started), [])
        if r["load"] not in runs[r.get("started", started)]:
            runs[r.get("started", started)].append(r["load"])
    others = [(when, loads) for when, loads in runs.items() if when != started]
    return "".join(f"; the loads {', '.join(f'`{load}`' for load in loads)} in a run of their own, {when}"
                   for when, loads in sorted(others))


def write_markdown(path, results, table, peers, loads, args, started):
    stem = os.path.splitext(os.path.basename(path))[0].lower()
    data, chart = outputs(stem)
    title = "# Benchmarks" if stem == "benchmarks" else f"# Benchmarks: {stem}"
    lines = [title, "",
             "Generated by `peers/bench-peers.sh` (do not edit by hand); raw data in "
             f"`docs/{data}`, chart in `docs/{chart}`. How the "
             "architecture was chosen, and what these numbers can and cannot resolve: "
             "[ARCHITECTURE.md](ARCHITECTURE.md).", "",
             f"- Machine: {machine()}",
             f"- Run: {started}{later_runs(results, started)}, {args.repeats} interleaved repeats, each load "
             f"{args.warmup} s warm-up + {args.duration} s measured; medians shown. "
             f"Order of servers within each load and repeat: shuffled, "
             + (f"seed {results[0]['order_seed']} (`--order-seed`)." if results and "order_seed" in results[0]
                else "seed 1 (fixed: the same order in every run of this harness version)."),
             f"- Server pinned to CPU {SERVER_CPU} (`taskset -c {SERVER_CPU}`), load generator "
             f"`upecho bench` pinned to CPU {CLIENT_CPU}.",
             "- Server CPU is from `/proc/PID/task/*/schedstat` over the server's whole process tree "
             "during the measured window, plus the time of the tree's processes that exited and were "
             "reaped within it (`cutime`/`cstime` of `/proc/PID/stat`).",
             "- `*` after a rate: the load generator used >= 90% of its core, so the rate is the "
             "generator's limit, not the server's. On loopback each side also pays for the other's "
             "TCP receive path, so there the server's CPU per request is about 1/rate too; "
             "ARCHITECTURE.md compares user-space instructions per round trip instead.",
             "- Differences under 10% are noise on this machine; the same binary has moved by up to "
             "25% between runs, and every server's rate shifts together when the machine does.",
             "- `upecho / this, per repeat`: upecho's figure divided by this server's in the same "
             "repeat (the two ran back to back), median and range over the repeats. Pairing cancels "
             "the shifts of the whole machine that the medians of each column keep."]
    kinds = [k for k in TRANSPORTS if any(transport(load) == k for load in loads)]
    if "tcp" in kinds:
        lines.append(TCP_NOTE)
    if "udp" in kinds:
        lines.append(UDP_NOTE)
    if "unix" in kinds:
        lines.append(UNIX_NOTE)
    if "tls" in kinds:
        lines.append(TLS_NOTE)
    if "ws" in kinds:
        lines.append(WS_NOTE)
    skipped = getattr(args, "skipped", {})
    if skipped:
        lines.append("- Not run: " + "; ".join(f"`{p}` ({why})" for p, why in skipped.items()) + ".")
    lines += ["",
             f"![throughput relative to the best peer]({chart})", "",
             "## Summary", "",
             "| load | upecho | best other | its figure | ratio of medians | upecho / it, per repeat | "
             "server CPU per unit, upecho / it, per repeat |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: |"]
    for load in loads:
        key = "mb_per_s" if "stream" in load else "requests_per_s"
        unit = " MB/s" if "stream" in load else (" conn/s" if connects(load) else " rt/s")
        others = [p for p in load_peers(peers, load) if p != "upecho" and table[(load, p)][key] is not None]
        mine = table.get((load, "upecho"), {}).get(key)
        if not others or mine is None:
            continue
        best = max(others, key=lambda p: table[(load, p)][key])
        theirs = table[(load, best)][key]
        lines.append(f"| {load} | {fmt(mine)}{unit} | {best} | {fmt(theirs)}{unit} | "
                     f"{mine / theirs:.2f}x | {fmt_paired(paired(results, load, best, key))} | "
                     f"{fmt_paired(paired(results, load, best, cpu_per_unit))} |")
    lines.append("")
    for load in loads:
        stream = "stream" in load
        udp = transport(load) == "udp"
        lines += [f"## {load}", ""]
        if stream:
            lines += ["| server | MB/s | vs upecho | upecho / this, per repeat | server CPU ms/MB | p99.9 us | errors | starved | client CPU % |",
                      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        elif udp:
            lines += ["| server | requests/s | vs upecho | upecho / this, per repeat | server CPU us/req | p50 us | p99 us | p99.9 us | lost | errors | starved | client CPU % |",
                      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        elif connects(load):
            lines += ["| server | connections/s | vs upecho | upecho / this, per repeat | server CPU us/conn | p50 us | p99 us | p99.9 us | errors | starved | client CPU % |",
                      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        else:
            lines += ["| server | requests/s | vs upecho | upecho / this, per repeat | server CPU us/req | p50 us | p99 us | p99.9 us | errors | starved | client CPU % |",
                      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        key = "mb_per_s" if stream else "requests_per_s"
        ref = table.get((load, "upecho"), {}).get(key)
        for peer in sorted(load_peers(peers, load), key=lambda p: -(table[(load, p)][key] or 0)):
            row = table[(load, peer)]
            mark = "*" if (row["client_cpu"] or 0) >= 90 else ""
            ratio = f"{row[key] / ref:.2f}x" if ref and row[key] is not None else "-"
            pair = "" if peer == "upecho" else fmt_paired(paired(results, load, peer, key))
            lost = f"{fmt(row['lost'])} | " if udp else ""
            if stream:
                lines.append(f"| {peer} | {fmt(row[key], 1)}{mark} | {ratio} | {pair} | {fmt(row['server_cpu_ms_per_mb'], 3)} | "
                             f"{fmt(row['p999_us'])} | {row['errors']} | {fmt(row['starved'])} | {fmt(row['client_cpu'])} |")
            else:
                lines.append(f"| {peer} | {fmt(row[key])}{mark} | {ratio} | {pair} | {fmt(row['server_cpu_us_per_req'], 2)} | "
                             f"{fmt(row['p50_us'])} | {fmt(row['p99_us'])} | {fmt(row['p999_us'])} | {lost}{row['errors']} | "
                             f"{fmt(row['starved'])} | {fmt(row['client_cpu'])} |")
        lines.append("")
    flags = f"--repeats {args.repeats} --duration {args.duration:g} --warmup {args.warmup:g}"
    if args.before_rev:
        flags = f"--before {args.before_rev} {flags}"
    requested = args.peers.split(",")
    if set(requested) != set(DEFAULT_PEERS):
        flags += f" --peers {','.join(requested)}"
    if set(loads) != set(LOADS):
        whole = {load for load in LOADS if transport(load) in kinds}
        flags += (f" --transports {','.join(kinds)}" if set(loads) == whole
                  else f" --loads '{','.join(loads)}'")
    if results and "order_seed" in results[0]:
        flags += f" --order-seed {results[0]['order_seed']}"
    lines += ["## Commands", "", "The whole comparison, from the repository's root:", "", "```",
              f"peers/bench-peers.sh {flags}", "```", ""]
    for kind in kinds:
        endpoint = "PATH" if kind == "unix" else "127.0.0.1:PORT"
        lines += [RUN_HEADERS[kind], "", "```"]
        for peer in peers:
            builders, env = PEERS[peer]
            if kind not in builders:
                continue
            envs = " ".join(f"{k}={v}" for k, v in env.items())
            argv = [os.path.relpath(a, ROOT) if a.startswith(ROOT + os.sep) else a for a in builders[kind](endpoint)]
            argv = ["python3" if a == sys.executable else a for a in argv]
            lines.append(f"{envs + ' ' if envs else ''}taskset -c {SERVER_CPU} " + " ".join(argv))
        lines.append(f"taskset -c {CLIENT_CPU} target/release/upecho bench {' '.join(bench_target(kind, endpoint))} "
                     f"--json --seed 1 --duration {args.duration} --warmup {args.warmup} LOAD")
        lines += ["```", ""]
    lines += ["LOAD is one of:", ""]
    for load in loads:
        flags = LOADS[load][1]
        lines.append(f"- {load}: " + ("`taskset -c 1 openssl s_time -connect 127.0.0.1:PORT -new -time SECS "
                                      "-tls1_3 -ciphersuites TLS_AES_128_GCM_SHA256` (SECS: warm-up plus "
                                      "measured, instead of upecho bench)" if flags is S_TIME
                                      else f"`{' '.join(flags)}`"))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def missing_programs(peers, loads):
    """{peer: why} for the peers whose program is not installed (socat, ncat):
    they are left out of the run with a note, not failed on."""
    missing = {}
    for peer in peers:
        builders, _ = PEERS[peer]
        for kind in {transport(load) for load in loads if serves(peer, load)}:
            program = builders[kind]("PATH" if kind == "unix" else "127.0.0.1:0")[0]
            if os.sep not in program and shutil.which(program) is None:
                missing[peer] = f"`{program}` not found"
    return missing


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=os.path.join(ROOT, "docs"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--duration", type=float, default=3)
    parser.add_argument("--warmup", type=float, default=1)
    parser.add_argument("--peers", default=",".join(DEFAULT_PEERS),
                        help="comma-separated; each load runs with those of them that serve its transport")
    parser.add_argument("--loads", help="comma-separated load names (default: all)")
    parser.add_argument("--transports", help="only the loads over these: comma-separated tcp, udp, unix, tls, ws")
    parser.add_argument("--markdown", default="BENCHMARKS.md")
    parser.add_argument("--order-seed", type=int, help="seed of the run order's shuffle (default: new each run)")
    parser.add_argument("--before-rev", help="the git revision the peer upecho-before was built from (for the report)")
    parser.add_argument("--from-json", help="re-render the report from a saved results file, running nothing")
    parser.add_argument("--dry-run", action="store_true", help="print the runs planned, in order, running nothing")
    args = parser.parse_args()
    peers = args.peers.split(",")
    loads = args.loads.split(",") if args.loads else list(LOADS)
    for name, known in (("peer", PEERS), ("load", LOADS)):
        unknown = [x for x in (peers if name == "peer" else loads) if x not in known]
        if unknown:
            parser.error(f"unknown {name}s: {', '.join(unknown)} (known: {', '.join(known)})")
    if args.transports:
        kinds = args.transports.split(",")
        if any(k not in TRANSPORTS for k in kinds):
            parser.error(f"--transports: each of {', '.join(TRANSPORTS)}")
        loads = [load for load in loads if transport(load) in kinds]
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    # A new order every run: with a fixed seed every run repeats the same
    # sequence, and whatever a server leaves behind (io_uring teardown, forked
    # children) would always hit the same next server.
    order_seed = args.order_seed if args.order_seed is not None else time.time_ns() % 1_000_000
    rng = random.Random(order_seed)
    results = []
    if args.from_json:
        with open(args.from_json) as f:
            results = json.load(f)
        if results:
            started = results[0].get("started", started)
            args.warmup = results[0].get("warmup_s", args.warmup)
            args.duration = round(results[0].get("duration_s", args.duration), 1)
        if not args.loads:  # the loads the file has
            loads = [load for load in loads if any(r["load"] == load for r in results)]
        args.repeats = 0  # run nothing
    else:
        args.skipped = missing_programs(peers, loads)
        for peer, why in args.skipped.items():
            print(f"note: peer {peer} left out: {why}", file=sys.stderr, flush=True)
        peers = [p for p in peers if p not in args.skipped]
    for load in loads:
        if not load_peers(peers, load):
            print(f"note: no peer of --peers serves {transport(load)}: load {load!r} not run",
                  file=sys.stderr, flush=True)
    loads = [load for load in loads if load_peers(peers, load)]
    if not loads:
        parser.error("no load to run")
    if args.dry_run:
        print(f"# order seed {order_seed}")
    for repeat in range(args.repeats):
        for load in loads:
            order = load_peers(peers, load)
            rng.shuffle(order)  # interleave: no peer always runs first or last
            for peer in order:
                if args.dry_run:
                    kind = transport(load)
                    endpoint = "DIR/echo.sock" if kind == "unix" else "127.0.0.1:PORT"
                    server, bench = commands(peer, load, endpoint, args)
                    absent = [x for x in (server[3], bench[3]) if os.sep in x and not os.access(x, os.X_OK)]
                    print(f"[{repeat + 1}/{args.repeats}] {load} / {peer}:\n  server: {' '.join(server)}\n"
                          f"  bench:  {' '.join(bench)}" + "".join(f"\n  (not built yet: {x})" for x in absent))
                    continue
                r = run_one(peer, load, args)
                r["repeat"], r["started"], r["order_seed"] = repeat, started, order_seed
                results.append(r)
                print(f"[{repeat + 1}/{args.repeats}] {load:18} {peer:18} "
                      f"rps={r.get('requests_per_s', '-')} MB/s={r.get('mb_per_s', '-')} "
                      f"errors={r.get('errors', '-')} starved={r.get('starved', '-')} "
                      + (f"lost={r.get('lost', '-')} " if transport(load) == "udp" else "") +
                      f"cpu={r['server_cpu_s']}s client={r.get('client_cpu_percent', '-')}%",
                      file=sys.stderr, flush=True)
    if args.dry_run:
        return
    os.makedirs(os.path.join(args.out, "bench"), exist_ok=True)
    stem = os.path.splitext(args.markdown)[0].lower()
    data, chart = outputs(stem)
    with open(os.path.join(args.out, data), "w") as f:
        json.dump(results, f, indent=1)
    table = summarise(results, peers, loads)
    write_chart(os.path.join(args.out, chart),
                table, peers, loads)
    if args.from_json:
        args.repeats = max(r["repeat"] for r in results) + 1
    write_markdown(os.path.join(args.out, args.markdown), results, table, peers, loads, args, started)


if __name__ == "__main__":
    main()
