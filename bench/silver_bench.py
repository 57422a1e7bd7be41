#!/usr/bin/env python3
"""Silver benchmark: sessionization, evlake vs DuckDB, and incremental vs full.

On a lake built from generated batches (default 1M events over 60 days):
1. `evlake silver --full` vs DuckDB's equivalent window query (dedup + LAG /
   CASE / running SUM + session rows, written as partitioned Parquet) on the
   same bronze files, alternating x3; medians, ratio and peak RSS. evlake
   also writes the five typed tables: DuckDB runs twice, writing events and
   sessions only (duckdb_silver.sql), and then also the typed tables
   (+ duckdb_typed.sql), for a ratio at equal work.
2. Incremental: a late batch of 2,000 events on 3 old dates (a different
   batch each rep), then `evlake silver`; ratio to the full rebuild.
3. `silver --full` under a small `--memory-limit` (default 256M): it spills
   instead of failing; time and peak RSS.
4. The same output, checked after the incremental runs and again after the
   spilling rebuild: after `evlake gold`, DuckDB's silver and gold SQL
   (duckdb_silver.sql, duckdb_gold.sql, written independently of evlake's)
   run once more on the same bronze, and every event's (date, session_id),
   every session row and every daily_metrics row (but late_events and the
   lateness p99, which DuckDB's bronze cannot know) must be equal; the
   bench fails otherwise.
Writes bench/out/silver-<events>.json.
"""
import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
import uuid

from benchlib import HERE, OUT, lake_of_batches, run, run_duckdb

GAP_US = 30 * 60 * 1_000_000


def late_batch(path, truth, rep, users, n=2000):
    """n events for existing users on 3 old dates, arriving after the rest."""
    dates = sorted(truth["partitions"])
    rng = random.Random(rep)
    picked = sorted(rng.sample(dates[1:-1], 3))
    with open(path, "w") as f:
        for i in range(n):
            d = picked[i % 3]
            ts = f"{d}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}Z"
            f.write(json.dumps({
                "event_id": str(uuid.UUID(int=rng.getrandbits(128))),
                "event_type": rng.choice(["page_view", "page_view", "search", "purchase"]),
                "event_timestamp": ts,
                "user_id": f"u{rng.randrange(users)}",
                "page_url": "https://shop.example.com/late",
                "properties": {"order_id": f"late-{rep}-{i}", "amount": "9.99", "currency": "USD",
                               "product_id": "p1", "query_text": "lamp", "result_count": 3},
            }) + "\n")
    return picked


def same_output(evlake, lake, silver_sql):
    """Bring gold up to date, run DuckDB's silver and gold SQL on the lake's
    bronze, and compare (exit if anything differs). Returns the row counts.
    DuckDB runs in a child process, as everywhere in the benches: a child's
    peak RSS (wait4) counts its parent's at the fork, so a parent that had
    run DuckDB itself would inflate every later evlake measurement."""
    run([evlake, "--lake", lake, "gold"])
    out = os.path.join(OUT, "silver-duckdb-check")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    job = {"lake": lake, "out": out, "silver": silver_sql.replace("{out_dir}", out),
           "gold": open(os.path.join(HERE, "duckdb_gold.sql")).read().replace("{out_dir}", out)}
    p = subprocess.run([sys.executable, "-c", COMPARE], input=json.dumps(job), capture_output=True, text=True)
    shutil.rmtree(out, ignore_errors=True)
    if p.returncode != 0:
        sys.exit(p.stderr)
    return json.loads(p.stdout.splitlines()[-1])


