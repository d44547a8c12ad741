"""DuckDB's side of ops/bench/compare.sh: runs one SQL query over one Parquet file each time it
reads a line on stdin, and answers "SECONDS ROWS", timed inside this process (no process start).

Usage: duckdb_query.py FILE.parquet SQL   (the SQL names the file as the view `persons`)
"""

import sys
import time

import duckdb

path, sql = sys.argv[1], sys.argv[2]
con = duckdb.connect()
quoted = path.replace("'", "''")
con.execute(f"CREATE VIEW persons AS SELECT * FROM read_parquet('{quoted}')")
for _ in sys.stdin:
    start = time.perf_counter()
    rows = con.execute(sql).fetchall()
    took = time.perf_counter() - start
    print(f"{took:.6f} {len(rows)}", flush=True)
