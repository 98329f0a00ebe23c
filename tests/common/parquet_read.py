#!/usr/bin/env python3
"""Reads a Parquet file pg_beacon archived with two readers pg_beacon did not write, pyarrow
and DuckDB, and prints what each saw, for src/collect/archive/tests.rs to compare with the
table it archived.

    parquet_read.py FILE   the file
    parquet_read.py DIR    DIR/*/*.parquet, Hive-partitioned (DuckDB read_parquet with
                           hive_partitioning = true, pyarrow datasets with hive partitioning)

Output, one line each, tab-separated:
    schema  {"leaves": [{"path", "physical", "logical"}...], "duckdb": {column: type}}
    pyarrow {row}
    duckdb  {row}
Rows are canonical JSON in the form PostgreSQL's to_jsonb gives (with TimeZone = UTC):
numbers as numbers (NaN and infinities as the strings PostgreSQL writes), timestamps as
ISO 8601 strings without trailing zeros ("infinity" for the values DuckDB reads as such),
columns Parquet annotates as JSON parsed, bytes as "\\x…" hex. Keys are sorted.
"""

import decimal
import glob
import json
import math
import os
import struct
import sys

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

I64_MAX = 2**63 - 1
I32_MAX = 2**31 - 1


class Raw(str):
    """A number kept as the exact text the reader gave."""


def civil(days):
    # Howard Hinnant's civil_from_days, as src/collect/archive/types.rs
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (1 if month <= 2 else 0), month, day


def iso_date(days):
    year, month, day = civil(days)
    bc = year <= 0
    return "%04d-%02d-%02d" % (1 - year if bc else year, month, day), bc


def timestamp(micros, utc):
    if micros == I64_MAX:
        return "infinity"
    if micros <= -I64_MAX:
        return "-infinity"
    days, in_day = divmod(micros, 86400 * 10**6)
    date, bc = iso_date(days)
    secs, frac = divmod(in_day, 10**6)
    out = "%sT%02d:%02d:%02d" % (date, secs // 3600, secs // 60 % 60, secs % 60)
    if frac:
        out += "." + ("%06d" % frac).rstrip("0")
    if utc:
        out += "+00:00"
    return out + (" BC" if bc else "")


def date(days):
    if days == I32_MAX:
        return "infinity"
    if days <= -I32_MAX:
        return "-infinity"
    text, bc = iso_date(days)
    return text + (" BC" if bc else "")


def float_number(value, single):
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if not single:
        return Raw(repr(value))
    # the shortest text that reads back as the same float32, as PostgreSQL prints it
    for digits in range(1, 10):
        text = "%.*g" % (digits, value)
        if struct.unpack("f", struct.pack("f", float(text)))[0] == value:
            return Raw(text)
    return Raw(repr(value))


def plain_type(t):
    """The type a column is cast to before to_pylist: timestamps and dates as integers,
    which keeps values Python's datetime cannot hold (infinities, years past 9999)."""
    if pa.types.is_timestamp(t):
        return pa.int64()
    if pa.types.is_date32(t):
        return pa.int32()
    if pa.types.is_list(t):
        return pa.list_(plain_type(t.value_type))
    if isinstance(t, pa.ExtensionType):
        return t.storage_type
    return t


def render(t, value, is_json):
    if value is None:
        return None
    if isinstance(t, pa.ExtensionType):
        t = t.storage_type
    if pa.types.is_timestamp(t):
        return timestamp(value, t.tz is not None)
    if pa.types.is_date32(t):
        return date(value)
    if pa.types.is_list(t):
        return [render(t.value_type, v, is_json) for v in value]
    if pa.types.is_floating(t):
        return float_number(value, pa.types.is_float32(t))
    if pa.types.is_decimal(t):
        return Raw(format(value, "f"))
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "\\x" + value.hex()
    if isinstance(value, str) and is_json:
        return json.loads(value, parse_float=Raw, parse_int=Raw)
    return value


def dump(value):
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(dump(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(dump(k) + ":" + dump(value[k]) for k in sorted(value)) + "}"
    if isinstance(value, decimal.Decimal):
        return format(value, "f")
    raise TypeError(type(value))


def rows(table, json_columns):
    columns = {}
    for name, column in zip(table.column_names, table.columns):
        t = column.type
        values = column.cast(plain_type(t)).to_pylist()
        columns[name] = [render(t, v, name in json_columns) for v in values]
    for i in range(table.num_rows):
        yield {name: values[i] for name, values in columns.items()}


def main(target):
    if os.path.isdir(target):
        files = sorted(glob.glob(os.path.join(target, "*", "*.parquet")))
        if not files:
            sys.exit("no %s/*/*.parquet" % target)
        first = files[0]
        pa_table = ds.dataset(target, format="parquet", partitioning="hive").to_table()
        source = "read_parquet(%s, hive_partitioning = true)" % (
            "'" + os.path.join(target, "*", "*.parquet").replace("'", "''") + "'"
        )
    else:
        first = target
        pa_table = pq.read_table(target)
        # a single file is read alone, even under a date=… directory
        source = "read_parquet('%s', hive_partitioning = false)" % target.replace("'", "''")

    schema = pq.ParquetFile(first).schema
    leaves = []
    json_columns = set()
    for i in range(len(schema)):
        column = schema.column(i)
        logical = str(column.logical_type)
        leaves.append(
            {"path": column.path, "physical": column.physical_type, "logical": logical}
        )
        if logical == "JSON":
            json_columns.add(column.path.split(".")[0])

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    duck_types = {name: kind for name, kind, *_ in con.execute("DESCRIBE SELECT * FROM " + source).fetchall()}
    relation = con.sql("SELECT * FROM " + source)
    # DuckDB 2 renamed arrow() to to_arrow_table()
    duck_table = relation.to_arrow_table() if hasattr(relation, "to_arrow_table") else relation.arrow()

    out = sys.stdout
    out.write("schema\t" + json.dumps({"leaves": leaves, "duckdb": duck_types}, sort_keys=True) + "\n")
    for reader, table in (("pyarrow", pa_table), ("duckdb", duck_table)):
        for row in rows(table, json_columns):
            out.write(reader + "\t" + dump(row) + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
