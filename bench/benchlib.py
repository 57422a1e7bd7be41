"""Shared helpers of the benchmark scripts: timed child runs with peak RSS,
generated inputs and lakes built from them (cached in bench/out/)."""
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "out")


def run(cmd, env=None):
    """Run a child; return (seconds, peak RSS bytes). Fails loudly.

    Dirty pages of whatever ran before (a lake just rebuilt, a directory
    just removed) are written back first, so their writeback does not land
    in this child's time, whichever tool it is."""
    os.sync()
    start = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    elapsed = time.perf_counter() - start
    err = p.stderr.read().decode(errors="replace")
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        sys.exit(f"command failed ({p.returncode}): {' '.join(cmd)}\n{err}")
    return elapsed, usage.ru_maxrss * 1024


# The DuckDB child: its own clock around connect + execute (+ fetch), so
# the time compared is DuckDB's work, not Python starting and importing
# the duckdb package (~0.3 s on the 2-core machine: 8% of a 1M ingest,
# a third of the state benchmark's query, all in evlake's favour).
DUCKDB_CHILD = """
import sys, time
import duckdb
start = time.perf_counter()
result = duckdb.connect().execute(sys.argv[1])
if sys.argv[2] == "fetch":
    result.fetchall()
print(time.perf_counter() - start)
"""


def run_duckdb(sql, fetch=False):
    """Run `sql` in DuckDB in a child Python; return (seconds DuckDB took,
    as the child timed it, peak RSS bytes of the child). Fails loudly."""
    os.sync()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.Popen([sys.executable, "-c", DUCKDB_CHILD, sql, "fetch" if fetch else "run"],
                             stdout=out, stderr=err)
        _, status, usage = os.wait4(p.pid, 0)
        out.seek(0)
        err.seek(0)
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"duckdb failed:\n{err.read().decode(errors='replace')}")
        return float(out.read().decode().split()[-1]), usage.ru_maxrss * 1024


def generated(evlake, events, days):
    """bench/out/gen-<events>[-<days>d]: `evlake generate` output (cached)."""
    name = f"gen-{events}" if days == 30 else f"gen-{events}-{days}d"
    gen = os.path.join(OUT, name)
    if not os.path.exists(os.path.join(gen, "truth.json")):
        print(f"generating {events:,} events over {days} days into {gen} ...", file=sys.stderr)
        subprocess.run([evlake, "generate", "--events", str(events), "--days", str(days), "--out", gen],
                       check=True, stderr=subprocess.DEVNULL)
    return gen, json.load(open(os.path.join(gen, "truth.json")))


def lake_of_batches(evlake, events, days, name):
    """A lake with every generated batch ingested in arrival order, each with
    its own processing time (so late events are flagged), cached."""
    gen, truth = generated(evlake, events, days)
    lake = os.path.join(OUT, name)
    done = os.path.join(lake, ".complete")
    if not os.path.exists(done):
        print(f"ingesting {len(truth['batches'])} batches into {lake} ...", file=sys.stderr)
        subprocess.run(["rm", "-rf", lake], check=True)
        for b in truth["batches"]:
            subprocess.run([evlake, "--lake", lake, "ingest", os.path.join(gen, "batches", b["file"]),
                            "--processing-time", b["processing_time"], "--max-bad-fraction", "1"],
                           check=True, stderr=subprocess.DEVNULL)
        open(done, "w").close()
    return lake, truth
