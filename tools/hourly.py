#!/usr/bin/env python3
"""A lake fed by an hourly cron job: how long each `evlake run` takes as
the lake ages. Not a CI test and not part of `make bench` (it has no DuckDB
side); for checking that a run's cost follows its input, not the lake's age.

  python3 tools/hourly.py [EVENTS [DAYS [RUNS_PER_DAY]]]   # default 200000 14 24

`evlake generate` writes one arrival batch per day; each is cut into
RUNS_PER_DAY pieces in order, and each piece is one `evlake run` at its
own processing time (the batch's plus one hour per piece). Prints, per
day, the median and slowest run and the bronze files so far (each run
adds one to every date it touches). EVLAKE=path picks the binary (default:
the release build); HOURLY_DIR the work directory (default
/tmp/evlake-hourly, replaced); HOURLY_COMPACT=N sets `compact_min_files`
(every run then ends by compacting dates with N small files);
HOURLY_RETENTION=DUR sets `[log] retention` (the log then keeps about DUR
of commits; each day's line says how many files and bytes it holds).
"""
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time

TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/evlake-target"))
E = os.environ.get("EVLAKE") or os.path.join(TARGET, "release", "evlake")
ROOT = os.environ.get("HOURLY_DIR", "/tmp/evlake-hourly")


def main():
    args, defaults = sys.argv[1:], [200000, 14, 24]
    events, days, per_day = (int(args[i]) if i < len(args) else defaults[i] for i in range(3))
    shutil.rmtree(ROOT, ignore_errors=True)
    gen, pieces, lake = (os.path.join(ROOT, d) for d in ("gen", "pieces", "lake"))
    os.makedirs(pieces)
    toml = ""
    if os.environ.get("HOURLY_COMPACT"):
        toml += f"[ingest]\ncompact_min_files = {int(os.environ['HOURLY_COMPACT'])}\n"
    if os.environ.get("HOURLY_RETENTION"):
        toml += f"[log]\nretention = {json.dumps(os.environ['HOURLY_RETENTION'])}\n"
    if toml:
        os.makedirs(lake)
        with open(os.path.join(lake, "evlake.toml"), "w") as f:
            f.write(toml)
    subprocess.run([E, "generate", "--events", str(events), "--days", str(days), "--out", gen, "-q"],
                   check=True)
    truth = json.load(open(os.path.join(gen, "truth.json")))
    for day, batch in enumerate(truth["batches"], 1):
        lines = open(os.path.join(gen, "batches", batch["file"]), "rb").read().splitlines(keepends=True)
        start = dt.datetime.fromisoformat(batch["processing_time"].replace("Z", "+00:00"))
        step = len(lines) // per_day + 1
        times = []
        for h in range(per_day):
            f = os.path.join(pieces, f"{batch['file'][:-6]}-{h:02d}.jsonl")
            with open(f, "wb") as out:
                out.writelines(lines[h * step:(h + 1) * step])
            pt = (start + dt.timedelta(hours=h)).strftime("%Y-%m-%dT%H:%M:%SZ")
            t = time.perf_counter()
            p = subprocess.run([E, "--lake", lake, "run", f, "--processing-time", pt,
                                "--max-bad-fraction", "1", "-q"], capture_output=True, text=True)
            times.append(time.perf_counter() - t)
            if p.returncode != 0:
                sys.exit(f"{f}: exit {p.returncode}\n{p.stderr[-3000:]}")
        files = sum(len(fs) for _, _, fs in os.walk(os.path.join(lake, "bronze", "events")))
        log = os.path.join(lake, "_evlake", "log")
        log_files = os.listdir(log)
        log_mb = sum(os.path.getsize(os.path.join(log, f)) for f in log_files) / 1e6
        times.sort()
        print(f"day {day:3}: {per_day} runs of ~{step} lines, median {times[len(times) // 2]:.3f} s, "
              f"slowest {times[-1]:.3f} s, {files} bronze files, log {len(log_files)} files "
              f"{log_mb:.1f} MB", flush=True)


if __name__ == "__main__":
    main()
