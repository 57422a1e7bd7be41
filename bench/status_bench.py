#!/usr/bin/env python3
"""Metadata benchmark: `evlake status` reads only the commit log.

1. The same number of commits (one per daily batch) at two bronze sizes
   (default 1M and 5M events): status time must not grow with bronze size.
2. A lake with 365 partitions and 1,000 commits: status time as a ratio to
   one `ingest` of a small batch into that lake.
Prints medians and ratios; writes bench/out/status.json.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

from benchlib import OUT, lake_of_batches


def timed(cmd, reps):
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def lake_for(evlake, events, days):
    lake, truth = lake_of_batches(evlake, events, days, f"status-lake-{events}")
    return lake, len(truth["batches"])


def many_commits_lake(evlake, commits=1000, partitions=365):
    lake = os.path.join(OUT, f"status-lake-{partitions}p-{commits}c")
    src = os.path.join(OUT, f"small-batches-{commits}")
    done = os.path.join(lake, ".complete")
    if os.path.exists(done):
        return lake, src
    subprocess.run(["rm", "-rf", lake, src], check=True)
    os.makedirs(src)
    for i in range(commits + 3):
        day = i % partitions
        lines = []
        for k in range(10):
            ts = 1704067200 + day * 86400 + k * 600 + i  # from 2024-01-01
            lines.append(json.dumps({"event_id": f"e{i}-{k}", "event_type": "page_view", "user_id": f"u{k}",
                                     "event_timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))}))
        with open(os.path.join(src, f"b{i:05d}.jsonl"), "w") as f:
            f.write("\n".join(lines) + "\n")
    for i in range(commits):
        subprocess.run([evlake, "--lake", lake, "ingest", os.path.join(src, f"b{i:05d}.jsonl"),
                        "--processing-time", "2025-01-02T00:00:00Z"], check=True, stderr=subprocess.DEVNULL)
    open(done, "w").close()
    return lake, src


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--evlake", required=True)
    ap.add_argument("--sizes", default="1000000,5000000")
    ap.add_argument("--days", type=int, default=30)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    result = {"sizes": {}}
    print(f"\nstatus on lakes with the same number of commits ({args.days}), median of 9")
    for n in sizes:
        lake, commits = lake_for(args.evlake, n, args.days)
        t = timed([args.evlake, "--lake", lake, "status", "--json"], 9)
        result["sizes"][n] = {"seconds": t, "commits": commits}
        print(f"  {n:>9,} events, {commits} commits: status {t * 1000:7.1f} ms")
    small, big = sizes[0], sizes[-1]
    ratio = result["sizes"][big]["seconds"] / result["sizes"][small]["seconds"]
    print(f"  ratio {big:,} / {small:,} events: {ratio:.2f}x (1.00 = does not grow with bronze size)")
    result["size_ratio"] = ratio

    lake, src = many_commits_lake(args.evlake)
    t_status = timed([args.evlake, "--lake", lake, "status", "--json"], 9)
    ingest_times = []
    for i in range(1000, 1003):
        # Ingest into a copy, so the measured lake stays at 1,000 commits.
        scratch = lake + "-scratch"
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.copytree(lake, scratch)
        t = time.perf_counter()
        subprocess.run([args.evlake, "--lake", scratch, "ingest", os.path.join(src, f"b{i:05d}.jsonl"),
                        "--processing-time", "2025-01-02T00:00:00Z"], check=True, stderr=subprocess.DEVNULL)
        ingest_times.append(time.perf_counter() - t)
        shutil.rmtree(scratch)
    t_ingest = statistics.median(ingest_times)
    print(f"\n365 partitions, 1,000 commits: status {t_status * 1000:.1f} ms, "
          f"one small ingest {t_ingest * 1000:.1f} ms, ratio status/ingest {t_status / t_ingest:.2f}")
    result.update(many_commits_status_s=t_status, small_ingest_s=t_ingest, status_to_ingest=t_status / t_ingest)
    with open(os.path.join(OUT, "status.json"), "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
