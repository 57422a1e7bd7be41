#!/usr/bin/env python3
"""Pipeline benchmark: the whole job, evlake vs DuckDB, and a late batch.

1. Full pipeline on generated batches (default 1M events over 30 days):
   `evlake run <all batches>` (ingest + silver + gold, three commits) vs
   DuckDB running bench/duckdb_ingest.sql, duckdb_silver.sql and
   duckdb_gold.sql (NDJSON -> bronze -> events + sessions -> daily
   metrics, all Parquet) in one process; and DuckDB again with
   duckdb_typed.sql added (the five typed tables evlake's run also
   writes), for a ratio at equal work. Alternating x3, medians, ratios,
   peak RSS.
2. A late batch: 20,000 events, 18,000 on a new day and 2,000 late across 3
   old dates. evlake's incremental `run` of it vs evlake's full recompute
   (`silver --full` + `gold --full`) and vs DuckDB redoing the whole
   pipeline with the batch added. Ratios; the goal is <= 1/20 of a full
   recompute.
3. An input taken back: the middle batch (ingested in the same run as the
   others, so its rows share every file of their dates) retracted, then
   `run`, vs DuckDB redoing the whole pipeline without it.
4. A day's erasure requests: 10 users erased (`evlake erase`, their rows
   in every file of the dates they were on), then `run`, vs DuckDB redoing
   the whole pipeline from inputs without their lines.
`--full-only` runs part 1 alone: `--events 100000 --days 3650 --full-only`
is a backfill of ten years, where a write's cost per date shows.
Writes bench/out/pipeline-<events>.json (pipeline-<events>-<days>d.json for
another span than 30 days).
"""
import argparse
import json
import os
import random
import shutil
import statistics
import sys
import uuid

from benchlib import HERE, OUT, generated, run, run_duckdb

GAP_US = 30 * 60 * 1_000_000


