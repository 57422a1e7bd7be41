#!/usr/bin/env python3
"""Reads an evlake lake with DuckDB, pyarrow and Polars, as an outside tool would.

Usage: interop.py LAKE EXPECTED_JSON|- [TABLES_JSON [EVLAKE_BIN]]
Checks the bronze schema (standard types: UTC microsecond timestamps,
strings, booleans, int64) and the row count per event_date against
EXPECTED_JSON ({"2024-03-15": 196, ...}; `-`: not checked). With TABLES_JSON
({"silver/events": 368, ...}), also reads each of those tables whole
(every column decoded) with each reader, checks its row count and its
types (UTC microsecond timestamps, decimals for money). With EVLAKE_BIN,
also the values each reader decodes against `evlake query`'s: every
timestamp column's min and max in epoch microseconds and every decimal
column's exact sum. Exits non-zero on any mismatch.
"""
import json
import os
import subprocess
import sys

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from spark_check import evlake_aggregates, same_value  # noqa: E402 (the repo's tools/)

lake, expected_path = sys.argv[1], sys.argv[2]
expected = json.load(open(expected_path)) if expected_path != "-" else {}
glob = f"{lake}/bronze/events/**/*.parquet"
failures = []

con = duckdb.connect()
if expected_path != "-":
    # DuckDB, with nothing but hive_partitioning=true.
    rows = con.execute(
        f"SELECT CAST(event_date AS VARCHAR), count(*) FROM read_parquet('{glob}', hive_partitioning=true) GROUP BY 1 ORDER BY 1"
    ).fetchall()
    got = {d: n for d, n in rows}
    if got != expected:
        failures.append(f"duckdb counts {got} != expected {expected}")
    types = dict(
        con.execute(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet('{glob}', hive_partitioning=true))").fetchall()
    )
    want_duck = {
        "event_id": "VARCHAR", "event_type": "VARCHAR", "user_id": "VARCHAR",
        "event_timestamp": "TIMESTAMP WITH TIME ZONE", "processing_time": "TIMESTAMP WITH TIME ZONE",
        "client_session_id": "VARCHAR", "page_url": "VARCHAR", "source_system": "VARCHAR",
        "properties": "VARCHAR", "extra": "VARCHAR", "batch_id": "VARCHAR", "is_late": "BOOLEAN",
        "source_file": "VARCHAR", "source_line": "BIGINT",
    }
    for col, t in want_duck.items():
        if types.get(col) != t:
            failures.append(f"duckdb: column {col} is {types.get(col)}, expected {t}")
    if "event_date" not in types:
        failures.append("duckdb: event_date partition column missing")
    # properties keep their token text: a JSON number 19.99 reads back as 19.99.
    amount = con.execute(
        f"SELECT json_extract(properties, '$.amount')::VARCHAR FROM read_parquet('{glob}', hive_partitioning=true) WHERE event_type='purchase' AND properties LIKE '%\"o9\"%'"
    ).fetchall()
    if amount and amount[0][0] != "19.99":
        failures.append(f"duckdb: purchase o9 amount reads as {amount[0][0]}")

    # pyarrow's dataset reader with hive partitioning.
    dataset = ds.dataset(f"{lake}/bronze/events", format="parquet", partitioning="hive")
    table = dataset.to_table()
    ts = table.schema.field("event_timestamp").type
    if ts != pa.timestamp("us", tz="UTC"):
        failures.append(f"pyarrow: event_timestamp is {ts}")
    counts = {}
    for d in table.column("event_date").to_pylist():
        counts[str(d)] = counts.get(str(d), 0) + 1
    if counts != expected:
        failures.append(f"pyarrow counts {counts} != expected {expected}")

    # Polars, with nothing but hive_partitioning=True.
    frame = pl.scan_parquet(f"{lake}/bronze/events/**/*.parquet", hive_partitioning=True).collect()
    for col in ("event_timestamp", "processing_time"):
        if frame.schema[col] != pl.Datetime("us", "UTC"):
            failures.append(f"polars: {col} is {frame.schema[col]}")
    if frame.schema.get("event_date") != pl.Date:
        failures.append(f"polars: event_date is {frame.schema.get('event_date')}")
    counts = {str(d): n for d, n in frame.group_by("event_date").len().iter_rows()}
    if counts != expected:
        failures.append(f"polars counts {counts} != expected {expected}")

# Silver and gold, as built (full, patched, appended and rewritten files).
tables = json.load(open(sys.argv[3])) if len(sys.argv) > 3 else {}
# With EVLAKE_BIN: what evlake's columns are, to compare decoded values.
listed = {}
if len(sys.argv) > 4:
    out = subprocess.run([sys.argv[4], "--lake", lake, "tables", "--format", "json"],
                         check=True, capture_output=True).stdout
    # JSON Lines: one table per line.
    listed = {t["directory"]: t for t in map(json.loads, out.splitlines())}
