#!/usr/bin/env python3
"""Ingest benchmark: evlake vs DuckDB on the same generated NDJSON files.

Runs alternate (evlake, duckdb) x 3 in one process, each in a fresh output
directory, and prints events/s, MB/s, peak RSS and the speedup
(median DuckDB time / median evlake time). Peak RSS comes from wait4() of
each child process. Results also go to bench/out/ingest-<events>.json.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "out")


def run(cmd, env=None):
    """Run a child; return (seconds, peak RSS bytes). Fails loudly."""
    start = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    elapsed = time.perf_counter() - start
    err = p.stderr.read().decode(errors="replace")
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        sys.exit(f"command failed ({p.returncode}): {' '.join(cmd)}\n{err}")
    return elapsed, usage.ru_maxrss * 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--evlake", required=True)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()

    gen = os.path.join(OUT, f"gen-{args.events}")
    if not os.path.exists(os.path.join(gen, "truth.json")):
        print(f"generating {args.events} events into {gen} ...", file=sys.stderr)
        subprocess.run([args.evlake, "generate", "--events", str(args.events), "--days", str(args.days),
                        "--out", gen], check=True)
    batches = os.path.join(gen, "batches")
    truth = json.load(open(os.path.join(gen, "truth.json")))
    nbytes = sum(os.path.getsize(os.path.join(batches, f)) for f in os.listdir(batches))
    events = truth["totals"]["events"]
    sql = open(os.path.join(HERE, "duckdb_ingest.sql")).read()

    def evlake_once():
        lake = os.path.join(OUT, "lake-evlake")
        shutil.rmtree(lake, ignore_errors=True)
        t = run([args.evlake, "--lake", lake, "ingest", batches,
                 "--processing-time", "2024-03-31T01:00:00Z", "--max-bad-fraction", "1"])
        shutil.rmtree(lake, ignore_errors=True)
        return t

    def duckdb_once():
        out = os.path.join(OUT, "lake-duckdb")
        shutil.rmtree(out, ignore_errors=True)
        script = sql.replace("{input_glob}", os.path.join(batches, "*.jsonl")).replace("{out_dir}", out)
        t = run([sys.executable, "-c", "import duckdb,sys; duckdb.connect().execute(sys.argv[1])", script])
        shutil.rmtree(out, ignore_errors=True)
        return t

    results = {"evlake": [], "duckdb": []}
    for rep in range(args.reps):
        for name, fn in (("evlake", evlake_once), ("duckdb", duckdb_once)):
            secs, rss = fn()
            results[name].append({"seconds": secs, "peak_rss": rss})
            print(f"  run {rep + 1} {name:7s} {secs:7.2f} s  peak RSS {rss / 2**20:7.0f} MiB", file=sys.stderr)

    import duckdb
    print(f"\ningest of {events:,} events ({nbytes / 1e6:,.0f} MB NDJSON, {len(os.listdir(batches))} files), "
          f"median of {args.reps}, {os.cpu_count()} cores, duckdb {duckdb.__version__}")
    print(f"{'':8s} {'events/s':>12s} {'MB/s':>8s} {'peak RSS':>10s}")
    summary = {}
    for name in ("evlake", "duckdb"):
        med = statistics.median(r["seconds"] for r in results[name])
        rss = max(r["peak_rss"] for r in results[name])
        summary[name] = {"median_seconds": med, "events_per_s": events / med, "mb_per_s": nbytes / 1e6 / med,
                         "peak_rss_mib": rss / 2**20}
        print(f"{name:8s} {events / med:12,.0f} {nbytes / 1e6 / med:8.1f} {rss / 2**20:8.0f} MiB")
    speedup = summary["duckdb"]["median_seconds"] / summary["evlake"]["median_seconds"]
    mem = summary["duckdb"]["peak_rss_mib"] / summary["evlake"]["peak_rss_mib"]
    print(f"speedup (DuckDB time / evlake time): {speedup:.2f}x; DuckDB uses {mem:.2f}x evlake's peak memory")
    summary.update(events=events, bytes=nbytes, speedup=speedup, memory_ratio=mem, runs=results)
    with open(os.path.join(OUT, f"ingest-{args.events}.json"), "w") as f:
        json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
