"""DuckDB's extract of the same table, for bench/run.sh: DuckDB 1.4.4 with its
postgres extension (from the duckdb-ext-postgres wheel, no download) copies
`SELECT * FROM pg.public.t` to a Parquet file.

    python duckdb_copy.py 'host=... port=... dbname=postgres user=postgres' out.parquet

Prints the wall seconds of the COPY and this process's peak RSS in MB.
"""

import resource
import sys
import time

import duckdb
import duckdb_ext

dsn, out = sys.argv[1], sys.argv[2]
con = duckdb_ext.init(duckdb.connect())
con.execute("LOAD postgres")
con.execute(f"ATTACH '{dsn}' AS pg (TYPE postgres, READ_ONLY)")
started = time.monotonic()
con.execute(f"COPY (SELECT * FROM pg.public.t) TO '{out}' (FORMAT parquet)")
seconds = time.monotonic() - started
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{seconds:.3f} {peak_mb:.0f}")
