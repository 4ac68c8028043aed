#!/usr/bin/env python3
"""Exchange throughput and broadcast latency: wix-cluster's `ipc_bench` example against
Node's cluster (`../shared/peers/node-cluster/server.js --ipc-bench`), interleaved
A B A B ..., on the same machine in the same run.

    python3 bench/ipc.py [--pairs 5] [--messages 200000]

Prints a Markdown section and writes it into BENCHMARKS.md between the
`<!-- ipc:begin -->` / `<!-- ipc:end -->` markers.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NODE_PEER = os.path.join(ROOT, "..", "shared", "peers", "node-cluster", "server.js")


def run(cmd, env=None):
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    return out.stdout + out.stderr


def ours(messages):
    env = dict(os.environ, RUST_LOG="info", IPC_MSGS=str(messages), PINGS="1000")
    target = os.path.join(ROOT, os.environ.get("CARGO_TARGET_DIR") or "target")
    text = run([os.path.join(target, "release", "examples", "ipc_bench")], env)
    rate = re.search(r"msgs_per_s=(\d+)", text)
    lat = re.search(r"p50_us=([\d.]+) p99_us=([\d.]+)", text)
    if not rate or not lat:
        sys.exit("ipc_bench printed no result:\n" + text)
    return int(rate.group(1)), float(lat.group(1)), float(lat.group(2))


def node(messages):
    text = run(["node", NODE_PEER, "--workers", "2", "--ipc-bench", str(messages)])
    rate = re.search(r"msgs_per_s=(\d+)", text)
    if not rate:
        sys.exit("node peer printed no result:\n" + text)
    return int(rate.group(1))


def spread(values, fmt="{:,.0f}"):
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--no-build", action="store_true", help="use the ipc_bench already built")
    args = parser.parse_args()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--quiet", "--release", "--example", "ipc_bench"], cwd=ROOT, check=True)
    ours_rate, ours_p50, ours_p99, node_rate = [], [], [], []
    for i in range(args.pairs):
        rate, p50, p99 = ours(args.messages)
        ours_rate.append(rate)
        ours_p50.append(p50)
        ours_p99.append(p99)
        node_rate.append(node(args.messages))
        print(f"pair {i + 1}: wix-cluster {rate:,} msgs/s (p50 {p50} µs), node {node_rate[-1]:,} msgs/s", file=sys.stderr)
    ratio = statistics.median(ours_rate) / statistics.median(node_rate)
    cpus = os.cpu_count()
    section = f"""<!-- ipc:begin -->
## Exchange: worker -> master messages and broadcast latency

`python3 bench/ipc.py --pairs {args.pairs} --messages {args.messages}`: {args.pairs} interleaved pairs on
this {cpus}-core machine; 2 workers each send {args.messages:,} small messages
(`{{ evt: "req.per.second", value: i }}`) to the master, timed from the first received to
the last (Node's peer measures the same way). Broadcast: the master sends 1,000 pings
to both workers, each after a 1 ms sleep (about 2 ms apart: the timer rounds up) and
stamped with the machine's monotonic clock; the workers measure the one-way latency. Median (min–max).

| what | wix-cluster | Node cluster | ratio | target |
|---|---|---|---|---|
| worker -> master msgs/s | {spread(ours_rate)} | {spread(node_rate)} | **{ratio:.1f}x** | >= 2,000,000 |
| broadcast latency p50 (µs) | {spread(ours_p50, "{:.1f}")} | — | | < 50 |
| broadcast latency p99 (µs) | {spread(ours_p99, "{:.1f}")} | — | | |
<!-- ipc:end -->
"""
    print(section)
    path = os.path.join(ROOT, "BENCHMARKS.md")
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n\n"
    if "<!-- ipc:begin -->" in text:
        text = re.sub(r"<!-- ipc:begin -->.*?<!-- ipc:end -->\n", lambda _: section, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    open(path, "w").write(text)


if __name__ == "__main__":
    main()
