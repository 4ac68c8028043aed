#!/usr/bin/env python3
"""What a /metrics scrape costs the master when its workers hold many descriptors, and
whether it holds up the master's other pages meanwhile.

    bench/scrape.py [--workers 4] [--sockets 10000] [--scrapes 30]

Starts the `fd_hoard` fixture (built in release: `cargo build --release -p
wix-cluster-test-support --bin fd_hoard`) with its soft descriptor limit raised to the
hard one, every worker holding `--sockets` sockets, on loopback and free ports. Prints
the time of a scrape (median and max of `--scrapes`, one connection each), and the
latency of `GET /health/is_alive` alone and while scrapes run back to back: a master
that reads `/proc` on its event loop answers nothing else during a scrape.
"""
import argparse
import http.client
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.path.join(ROOT, os.environ.get("CARGO_TARGET_DIR") or "target")
FIXTURE = os.path.join(TARGET, "release", "fd_hoard")


def get(addr, path):
    """Seconds taken by `GET path` on a new connection, and the body."""
    host, port = addr.rsplit(":", 1)
    started = time.perf_counter()
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.request("GET", path)
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return time.perf_counter() - started, response.status, body


def ms(seconds):
    return f"{seconds * 1000:.2f} ms"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--sockets", type=int, default=10000)
    parser.add_argument("--scrapes", type=int, default=30)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if args.sockets + 100 > hard:
        sys.exit(f"--sockets {args.sockets} does not fit the hard descriptor limit {hard}")

    def raise_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    env = dict(os.environ, PORT="0", WIX_CLUSTER_WORKERS=str(args.workers),
               WIX_CLUSTER_MANAGEMENT_ADDR="127.0.0.1:0", OPEN_SOCKETS=str(args.sockets))
    proc = subprocess.Popen([FIXTURE], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, preexec_fn=raise_limit,
                            start_new_session=True)
    try:
        addr = None
        for line in proc.stdout:
            found = re.search(r"management app listening on (\S+)", line)
            if found:
                addr = found.group(1)
                break
        if addr is None:
            sys.exit("the fixture did not start its management app")
        threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            _, status, _ = get(addr, "/health/ready")
            if status == 200:
                break
            time.sleep(0.2)
        _, _, body = get(addr, "/metrics")
        fds = re.findall(rb'process_open_fds\{worker="(\d+)"\} (\d+)', body)
        print(f"workers' open descriptors: {', '.join(n.decode() for _, n in fds)}")

        scrapes = [get(addr, "/metrics")[0] for _ in range(args.scrapes)]
        print(f"/metrics: median {ms(statistics.median(scrapes))}, max {ms(max(scrapes))} "
              f"({args.scrapes} scrapes)")

        alone = [get(addr, "/health/is_alive")[0] for _ in range(100)]
        stop = threading.Event()

        def scrape_on():
            while not stop.is_set():
                get(addr, "/metrics")

        scraper = threading.Thread(target=scrape_on)
        scraper.start()
        time.sleep(0.2)
        during = []
        for _ in range(100):
            during.append(get(addr, "/health/is_alive")[0])
            time.sleep(0.01)
        stop.set()
        scraper.join()
        for name, times in (("alone", alone), ("during scrapes", during)):
            print(f"/health/is_alive {name}: median {ms(statistics.median(times))}, "
                  f"p90 {ms(sorted(times)[89])}, max {ms(max(times))}")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


if __name__ == "__main__":
    main()