# Run by same_output in a child: DuckDB's SQL, then both directions of
# EXCEPT ALL for each table.
COMPARE = """
import json, sys, duckdb
job = json.load(sys.stdin)
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
con.execute(job["silver"])
con.execute(job["gold"])
table = lambda root, name: f"read_parquet('{root}/{name}/*/*.parquet', hive_partitioning = true)"
checks = {
    "events": ("silver", "events", "event_id, CAST(event_date AS DATE), session_id"),
    "sessions": ("silver", "sessions", "session_id, user_id, CAST(session_date AS DATE), session_start, "
                 "session_end, duration_us, event_count, is_bounce, landing_page, exit_page, converted"),
    "days": ("gold", "daily_metrics", "CAST(event_date AS DATE), events, users, sessions, bounce_sessions, "
             "avg_session_duration_s, converted_sessions, conversion_rate, purchases, revenue, signups"),
}
counts, bad = {}, []
for key, (layer, name, cols) in checks.items():
    ours, theirs = table(job["lake"] + "/" + layer, name), table(job["out"], name)
    counts[key] = con.execute(f"SELECT count(*) FROM {ours}").fetchone()[0]
    for a, b, who in ((ours, theirs, "only evlake"), (theirs, ours, "only DuckDB")):
        diff = con.execute(f"SELECT {cols} FROM {a} EXCEPT ALL SELECT {cols} FROM {b} LIMIT 3").fetchall()
        if diff:
            bad.append(f"{name}, {who}: {diff}")
if bad:
    sys.exit("evlake's output differs from DuckDB's SQL on the same bronze:\\n  " + "\\n  ".join(bad))
print(json.dumps(counts))
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--evlake", required=True)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--users", type=int, default=20000, help="as generated (evlake generate's default)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--small-memory", default="512M")
    args = ap.parse_args()

    lake, truth = lake_of_batches(args.evlake, args.events, args.days, f"silver-lake-{args.events}-{args.days}d")
    # Start from a lake whose silver exists, so every rep replaces the same.
    run([args.evlake, "--lake", lake, "silver", "--full"])
    bronze_glob = os.path.join(lake, "bronze", "events", "*", "*.parquet")
    sql = open(os.path.join(HERE, "duckdb_silver.sql")).read()
    typed_sql = open(os.path.join(HERE, "duckdb_typed.sql")).read()
    events = truth["totals"]["events"]

    def evlake_full():
        return run([args.evlake, "--lake", lake, "silver", "--full"])

    def duckdb_full(typed=False):
        out = os.path.join(OUT, "silver-duckdb")
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        script = (sql.replace("{bronze_glob}", bronze_glob).replace("{out_dir}", out)
                  .replace("{gap_us}", str(GAP_US))
                  .replace("{dedup_order}", "processing_time, batch_id, source_line"))
        if typed:
            script += "\n" + typed_sql.replace("{out_dir}", out)
        t = run_duckdb(script)
        shutil.rmtree(out, ignore_errors=True)
        return t

    results = {"evlake": [], "duckdb": [], "duckdb_typed": [], "incremental": []}
    for rep in range(args.reps):
        for name, fn in (("evlake", evlake_full), ("duckdb", duckdb_full),
                         ("duckdb_typed", lambda: duckdb_full(typed=True))):
            secs, rss = fn()
            results[name].append({"seconds": secs, "peak_rss": rss})
            print(f"  run {rep + 1} {name:11s} {secs:7.2f} s  peak RSS {rss / 2**20:7.0f} MiB", file=sys.stderr)
    for rep in range(args.reps):
        batch = os.path.join(OUT, f"silver-late-{rep}.jsonl")
        # A new batch every time (the lake is kept between invocations, and
        # re-ingesting the same content would be a no-op).
        dates = late_batch(batch, truth, f"{rep}-{time.time_ns()}", args.users)
        run([args.evlake, "--lake", lake, "ingest", batch, "--processing-time", f"2030-01-{rep + 1:02d}T00:00:00Z"])
        secs, rss = run([args.evlake, "--lake", lake, "silver"])
        log_dir = os.path.join(lake, "_evlake", "log")
        last = json.load(open(sorted(os.path.join(log_dir, f) for f in os.listdir(log_dir)
                                     if not f.endswith(".checkpoint.json"))[-1]))
        if last["operation"] != "silver":
            sys.exit("the incremental silver run did not commit")
        results["incremental"].append({"seconds": secs, "peak_rss": rss, "dates": dates})
        print(f"  run {rep + 1} incremental {secs:7.2f} s  peak RSS {rss / 2**20:7.0f} MiB  (late on {', '.join(dates)})",
              file=sys.stderr)
    duck_sql = (sql.replace("{bronze_glob}", bronze_glob).replace("{gap_us}", str(GAP_US))
                .replace("{dedup_order}", "processing_time, batch_id, source_line"))
    same = same_output(args.evlake, lake, duck_sql)  # as the incremental runs left it
    small_secs, small_rss = run([args.evlake, "--lake", lake, "silver", "--full", "--memory-limit", args.small_memory])
    same_output(args.evlake, lake, duck_sql)  # as the spilling rebuild wrote it
    print(f"  --full --memory-limit {args.small_memory}: {small_secs:7.2f} s  peak RSS {small_rss / 2**20:7.0f} MiB",
          file=sys.stderr)

    import duckdb
    med = {k: statistics.median(r["seconds"] for r in v) for k, v in results.items()}
    rss = {k: max(r["peak_rss"] for r in v) / 2**20 for k, v in results.items()}
    print(f"\nsilver (sessionization) of {events:,} events over {args.days} days, median of {args.reps}, "
          f"{os.cpu_count()} cores, duckdb {duckdb.__version__}")
    print(f"  evlake silver --full      {med['evlake']:7.2f} s  {events / med['evlake']:10,.0f} ev/s  "
          f"peak RSS {rss['evlake']:6.0f} MiB")
    print(f"  duckdb window query       {med['duckdb']:7.2f} s  {events / med['duckdb']:10,.0f} ev/s  "
          f"peak RSS {rss['duckdb']:6.0f} MiB")
    print(f"  duckdb + the typed tables {med['duckdb_typed']:7.2f} s  {events / med['duckdb_typed']:10,.0f} ev/s  "
          f"peak RSS {rss['duckdb_typed']:6.0f} MiB")
    ratio = med["duckdb"] / med["evlake"]
    ratio_typed = med["duckdb_typed"] / med["evlake"]
    print(f"  speedup (DuckDB time / evlake time): {ratio:.2f}x vs events + sessions only; "
          f"{ratio_typed:.2f}x vs the same seven tables")
    inc = med["incremental"] / med["evlake"]
    print(f"  incremental after a late batch on 3 of {args.days} days: {med['incremental']:.2f} s = "
          f"{inc:.3f} of --full (goal <= 0.100)")
    print(f"  --full under --memory-limit {args.small_memory}: {small_secs:.2f} s, peak RSS {small_rss / 2**20:.0f} MiB")
    print(f"  same output as DuckDB's SQL: {same['events']:,} events (date, session_id), {same['sessions']:,} "
          f"sessions, {same['days']} daily_metrics rows: identical")
    summary = {"events": events, "days": args.days, "median_seconds": med, "peak_rss_mib": rss,
               "speedup": ratio, "speedup_same_tables": ratio_typed, "incremental_ratio": inc,
               "small_memory": {"limit": args.small_memory, "seconds": small_secs, "peak_rss_mib": small_rss / 2**20},
               "same_output": same, "runs": results}
    with open(os.path.join(OUT, f"silver-{args.events}.json"), "w") as f:
        json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
