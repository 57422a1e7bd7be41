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
import sys

from benchlib import HERE, OUT, generated, run, run_duckdb


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--evlake", required=True)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()

    gen, truth = generated(args.evlake, args.events, args.days)
    batches = os.path.join(gen, "batches")
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
        t = run_duckdb(script)
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
