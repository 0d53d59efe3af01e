#!/usr/bin/env python3
"""Peer comparison: upecho against other uppercase-echo servers, in one run.

Each server is pinned to CPU 0, `upecho bench` to CPU 1. Loads and servers are
interleaved across repeats; medians are reported. Server CPU comes from the
scheduler's accounting (/proc/PID/task/*/schedstat) summed over the server's
whole process tree (socat and ncat fork per connection).

Usage: bench/peers.py --out docs [--repeats 5] [--duration 3] [--warmup 1]
       [--peers a,b] [--loads a,b]  (run by scripts/bench-peers.sh)
"""
import argparse
import json
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(ROOT, "target", "release")
UPECHO = os.path.join(REL, "upecho")
SERVER_CPU, CLIENT_CPU = "0", "1"

# name -> (argv builder, extra environment)
PEERS = {
    "upecho": (lambda a: [UPECHO, "serve", "--tcp", a, "-q"], {}),
    # An earlier build of upecho, for before/after comparisons in one run:
    # scripts/bench-peers.sh --before REV builds it.
    "upecho-before": (lambda a: [os.path.join(REL, "upecho-before"), "serve", "--tcp", a, "-q"], {}),
    "c-epoll": (lambda a: [os.path.join(REL, "epoll_server"), a.split(":")[1]], {}),
    "tokio-single-64k": (lambda a: [os.path.join(REL, "examples", "single_thread"), a], {}),
    "tokio-uring-64k": (lambda a: [os.path.join(REL, "examples", "uring"), a], {}),
    "tokio-naive": (lambda a: [os.path.join(REL, "examples", "naive_tokio"), a], {}),
    "socat": (lambda a: ["socat", f"TCP-LISTEN:{a.split(':')[1]},bind=127.0.0.1,reuseaddr,fork,backlog=1024",
                         "EXEC:stdbuf -o0 tr a-z A-Z"], {}),
    "ncat": (lambda a: ["ncat", "-l", "127.0.0.1", a.split(":")[1], "--keep-open", "--max-conns", "10000",
                        "--exec", "/usr/bin/stdbuf -o0 /usr/bin/tr a-z A-Z"], {}),
    "python-threading": (lambda a: [sys.executable, os.path.join(ROOT, "bench", "peers", "threading_server.py"),
                                    a.split(":")[1]], {}),
    "tutorial": (lambda a: [sys.executable, os.path.join(ROOT, "bench", "peers", "tutorial_server.py"),
                            a.split(":")[1]], {}),
}

# Compared when --peers is not given: every peer but the earlier build.
DEFAULT_PEERS = [p for p in PEERS if p != "upecho-before"]

# name -> bench flags
LOADS = {
    "64B pingpong x1": ["--mode", "pingpong", "--size", "64", "--connections", "1"],
    "64B pingpong x50": ["--mode", "pingpong", "--size", "64", "--connections", "50"],
    "64B pingpong x500": ["--mode", "pingpong", "--size", "64", "--connections", "500"],
    "4KiB pingpong x50": ["--mode", "pingpong", "--size", "4096", "--connections", "50"],
    "64KiB stream x1": ["--mode", "stream", "--size", "65536", "--connections", "1"],
    "64KiB stream x16": ["--mode", "stream", "--size", "65536", "--connections", "16"],
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, proc, limit=10.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.02)
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


def cpu_ns(pid):
    """CPU time of every thread of pid's process tree, in nanoseconds."""
    total = 0
    for p in tree(pid):
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/schedstat") as f:
                    total += int(f.read().split()[0])
        except (OSError, ValueError):
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


def run_one(peer, load, args):
    build, env = PEERS[peer]
    port = free_port()
    addr = f"127.0.0.1:{port}"
    server = subprocess.Popen(["taskset", "-c", SERVER_CPU] + build(addr), env={**os.environ, **env},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_listening(port, server)
        cmd = ["taskset", "-c", CLIENT_CPU, UPECHO, "bench", addr, "--json", "--seed", "1",
               "--duration", str(args.duration), "--warmup", str(args.warmup)] + LOADS[load]
        start = time.monotonic()
        bench = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(max(0.0, start + args.warmup - time.monotonic()))
        cpu0 = cpu_ns(server.pid)
        time.sleep(max(0.0, start + args.warmup + args.duration - time.monotonic()))
        cpu1 = cpu_ns(server.pid)
        out, err = bench.communicate(timeout=args.duration + args.warmup + 60)
        report = json.loads(out) if out.strip() else {"error": err.strip()}
        report["bench_exit"] = bench.returncode
        report["bench_stderr"] = err.strip()
        # Threads that exit during the window take their CPU time with them; a
        # negative difference says so, and is reported as unknown.
        report["server_cpu_s"] = (cpu1 - cpu0) / 1e9 if cpu1 >= cpu0 else None
        report["peer"], report["load"] = peer, load
        report["command"] = " ".join(cmd)
        report["server_command"] = " ".join(["taskset", "-c", SERVER_CPU] + build(addr))
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
        for peer in peers:
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
                "starved": median(rows, "starved"),
                "client_cpu": median(rows, "client_cpu_percent"),
                "server_cpu_us_per_req": statistics.median(per_req) if per_req else None,
                "server_cpu_ms_per_mb": statistics.median(per_mb) if per_mb else None,
                "runs": len(rows),
            }
    return table