def late_batch(path, truth, users, seed):
    """18,000 events on the day after the last, 2,000 on 3 old dates."""
    dates = sorted(truth["partitions"])
    rng = random.Random(seed)
    old = sorted(rng.sample(dates[1:-2], 3))
    last = dates[-1]
    y, m, d = (int(x) for x in last.split("-"))
    import datetime
    new = (datetime.date(y, m, d) + datetime.timedelta(days=1)).isoformat()
    with open(path, "w") as f:
        for i in range(20_000):
            day = old[i % 3] if i < 2000 else new
            ts = f"{day}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}Z"
            f.write(json.dumps({
                "event_id": str(uuid.UUID(int=rng.getrandbits(128))),
                "event_type": rng.choice(["page_view", "page_view", "search", "purchase"]),
                "event_timestamp": ts,
                "user_id": f"u{rng.randrange(users)}",
                "page_url": "https://shop.example.com/late",
                "properties": {"order_id": f"late-{i}", "amount": "9.99", "currency": "USD",
                               "product_id": "p1", "query_text": "lamp", "result_count": 3},
            }) + "\n")
    return old, new


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--evlake", required=True)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--users", type=int, default=20000, help="as generated (evlake generate's default)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--full-only", action="store_true",
                    help="only part 1, the full pipeline (a backfill: e.g. --days 3650)")
    args = ap.parse_args()

    gen, truth = generated(args.evlake, args.events, args.days)
    batches = os.path.join(gen, "batches")
    events = truth["totals"]["events"]
    last_pt = truth["batches"][-1]["processing_time"]
    sqls = {name: open(os.path.join(HERE, f"duckdb_{name}.sql")).read() for name in ("ingest", "silver", "typed", "gold")}
    lake = os.path.join(OUT, "pipeline-evlake")
    duck = os.path.join(OUT, "pipeline-duckdb")
    late_dir = os.path.join(OUT, "pipeline-late")
    os.makedirs(late_dir, exist_ok=True)
    late_file = os.path.join(late_dir, "late.jsonl")
    old_dates, new_date = late_batch(late_file, truth, args.users, args.events)

    def duck_script(inputs_glob, typed):
        out = duck
        return ";\n".join([
            sqls["ingest"].replace("{input_glob}", inputs_glob).replace("{out_dir}", os.path.join(out, "bronze")),
            sqls["silver"].replace("{bronze_glob}", os.path.join(out, "bronze", "*", "*.parquet"))
                          .replace("{out_dir}", out).replace("{gap_us}", str(GAP_US))
                          .replace("{dedup_order}", "processing_time, source_file"),
        ] + ([sqls["typed"].replace("{out_dir}", out)] if typed else []) + [
            sqls["gold"].replace("{out_dir}", out),
        ])

    def duckdb_full(inputs_glob, typed=False):
        shutil.rmtree(duck, ignore_errors=True)
        os.makedirs(duck)
        return run_duckdb(duck_script(inputs_glob, typed))

    def evlake_full():
        shutil.rmtree(lake, ignore_errors=True)
        return run([args.evlake, "--lake", lake, "run", batches, "--processing-time", last_pt,
                    "--max-bad-fraction", "1"])

    results = {"evlake": [], "duckdb": [], "duckdb_typed": [], "late_evlake": [], "late_evlake_full": [],
               "late_duckdb": [], "retract_evlake": [], "retract_duckdb": [],
               "erase_evlake": [], "erase_duckdb": []}
    glob = os.path.join(batches, "*.jsonl")
    for rep in range(args.reps):
        for name, fn in (("evlake", evlake_full), ("duckdb", lambda: duckdb_full(glob)),
                         ("duckdb_typed", lambda: duckdb_full(glob, typed=True))):
            secs, rss = fn()
            results[name].append({"seconds": secs, "peak_rss": rss})
            print(f"  run {rep + 1} {name:17s} {secs:7.2f} s  peak RSS {rss / 2**20:7.0f} MiB", file=sys.stderr)

    # The late batch, on a lake built by the full run (rebuilt each rep).
    shutil.copy(late_file, os.path.join(late_dir, "late-copy.jsonl"))
    for rep in range(0 if args.full_only else args.reps):
        evlake_full()
        secs, rss = run([args.evlake, "--lake", lake, "run", late_file, "--processing-time", "2030-01-01T00:00:00Z"])
        results["late_evlake"].append({"seconds": secs, "peak_rss": rss})
        s1, r1 = run([args.evlake, "--lake", lake, "silver", "--full"])
        s2, r2 = run([args.evlake, "--lake", lake, "gold", "--full"])
        results["late_evlake_full"].append({"seconds": s1 + s2, "peak_rss": max(r1, r2)})
        # DuckDB recomputes everything: the original batches plus the late one.
        # (Rebuilt every time: a directory kept from a run of another size
        # would point at other batches.)
        both = os.path.join(OUT, "pipeline-all-inputs")
        shutil.rmtree(both, ignore_errors=True)
        os.makedirs(both)
        for f in os.listdir(batches):
            os.symlink(os.path.join(batches, f), os.path.join(both, f))
        os.symlink(late_file, os.path.join(both, "zz-late.jsonl"))
        ds, dr = duckdb_full(os.path.join(both, "*.jsonl"))
        results["late_duckdb"].append({"seconds": ds, "peak_rss": dr})
        print(f"  run {rep + 1} late batch: evlake run {secs:6.2f} s, evlake full recompute {s1 + s2:6.2f} s, "
              f"duckdb everything {ds:6.2f} s", file=sys.stderr)
        # An input taken back (the middle batch, ingested by mistake):
        # `evlake retract` then `run`, vs DuckDB recomputing everything
        # without it.
        gone = sorted(f for f in os.listdir(batches) if f.endswith(".jsonl"))
        gone = gone[len(gone) // 2]
        t1, q1 = run([args.evlake, "--lake", lake, "retract", os.path.join(batches, gone),
                      "--processing-time", "2030-01-02T00:00:00Z"])
        t2, q2 = run([args.evlake, "--lake", lake, "run", "--processing-time", "2030-01-02T00:00:00Z"])
        results["retract_evlake"].append({"seconds": t1 + t2, "retract_seconds": t1,
                                          "peak_rss": max(q1, q2)})
        os.remove(os.path.join(both, gone))
        ds, dr = duckdb_full(os.path.join(both, "*.jsonl"))
        results["retract_duckdb"].append({"seconds": ds, "peak_rss": dr})
        print(f"  run {rep + 1} retract {gone}: evlake retract {t1:6.2f} s + run {t2:6.2f} s, "
              f"duckdb everything without it {ds:6.2f} s", file=sys.stderr)
        # A day's erasure requests: 10 users' rows taken out, then `run`,
        # vs DuckDB recomputing everything from inputs without their lines
        # (the copies are written outside the timing).
        who = [f"u{u}" for u in random.Random(rep).sample(range(args.users), 10)]
        t1, q1 = run([args.evlake, "--lake", lake, "erase", *sum((["--user", u] for u in who), []),
                      "--processing-time", "2030-01-03T00:00:00Z"])
        t2, q2 = run([args.evlake, "--lake", lake, "run", "--processing-time", "2030-01-03T00:00:00Z"])
        results["erase_evlake"].append({"seconds": t1 + t2, "erase_seconds": t1,
                                        "peak_rss": max(q1, q2)})
        marks = [f'"{k}":"{u}"'.encode() for u in who for k in ("user_id", "actor_id")]
        kept = os.path.join(OUT, "pipeline-erased-inputs")
        shutil.rmtree(kept, ignore_errors=True)
        os.makedirs(kept)
        for f in os.listdir(both):
            with open(os.path.join(both, f), "rb") as src, open(os.path.join(kept, f), "wb") as dst:
                dst.writelines(l for l in src if not any(m in l for m in marks))
        ds, dr = duckdb_full(os.path.join(kept, "*.jsonl"))
        results["erase_duckdb"].append({"seconds": ds, "peak_rss": dr})
        print(f"  run {rep + 1} erase 10 users: evlake erase {t1:6.2f} s + run {t2:6.2f} s, "
              f"duckdb everything without them {ds:6.2f} s", file=sys.stderr)
        shutil.rmtree(kept, ignore_errors=True)
    shutil.rmtree(duck, ignore_errors=True)

    import duckdb
    med = {k: statistics.median(r["seconds"] for r in v) for k, v in results.items() if v}
    rss = {k: max(r["peak_rss"] for r in v) / 2**20 for k, v in results.items() if v}
    print(f"\nfull pipeline (ingest + sessions + daily metrics) of {events:,} events over {args.days} days, "
          f"median of {args.reps}, {os.cpu_count()} cores, duckdb {duckdb.__version__}")
    print(f"  evlake run                {med['evlake']:7.2f} s  peak RSS {rss['evlake']:6.0f} MiB")
    print(f"  duckdb (3 scripts)        {med['duckdb']:7.2f} s  peak RSS {rss['duckdb']:6.0f} MiB")
    print(f"  duckdb + the typed tables {med['duckdb_typed']:7.2f} s  peak RSS {rss['duckdb_typed']:6.0f} MiB")
    speedup = med["duckdb"] / med["evlake"]
    speedup_typed = med["duckdb_typed"] / med["evlake"]
    print(f"  speedup (DuckDB time / evlake time): {speedup:.2f}x (goal >= 1.00); "
          f"{speedup_typed:.2f}x when DuckDB also writes the five typed tables evlake writes")
    summary = {"events": events, "days": args.days, "median_seconds": med, "peak_rss_mib": rss,
               "speedup": speedup, "speedup_same_tables": speedup_typed, "runs": results}
    name = f"pipeline-{args.events}.json" if args.days == 30 else f"pipeline-{args.events}-{args.days}d.json"
    if args.full_only:
        with open(os.path.join(OUT, name), "w") as f:
            json.dump(summary, f, indent=2)
        return
    print(f"late batch (20,000 events, 2,000 late on {', '.join(old_dates)}; 18,000 on {new_date}):")
    print(f"  evlake run (incremental)  {med['late_evlake']:7.2f} s  peak RSS {rss['late_evlake']:6.0f} MiB")
    print(f"  evlake full recompute     {med['late_evlake_full']:7.2f} s")
    print(f"  duckdb everything again   {med['late_duckdb']:7.2f} s")
    r1 = med["late_evlake"] / med["late_evlake_full"]
    r2 = med["late_evlake"] / med["late_duckdb"]
    print(f"  incremental / evlake full recompute: {r1:.3f}; incremental / DuckDB recompute: {r2:.3f} (goal <= 0.050)")
    print("an input taken back (the middle batch):")
    retract_only = statistics.median(r["retract_seconds"] for r in results["retract_evlake"])
    print(f"  evlake retract + run      {med['retract_evlake']:7.2f} s  peak RSS {rss['retract_evlake']:6.0f} MiB"
          f"  (retract alone {retract_only:.2f} s)")
    print(f"  duckdb everything without it {med['retract_duckdb']:4.2f} s")
    r3 = med["retract_evlake"] / med["retract_duckdb"]
    print(f"  retract + run / DuckDB recompute: {r3:.3f}")
    print("a day's erasure requests (10 users):")
    erase_only = statistics.median(r["erase_seconds"] for r in results["erase_evlake"])
    print(f"  evlake erase + run        {med['erase_evlake']:7.2f} s  peak RSS {rss['erase_evlake']:6.0f} MiB"
          f"  (erase alone {erase_only:.2f} s)")
    print(f"  duckdb everything without them {med['erase_duckdb']:4.2f} s")
    r4 = med["erase_evlake"] / med["erase_duckdb"]
    print(f"  erase + run / DuckDB recompute: {r4:.3f}")
    summary.update({"late_vs_full": r1, "late_vs_duckdb": r2, "retract_vs_duckdb": r3,
                    "erase_vs_duckdb": r4, "late_dates": old_dates})
    with open(os.path.join(OUT, name), "w") as f:
        json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
