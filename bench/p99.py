#!/usr/bin/env python3
"""Latency at saturation, variants side by side (bench/run's machinery): which existing
settings move wix-cluster's p99 with keep-alive against bare hyper's. Interleaved
A B C ..., median (min-max) of each percentile; prints a markdown table. Builds nothing:
run `bench/run` (or `cargo build --release --example hello --example bare_hyper`) first.

    bench/p99.py --pairs 3 --duration 5 --variants ours2,ours4,bare
    bench/p99.py --variants ours2,bare --conns 16

Variants: oursN (the `hello` example with WIX_CLUSTER_WORKERS=N), ours2-off (request
metrics off), ours2-pin (2 workers, each pinned to a CPU of its own with taskset),
single (WIX_CLUSTER_SINGLE=1: one process), bare (examples/bare_hyper.rs), node.
"""
import argparse
import importlib.machinery
import importlib.util
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
loader = importlib.machinery.SourceFileLoader("bench_run", os.path.join(HERE, "run"))
spec = importlib.util.spec_from_loader("bench_run", loader)
run = importlib.util.module_from_spec(spec)
loader.exec_module(run)


def start(variant):
    if variant == "bare":
        return run.start_bare()
    if variant == "node":
        return run.start_node(2)
    if variant == "single":
        proc = run.Proc([os.path.join(run.EXAMPLES, "hello")],
                        env=run.base_env(PORT=0, WIX_CLUSTER_SINGLE=1))
        _, _, m = proc.wait_for(r"(?<!management app )listening on 127\.0\.0\.1:(\d+)")
        return run.Server(variant, proc, int(m.group(1)), 1)
    if variant == "ours2-off":
        return run.start_ours(2, name=variant, WIX_CLUSTER_REQUEST_METRICS=0)
    if variant == "ours2-pin":
        server = run.start_ours(2, name=variant)
        for cpu, pid in enumerate(sorted(server.worker_pids())):
            subprocess.run(["taskset", "-pc", str(cpu % os.cpu_count()), str(pid)], check=True,
                           stdout=subprocess.DEVNULL)
        return server
    if variant.startswith("ours"):
        return run.start_ours(int(variant[4:]), name=variant)
    sys.exit(f"unknown variant {variant!r}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--conns", type=int, default=64, help="wrk connections (default 64)")
    parser.add_argument("--variants", default="ours2,bare")
    args = parser.parse_args()
    import atexit
    atexit.register(run.cleanup)
    variants = args.variants.split(",")
    servers = [start(v) for v in variants]
    results = {v: [] for v in variants}
    try:
        for server in servers:
            run.wrk(server.url(), 1, conns=args.conns)
        for i in range(args.pairs):
            for v, server in zip(variants, servers):
                out = run.wrk(server.url(), args.duration, extra=["--latency"], conns=args.conns)
                results[v].append(dict(out["latency"], rps=out["rps"]))
                run.log(f"  pair {i + 1}: {v}: {out['rps']:,.0f} req/s, "
                        + ", ".join(f"p{q} {out['latency'][q]:.2f}" for q in (50, 90, 99)) + " ms")
    finally:
        for server in servers:
            server.stop()
    base = results.get("bare")
    print(f"`wrk -t2 -c{args.conns} --latency -d{args.duration}s`, {args.pairs} interleaved rounds, "
          f"median (min–max); load average {open('/proc/loadavg').read().split()[:3]}\n")
    print("| variant | requests/s | p50 ms | p90 ms | p99 ms | p99 / bare's |")
    print("|---|---|---|---|---|---|")
    for v in variants:
        rows = results[v]
        cells = [run.spread([r["rps"] for r in rows])] + [run.spread([r[q] for r in rows], "{:.2f}") for q in (50, 90, 99)]
        ratio = (f"{run.med([r[99] for r in rows]) / run.med([r[99] for r in base]):.2f}x" if base else "")
        print(f"| {v} | " + " | ".join(cells) + f" | {ratio} |")


if __name__ == "__main__":
    main()