def fmt(x, digits=0):
    return "-" if x is None else f"{x:,.{digits}f}"


def write_chart(path, table, peers, loads):
    """Grouped bars: each peer's throughput relative to the best peer, per load."""
    colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
              "#bcbd22", "#17becf"]
    width, height, left, top, bottom = 960, 420, 60, 40, 110
    plot_h = height - top - bottom
    group_w = (width - left - 20) / len(loads)
    bar_w = group_w * 0.8 / len(peers)
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
        best = max((table[(load, p)][key] or 0) for p in peers) or 1
        for pi, peer in enumerate(peers):
            value = (table[(load, peer)][key] or 0) / best
            x = left + gi * group_w + group_w * 0.1 + pi * bar_w
            h = plot_h * value
            parts.append(f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w - 1:.1f}" '
                         f'height="{h:.1f}" fill="{colors[pi % len(colors)]}"><title>{peer}: {value:.2f}</title></rect>')
        parts.append(f'<text x="{left + gi * group_w + group_w / 2:.1f}" y="{top + plot_h + 16}" '
                     f'text-anchor="middle">{load}</text>')
    for pi, peer in enumerate(peers):
        x = left + (pi % 5) * 170
        y = height - 60 + (pi // 5) * 18
        parts.append(f'<rect x="{x}" y="{y - 9}" width="10" height="10" fill="{colors[pi % len(colors)]}"/>')
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


def write_markdown(path, results, table, peers, loads, args, started):
    stem = os.path.splitext(os.path.basename(path))[0].lower()
    data, chart = outputs(stem)
    title = "# Benchmarks" if stem == "benchmarks" else f"# Benchmarks: {stem}"
    lines = [title, "",
             "Generated by `scripts/bench-peers.sh` (do not edit by hand); raw data in "
             f"`docs/{data}`, chart in `docs/{chart}`. How the "
             "architecture was chosen, and what these numbers can and cannot resolve: "
             "[ARCHITECTURE.md](ARCHITECTURE.md).", "",
             f"- Machine: {machine()}",
             f"- Run: {started}, {args.repeats} interleaved repeats, each load "
             f"{args.warmup} s warm-up + {args.duration} s measured; medians shown. "
             f"Order of servers within each load and repeat: shuffled, "
             + (f"seed {results[0]['order_seed']} (`--order-seed`)." if results and "order_seed" in results[0]
                else "seed 1 (fixed: the same order in every run of this harness version)."),
             f"- Server pinned to CPU {SERVER_CPU} (`taskset -c {SERVER_CPU}`), load generator "
             f"`upecho bench` pinned to CPU {CLIENT_CPU}.",
             "- Server CPU is from `/proc/PID/task/*/schedstat` over the server's whole process tree "
             "during the measured window.",
             "- `*` after a rate: the load generator used >= 90% of its core, so the rate is the "
             "generator's limit, not the server's. On loopback each side also pays for the other's "
             "TCP receive path, so there the server's CPU per request is about 1/rate too; "
             "ARCHITECTURE.md compares user-space instructions per round trip instead.",
             "- Differences under 10% are noise on this machine; the same binary has moved by up to "
             "25% between runs, and every server's rate shifts together when the machine does.",
             "- `upecho / this, per repeat`: upecho's figure divided by this server's in the same "
             "repeat (the two ran back to back), median and range over the repeats. Pairing cancels "
             "the shifts of the whole machine that the medians of each column keep.",
             "- The peers: `tutorial` is the tutorial's server (one client at a time, so all "
             "connections but one starve; its `recv(1024)`/`send` stalls about 44 ms per 4 KiB round "
             "trip on Nagle and delayed ACK); `python-threading` the same logic on "
             "`ThreadingTCPServer`; `socat` and `ncat` run `stdbuf -o0 tr a-z A-Z` per connection "
             "(ncat's errors: when the client half-closes, ncat closes the connection before `tr` has returned everything still owed); "
             "`tokio-naive` is `examples/naive_tokio.rs` (multi-thread, 8 KiB); `tokio-single-64k` "
             "is `examples/single_thread.rs`; `tokio-uring-64k` is `examples/uring.rs` (io_uring); "
             "`c-epoll` is `bench/peers/epoll_server.c` (level-triggered, 64 KiB, `cc -O2`).", "",
             f"![throughput relative to the best peer]({chart})", "",
             "## Summary", "",
             "| load | upecho | best other | its figure | ratio of medians | upecho / it, per repeat | "
             "server CPU per unit, upecho / it, per repeat |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: |"]
    for load in loads:
        key = "mb_per_s" if "stream" in load else "requests_per_s"
        unit = " MB/s" if "stream" in load else " rt/s"
        others = [p for p in peers if p != "upecho" and table[(load, p)][key] is not None]
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
        lines += [f"## {load}", ""]
        if stream:
            lines += ["| server | MB/s | vs upecho | upecho / this, per repeat | server CPU ms/MB | p99.9 us | errors | starved | client CPU % |",
                      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        else:
            lines += ["| server | requests/s | vs upecho | upecho / this, per repeat | server CPU us/req | p50 us | p99 us | p99.9 us | errors | starved | client CPU % |",
                      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        key = "mb_per_s" if stream else "requests_per_s"
        ref = table.get((load, "upecho"), {}).get(key)
        for peer in sorted(peers, key=lambda p: -(table[(load, p)][key] or 0)):
            row = table[(load, peer)]
            mark = "*" if (row["client_cpu"] or 0) >= 90 else ""
            ratio = f"{row[key] / ref:.2f}x" if ref and row[key] is not None else "-"
            pair = "" if peer == "upecho" else fmt_paired(paired(results, load, peer, key))
            if stream:
                lines.append(f"| {peer} | {fmt(row[key], 1)}{mark} | {ratio} | {pair} | {fmt(row['server_cpu_ms_per_mb'], 3)} | "
                             f"{fmt(row['p999_us'])} | {row['errors']} | {fmt(row['starved'])} | {fmt(row['client_cpu'])} |")
            else:
                lines.append(f"| {peer} | {fmt(row[key])}{mark} | {ratio} | {pair} | {fmt(row['server_cpu_us_per_req'], 2)} | "
                             f"{fmt(row['p50_us'])} | {fmt(row['p99_us'])} | {fmt(row['p999_us'])} | {row['errors']} | "
                             f"{fmt(row['starved'])} | {fmt(row['client_cpu'])} |")
        lines.append("")
    flags = f"--repeats {args.repeats} --duration {args.duration:g} --warmup {args.warmup:g}"
    if args.before_rev:
        flags = f"--before {args.before_rev} {flags}"
    if set(peers) != set(DEFAULT_PEERS):
        flags += f" --peers {','.join(peers)}"
    if set(loads) != set(LOADS):
        flags += f" --loads '{','.join(loads)}'"
    if results and "order_seed" in results[0]:
        flags += f" --order-seed {results[0]['order_seed']}"
    lines += ["## Commands", "", "The whole comparison, from the repository's root:", "", "```",
              f"scripts/bench-peers.sh {flags}", "```", "",
              "Each run, with PORT a free port:", "", "```"]
    for peer in peers:
        build, env = PEERS[peer]
        envs = " ".join(f"{k}={v}" for k, v in env.items())
        argv = [os.path.relpath(a, ROOT) if a.startswith(ROOT + os.sep) else a for a in build("127.0.0.1:PORT")]
        argv = ["python3" if a == sys.executable else a for a in argv]
        lines.append(f"{envs + ' ' if envs else ''}taskset -c {SERVER_CPU} " + " ".join(argv))
    lines.append(f"taskset -c {CLIENT_CPU} target/release/upecho bench 127.0.0.1:PORT --json --seed 1 "
                 f"--duration {args.duration} --warmup {args.warmup} LOAD")
    lines += ["```", "", "LOAD is one of:", ""]
    for load in loads:
        lines.append(f"- {load}: `{' '.join(LOADS[load])}`")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=os.path.join(ROOT, "docs"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--duration", type=float, default=3)
    parser.add_argument("--warmup", type=float, default=1)
    parser.add_argument("--peers", default=",".join(DEFAULT_PEERS))
    parser.add_argument("--loads", default=",".join(LOADS))
    parser.add_argument("--markdown", default="BENCHMARKS.md")
    parser.add_argument("--order-seed", type=int, help="seed of the run order's shuffle (default: new each run)")
    parser.add_argument("--before-rev", help="the git revision the peer upecho-before was built from (for the report)")
    parser.add_argument("--from-json", help="re-render the report from a saved results file, running nothing")
    args = parser.parse_args()
    peers, loads = args.peers.split(","), args.loads.split(",")
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
        args.repeats = 0  # run nothing
    for repeat in range(args.repeats):
        for load in loads:
            order = peers[:]
            rng.shuffle(order)  # interleave: no peer always runs first or last
            for peer in order:
                r = run_one(peer, load, args)
                r["repeat"], r["started"], r["order_seed"] = repeat, started, order_seed
                results.append(r)
                print(f"[{repeat + 1}/{args.repeats}] {load:18} {peer:18} "
                      f"rps={r.get('requests_per_s', '-')} MB/s={r.get('mb_per_s', '-')} "
                      f"errors={r.get('errors', '-')} starved={r.get('starved', '-')} "
                      f"cpu={r['server_cpu_s']}s client={r.get('client_cpu_percent', '-')}%",
                      file=sys.stderr, flush=True)
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
