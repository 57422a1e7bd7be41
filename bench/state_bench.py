#!/usr/bin/env python3
"""State benchmark: `state balances --as-of` the last day, from a snapshot of
the day before vs a full replay, and the full replay vs DuckDB's SUM ...
GROUP BY over the same bronze.

On a lake built from generated batches (default 5M events over 60 days)
and brought up to date with `evlake run`: a snapshot of `balances` at the
end of the second-to-last day, then (median of 5 each) the snapshot answer,
the full replay (--no-snapshot) and DuckDB's query. Checks the two evlake
answers are equal. Writes bench/out/state-<events>.json.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from benchlib import OUT, lake_of_batches, run, run_duckdb

DUCKDB_SQL = """
SELECT json_extract_string(properties, '$.account_id') AS account_id,
       SUM(CASE event_type
             WHEN 'deposit' THEN TRY_CAST(json_extract_string(properties, '$.amount') AS DECIMAL(18, 2))
             WHEN 'withdrawal' THEN -TRY_CAST(json_extract_string(properties, '$.amount') AS DECIMAL(18, 2))
             ELSE TRY_CAST(json_extract_string(properties, '$.amount_delta') AS DECIMAL(18, 2))
           END) AS balance
FROM read_parquet('{glob}', hive_partitioning = true)
WHERE event_type IN ('deposit', 'withdrawal', 'correction')
  AND event_timestamp <= TIMESTAMPTZ '{as_of}'
GROUP BY 1
"""


def timed(cmd, reps):
    times, out = [], None
    for _ in range(reps):
        t = time.perf_counter()
        p = subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t)
        out = p.stdout
    return statistics.median(times), out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--evlake", required=True)
    ap.add_argument("--events", type=int, default=5_000_000)
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()

    lake, truth = lake_of_batches(args.evlake, args.events, args.days, f"state-lake-{args.events}-{args.days}d")
    run([args.evlake, "--lake", lake, "run"])  # silver + gold up to date
    days = sorted(d for d, p in truth["partitions"].items() if p["events"] > 1000)
    last, before = days[-1], days[-2]
    run([args.evlake, "--lake", lake, "snapshot", "balances", "--as-of", before])
    ev = [args.evlake, "--lake", lake, "state", "balances", "--as-of", last, "--json"]
    snap_s, snap_out = timed(ev, args.reps)
    full_s, full_out = timed(ev + ["--no-snapshot"], args.reps)
    snap, full = json.loads(snap_out), json.loads(full_out)
    assert snap["snapshot"] is not None, snap["snapshot"]
    assert full["snapshot"] is None
    if snap["rows"] != full["rows"]:
        sys.exit("the snapshot answer differs from the full replay")
    glob = os.path.join(lake, "bronze", "events", "*", "*.parquet")
    sql = DUCKDB_SQL.format(glob=glob, as_of=f"{last} 23:59:59.999999+00")
    duck_s = statistics.median(run_duckdb(sql, fetch=True)[0] for _ in range(args.reps))

    import duckdb
    print(f"\nstate balances --as-of {last} on {truth['totals']['events']:,} events over {args.days} days "
          f"({len(full['rows']):,} accounts), median of {args.reps}, duckdb {duckdb.__version__}")
    print(f"  from the snapshot of {before} ({snap['events_replayed']:,} events replayed): {snap_s:6.3f} s")
    print(f"  full replay ({full['events_replayed']:,} ledger events):                 {full_s:6.3f} s")
    print(f"  duckdb SUM ... GROUP BY over bronze:                       {duck_s:6.3f} s")
    print(f"  full replay / snapshot: {full_s / snap_s:.1f}x (goal >= 10x); "
          f"full replay / DuckDB: {full_s / duck_s:.2f}")
    summary = {"events": truth["totals"]["events"], "days": args.days, "as_of": last, "snapshot_as_of": before,
               "snapshot_seconds": snap_s, "full_replay_seconds": full_s, "duckdb_seconds": duck_s,
               "speedup_vs_full": full_s / snap_s, "full_vs_duckdb": full_s / duck_s,
               "events_replayed_snapshot": snap["events_replayed"], "events_replayed_full": full["events_replayed"]}
    with open(os.path.join(OUT, f"state-{args.events}.json"), "w") as f:
        json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
