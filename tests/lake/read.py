"""Reads a Delta table back through two readers that cloudmigrate did not write, and prints
what each sees as JSON: {"columns": [...], "duckdb": [[...], ...], "deltalake": [[...], ...]}.

    python3 read.py TABLE_URL [STORAGE_OPTIONS_JSON]

Values are printed as text in one canonical form, so that the engine tests compare them with
the source's: integers and decimals as plain numbers (no trailing zeros), timestamps in UTC as
`YYYY-MM-DD HH:MM:SS.ffffff`, dates as `YYYY-MM-DD`, binary as hex, booleans as true/false;
floats stay JSON numbers, NULL is null. DuckDB (with its delta extension) reads file:// tables,
and s3:// ones through its httpfs extension with the storage options as an S3 secret (given a
connection string with Azurite's port, DuckDB 1.5.5's delta extension still asked port 10000,
so az:// is left to deltalake);
the deltalake package reads every table through its own engine (QueryBuilder), which applies
column mapping (its to_pyarrow_table() does not, and returns nulls)."""

import datetime
import decimal
import glob
import json
import os
import sys

url = sys.argv[1]
options = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}


def canonical(v):
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return v
    if isinstance(v, decimal.Decimal):
        text = format(v, "f")
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        return "0" if text in ("-0", "") else text
    if isinstance(v, datetime.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        return v.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(v, datetime.date):
        return v.isoformat()
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).hex()
    return str(v)


def rows_of(table):
    columns = table.column_names
    data = [table.column(c).to_pylist() for c in columns]
    return columns, [[canonical(col[i]) for col in data] for i in range(table.num_rows)]


result = {}

import deltalake
import pyarrow

dt = deltalake.DeltaTable(url, storage_options=options or None)
arrow = pyarrow.table(deltalake.QueryBuilder().register("t", dt).execute("SELECT * FROM t").read_all())
result["columns"], result["deltalake"] = rows_of(arrow)
result["version"] = dt.version()

if url.startswith(("file://", "/", "s3://")):
    import duckdb
    import duckdb_extension_delta
    import duckdb_extension_httpfs

    con = duckdb.connect()
    for module, name in [(duckdb_extension_httpfs, "httpfs"), (duckdb_extension_delta, "delta")]:
        ext = glob.glob(os.path.join(os.path.dirname(module.__file__), "extensions", "*", f"{name}.duckdb_extension"))[0]
        con.execute(f"LOAD '{ext}'")
    if url.startswith("s3://"):
        endpoint = options["endpoint"]
        con.execute(
            "CREATE SECRET lake (TYPE s3, KEY_ID ?, SECRET ?, ENDPOINT ?, URL_STYLE 'path', USE_SSL ?, REGION ?)",
            [
                options["access_key_id"],
                options["secret_access_key"],
                endpoint.split("://", 1)[-1],
                endpoint.startswith("https://"),
                options.get("region", "us-east-1"),
            ],
        )
    path = url[len("file://"):] if url.startswith("file://") else url
    arrow = con.execute("SELECT * FROM delta_scan(?)", [path]).to_arrow_table()
    columns, result["duckdb"] = rows_of(arrow)
    if columns != result["columns"]:
        sys.exit(f"the readers see different columns: duckdb {columns}, deltalake {result['columns']}")

json.dump(result, sys.stdout)