decimals = {
    "silver/purchases": {"amount": (18, 2)},
    "silver/ledger": {"amount": (18, 2)},
    "gold/daily_metrics": {"revenue": (18, 2), "avg_session_duration_s": (18, 3)},
    "gold/daily_revenue_by_currency": {"revenue": (18, 2)},
}
for table, want in tables.items():
    path = f"{lake}/{table}"
    try:
        # hash() of each whole row decodes every column of every file.
        n, _ = con.execute(
            f"SELECT count(*), sum(hash(t)) FROM (SELECT * FROM read_parquet('{path}/**/*.parquet', hive_partitioning=true)) t"
        ).fetchall()[0]
    except Exception as e:  # noqa: BLE001 - report any reader failure
        failures.append(f"duckdb: {table}: {e}")
        n = None
    if n is not None and n != want:
        failures.append(f"duckdb: {table} has {n} rows, evlake says {want}")
    try:
        t = ds.dataset(path, format="parquet", partitioning="hive").to_table()
    except Exception as e:  # noqa: BLE001
        failures.append(f"pyarrow: {table}: {e}")
        continue
    if t.num_rows != want:
        failures.append(f"pyarrow: {table} has {t.num_rows} rows, evlake says {want}")
    for field in t.schema:
        if pa.types.is_timestamp(field.type) and field.type != pa.timestamp("us", tz="UTC"):
            failures.append(f"pyarrow: {table}.{field.name} is {field.type}")
    for col, (p, s) in decimals.get(table, {}).items():
        got = t.schema.field(col).type
        if got != pa.decimal128(p, s):
            failures.append(f"pyarrow: {table}.{col} is {got}, expected decimal128({p}, {s})")
    try:
        f = pl.scan_parquet(f"{path}/**/*.parquet", hive_partitioning=True).collect()
    except Exception as e:  # noqa: BLE001
        failures.append(f"polars: {table}: {e}")
        continue
    if f.height != want:
        failures.append(f"polars: {table} has {f.height} rows, evlake says {want}")
    for name, dtype in f.schema.items():
        if isinstance(dtype, pl.Datetime) and dtype != pl.Datetime("us", "UTC"):
            failures.append(f"polars: {table}.{name} is {dtype}")
    for col, (p, s) in decimals.get(table, {}).items():
        if f.schema[col] != pl.Decimal(p, s):
            failures.append(f"polars: {table}.{col} is {f.schema[col]}, expected Decimal({p}, {s})")
    if table not in listed:
        continue
    # The values each reader decoded (from the tables read above), against
    # evlake's: timestamp ranges in epoch microseconds, exact decimal sums.
    want = evlake_aggregates(sys.argv[4], lake, listed[table], kinds=("Timestamp", "Decimal128"))
    stamps = {c for c, agg, _ in want if agg != "sum"}
    duck = con.execute(
        "SELECT " + ", ".join(f"{agg}(epoch_us(\"{c}\"))" if c in stamps else f"{agg}(\"{c}\")"
                              for c, agg, _ in want)
        + f" FROM read_parquet('{path}/**/*.parquet', hive_partitioning=true)").fetchall()[0]
    arrow_vals = [pc.min_max(t[c])[agg].value if c in stamps else pc.sum(t[c]).as_py()
                  for c, agg, _ in want]
    polars_vals = f.select([getattr(pl.col(c).dt.epoch("us") if c in stamps else pl.col(c), agg)()
                            .alias(f"{agg}_{c}") for c, agg, _ in want]).row(0)
    for reader, got in (("duckdb", duck), ("pyarrow", arrow_vals), ("polars", polars_vals)):
        for (c, agg, w), g in zip(want, got):
            if not same_value(g, w):
                failures.append(f"{reader}: {table} {agg}({c}) is {g}, evlake's is {w}")

# `query --format parquet`: an export each reader takes with its types.
if listed and tables.get("gold/daily_metrics"):
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        out = f"{d}/daily.parquet"
        with open(out, "wb") as fh:
            subprocess.run([sys.argv[4], "--lake", lake, "query", "SELECT * FROM daily_metrics",
                            "--format", "parquet"], check=True, stdout=fh)
        want = tables["gold/daily_metrics"]
        t = pq.read_table(out)
        n = con.execute(f"SELECT count(*) FROM read_parquet('{out}')").fetchall()[0][0]
        f = pl.read_parquet(out)
        if (t.num_rows, n, f.height) != (want,) * 3:
            failures.append(f"query --format parquet: {t.num_rows}/{n}/{f.height} rows, not {want}")
        if t.schema.field("revenue").type != pa.decimal128(18, 2) or f.schema["revenue"] != pl.Decimal(18, 2):
            failures.append(f"query --format parquet: revenue is {t.schema.field('revenue').type}")
        if t.schema.field("event_date").type != pa.date32():
            failures.append(f"query --format parquet: event_date is {t.schema.field('event_date').type}")

if failures:
    print("\n".join(failures))
    sys.exit(1)
print(f"interop ok: {sum(expected.values())} rows in {len(expected)} partitions, {len(tables)} derived tables (duckdb {duckdb.__version__}, pyarrow {pa.__version__}, polars {pl.__version__})")
