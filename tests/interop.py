#!/usr/bin/env python3
"""Reads an evlake lake with DuckDB and pyarrow, as an outside tool would.

Usage: interop.py LAKE EXPECTED_JSON
Checks the bronze schema (standard types: UTC microsecond timestamps,
strings, booleans, int64) and the row count per event_date against
EXPECTED_JSON ({"2024-03-15": 196, ...}). Exits non-zero on any mismatch.
"""
import json
import sys

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

lake, expected_path = sys.argv[1], sys.argv[2]
expected = json.load(open(expected_path))
glob = f"{lake}/bronze/events/**/*.parquet"
failures = []

# DuckDB, with nothing but hive_partitioning=true.
con = duckdb.connect()
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

if failures:
    print("\n".join(failures))
    sys.exit(1)
print(f"interop ok: {sum(expected.values())} rows in {len(expected)} partitions (duckdb {duckdb.__version__}, pyarrow {pa.__version__})")
