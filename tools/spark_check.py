#!/usr/bin/env python3
"""Reads every Parquet table of an evlake lake with Apache Spark, as a Spark
user would: `spark.read.parquet(DIR)` and nothing else (Hive partitions are
discovered by Spark itself).

Usage: spark_check.py --evlake BIN LAKE

For each table `evlake tables` lists with rows (quarantine excepted: it is
NDJSON), reads it whole (every row collected, so every column of every file
is decoded) and checks:
  - the row count equals evlake's;
  - every column evlake lists is there with the Spark type it maps to
    (Utf8 -> string, Int64 -> bigint, Boolean -> boolean,
    Timestamp(µs, "UTC") -> timestamp, i.e. an instant, Date32 -> date,
    Decimal128(p, s) -> decimal(p,s)), the Hive partition column included;
  - the values decode as evlake's own: each timestamp column's min and max
    in epoch microseconds, each decimal column's exact sum, each date
    column's min and max equal `evlake query`'s.
Also reads the state snapshots (`state/MODEL/as_of=...`). Exits non-zero on
any mismatch. Not part of `make test` (PySpark is ~300 MB and needs Java
17+); `make spark-check` installs it in its own venv and runs this on the
demo lake.
"""
import argparse
import json
import os
import re
import subprocess
import sys

SPARK_TYPE = {
    "Utf8": "string",
    "Int64": "bigint",
    "Boolean": "boolean",
    'Timestamp(µs, "UTC")': "timestamp",
    "Date32": "date",
}


def spark_type(arrow: str) -> str:
    m = re.fullmatch(r"Decimal128\((\d+), (\d+)\)", arrow)
    if m:
        return f"decimal({m.group(1)},{m.group(2)})"
    return SPARK_TYPE.get(arrow, f"<no mapping for {arrow}>")


def evlake_aggregates(evlake, lake, table, kinds=("Timestamp", "Decimal128", "Date32")):
    """`evlake query`'s own aggregates of one table (an entry of `evlake
    tables --format json`), for readers to match: (column, "min"|"max",
    value) per timestamp column (epoch microseconds) and date column (ISO
    text), (column, "sum", value) per decimal column (an exact Decimal).
    Shared with tests/interop.py."""
    from decimal import Decimal

    wanted, exprs = [], []
    for c in table["columns"]:
        name, kind = c["name"], c["type"]
        if not kind.startswith(tuple(kinds)):
            continue
        if kind.startswith("Timestamp"):
            for agg in ("min", "max"):
                wanted.append((name, agg))
                exprs.append(f"{agg}(arrow_cast(\"{name}\", 'Int64'))")
        elif kind.startswith("Decimal128"):
            wanted.append((name, "sum"))
            exprs.append(f"sum(\"{name}\")")
        elif kind == "Date32":
            for agg in ("min", "max"):
                wanted.append((name, agg))
                exprs.append(f"cast({agg}(\"{name}\") as varchar)")
    if not exprs:
        return []
    sql = f"SELECT {', '.join(f'{e} AS v{i}' for i, e in enumerate(exprs))} FROM {table['name']}"
    out = subprocess.run([evlake, "--lake", lake, "query", sql, "--format", "json"],
                         check=True, capture_output=True).stdout
    row = json.loads(out.splitlines()[0], parse_float=Decimal)
    return [(c, agg, row[f"v{i}"]) for i, (c, agg) in enumerate(wanted)]


def same_value(a, b):
    """A reader's aggregate equals evlake's (numbers compared exactly)."""
    from decimal import Decimal

    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, str) or isinstance(b, str):
        return str(a) == str(b)
    return Decimal(str(a)) == Decimal(str(b))


def compare_values(evlake, lake, table, df):
    """The decoded values, not just the types: Spark's aggregates against
    [`evlake_aggregates`]."""
    want = evlake_aggregates(evlake, lake, table)
    if not want:
        return []
    kinds = {c["name"]: c["type"] for c in table["columns"]}
    exprs = [f"unix_micros({agg}(`{c}`))" if kinds[c].startswith("Timestamp")
             else f"cast({agg}(`{c}`) as string)" if kinds[c] == "Date32"
             else f"{agg}(`{c}`)" for c, agg, _ in want]
    got = df.selectExpr(*exprs).collect()[0]
    return [f"{table['name']}: Spark's {expr} is {got[i]}, evlake's is {w}"
            for i, (expr, (_, _, w)) in enumerate(zip(exprs, want)) if not same_value(got[i], w)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--evlake", required=True)
    ap.add_argument("lake")
    args = ap.parse_args()

    listed = [json.loads(line) for line in
              subprocess.run([args.evlake, "--lake", args.lake, "tables", "--format", "json"],
                             check=True, capture_output=True, text=True).stdout.splitlines()]

    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master("local[2]")
             .config("spark.ui.enabled", "false")
             .config("spark.sql.session.timeZone", "UTC")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    failures, read = [], 0
    for t in listed:
        if t["rows"] == 0 or t["name"] == "quarantine":
            continue
        path = os.path.join(args.lake, t["directory"])
        try:
            df = spark.read.parquet(path)
            rows = len(df.collect())
        except Exception as e:  # noqa: BLE001 - report any reader failure
            failures.append(f"{t['name']}: {e}")
            continue
        read += 1
        if rows != t["rows"]:
            failures.append(f"{t['name']}: Spark read {rows} rows, evlake says {t['rows']}")
        got = dict(df.dtypes)
        for c in t["columns"]:
            want = spark_type(c["type"])
            if got.get(c["name"]) != want:
                failures.append(f"{t['name']}.{c['name']}: Spark reads {got.get(c['name'])}, expected {want}")
        failures.extend(compare_values(args.evlake, args.lake, t, df))
        print(f"  {t['name']:27s} {rows:>9,} rows  {len(got)} columns", file=sys.stderr)
    state = os.path.join(args.lake, "state")
    for model in sorted(os.listdir(state)) if os.path.isdir(state) else []:
        if model.startswith((".", "_")):
            continue
        try:
            df = spark.read.parquet(os.path.join(state, model))
            rows = len(df.collect())
        except Exception as e:  # noqa: BLE001
            failures.append(f"state/{model}: {e}")
            continue
        read += 1
        bad = [f"{n} {d}" for n, d in df.dtypes if d.startswith("timestamp_ntz")]
        if bad:
            failures.append(f"state/{model}: local timestamps {bad}")
        print(f"  state/{model:21s} {rows:>9,} rows  {len(df.dtypes)} columns", file=sys.stderr)
    version = spark.version
    spark.stop()
    if failures:
        print("\n".join(failures))
        sys.exit(1)
    if read == 0:
        sys.exit("no table with rows to read")
    print(f"spark ok: {read} tables read whole with Spark {version}: counts, types, timestamp ranges "
          f"and decimal sums as evlake has them")


if __name__ == "__main__":
    main()
