"""Partition and archive benchmark (bench/partitions.sh), on one server, in one run:

- collect throughput into a day-partitioned collection against the same collection plain
  (single-event `collect` calls from CLIENTS clients for SECONDS, and `collect_batch` of
  BATCH events), fsync on and off, as ratios of the plain rate measured in the same run;
- archiving one day of EVENTS events (archive_now) against `COPY (SELECT …) TO` a CSV
  file of the same partition: rows/s, MB/s, and the Parquet file's size against the
  partition's on-disk size.

    python3 bench/partitions.py PORT   (EVENTS, CLIENTS, SECONDS, BATCH override defaults;
                                        ONLY=archive skips the collect part)
"""

import os
import sys
import threading
import time

import psycopg

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 55433
EVENTS = int(os.environ.get("EVENTS", "1000000"))
CLIENTS = int(os.environ.get("CLIENTS", "4"))
SECONDS = float(os.environ.get("SECONDS", "10"))
BATCH = int(os.environ.get("BATCH", "1000"))
DB = "partbench"
EVENT = '{"url": "/p/%d", "price": %d.5, "quantity": %d, "country": "c%d", "tags": ["a", "b"]}'


def connect(db=DB):
    return psycopg.connect(host="127.0.0.1", port=PORT, user="postgres", dbname=db, autocommit=True)


def setup():
    with connect("postgres") as c:
        exists = c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB,)).fetchone()
    if exists:
        with connect() as c:
            c.execute("SELECT beacon.drop_project(name) FROM beacon.projects")
    with connect("postgres") as c:
        c.execute(f"DROP DATABASE IF EXISTS {DB}")
        c.execute(f"CREATE DATABASE {DB}")
    with connect() as c:
        c.execute("CREATE EXTENSION pg_beacon")
        c.execute("SELECT beacon.create_project('pb')")
        declared = '{"url": "text", "price": "double precision", "quantity": "bigint", "country": "text", "tags": "text[]"}'
        c.execute("SELECT beacon.define_collection('pb', 'plain', %s)", (declared,))
        c.execute("SELECT beacon.partition_collection('pb', 'parted', 'day')")
        c.execute("SELECT beacon.define_collection('pb', 'parted', %s)", (declared,))


def single_events(collection, seconds):
    done = [0] * CLIENTS
    stop = time.time() + seconds

    def client(k):
        with connect() as c:
            i = 0
            while time.time() < stop:
                c.execute("SELECT beacon.collect('pb', %s, %s::jsonb)", (collection, EVENT % (i, i % 100, i % 7, i % 20)))
                i += 1
            done[k] = i

    threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / seconds


def batches(collection, rounds=20):
    events = ",".join(
        '{"collection": "%s", "properties": %s}' % (collection, EVENT % (i, i % 100, i % 7, i % 20)) for i in range(BATCH)
    )
    with connect() as c:
        t0 = time.time()
        for _ in range(rounds):
            c.execute("SELECT beacon.collect_batch('pb', %s::jsonb)", ("[" + events + "]",))
        return rounds * BATCH / (time.time() - t0)


def collect_ratios():
    results = {}
    for fsync in ("on", "off"):
        with connect() as c:
            c.execute(f"ALTER SYSTEM SET fsync = {fsync}")
            c.execute(f"ALTER SYSTEM SET synchronous_commit = {fsync}")
            c.execute("SELECT pg_reload_conf()")
        rates = {"plain": [], "parted": []}
        batch_rates = {"plain": [], "parted": []}
        for _ in range(2):
            for collection in ("plain", "parted"):
                rates[collection].append(single_events(collection, SECONDS / 2))
                batch_rates[collection].append(batches(collection))
        single = {k: max(v) for k, v in rates.items()}
        batch = {k: max(v) for k, v in batch_rates.items()}
        results[fsync] = (single, batch)
        print(
            f"fsync {fsync}: collect plain {single['plain']:.0f} ev/s, partitioned {single['parted']:.0f} ev/s = "
            f"{single['parted'] / single['plain']:.2f} x; collect_batch plain {batch['plain']:.0f} ev/s, "
            f"partitioned {batch['parted']:.0f} ev/s = {batch['parted'] / batch['plain']:.2f} x",
            flush=True,
        )
    with connect() as c:
        c.execute("ALTER SYSTEM RESET fsync")
        c.execute("ALTER SYSTEM RESET synchronous_commit")
        c.execute("SELECT pg_reload_conf()")
    return results


def archive():
    day = "2026-01-15"
    with connect() as c:
        c.execute("SELECT beacon.partition_collection('pb', 'old', 'day')")
        c.execute("SELECT beacon.collect('pb', 'old', %s::jsonb)",
                  ('{"url": "x", "price": 1.5, "quantity": 1, "country": "c", "tags": ["a"], "meta": {"k": 1}, "_time": "%sT00:00:00Z"}' % day,))
        c.execute(
            f"""INSERT INTO pb.old (_time, _user, url, price, quantity, country, tags, meta)
                SELECT timestamptz '{day}' + (i % 86400000) * interval '1 millisecond', 'u' || (i % 50000),
                       '/p/' || (i % 5000), (i % 1000) / 4.0, i % 7, 'c' || (i % 20), ARRAY['a', 'b' || (i % 3)],
                       jsonb_build_object('k', i % 10, 's', 'v' || (i % 100))
                  FROM generate_series(2, {EVENTS}) i"""
        )
        c.execute("VACUUM ANALYZE pb.old")
        part = c.execute("SELECT partition, bytes FROM beacon.partitions WHERE collection = 'old' AND lower = %s", (day,)).fetchone()
        name, part_bytes = part
        rows = c.execute(f"SELECT count(*) FROM pb.{name}").fetchone()[0]
        csv = "/tmp/partbench_copy.csv"
        t0 = time.time()
        c.execute(f"COPY (SELECT * FROM pb.{name}) TO '{csv}' WITH (FORMAT csv)")
        copy_s = time.time() - t0
        csv_bytes = os.path.getsize(csv)
        os.remove(csv)
        t0 = time.time()
        archived = c.execute("SELECT beacon.archive_now('pb', 'old', %s::timestamptz + interval '1 day')", (day,)).fetchone()[0]
        archive_s = time.time() - t0
        file_bytes = int(c.execute("SELECT sum(bytes) FROM beacon.archives WHERE collection = 'old'").fetchone()[0])
    assert archived == rows, (archived, rows)
    print(f"archive: {rows} events of one day, partition {part_bytes / 1e6:.1f} MB on disk")
    print(f"  COPY TO csv: {copy_s:.2f} s = {rows / copy_s:.0f} rows/s, {part_bytes / 1e6 / copy_s:.1f} MB/s of partition "
          f"(csv {csv_bytes / 1e6:.1f} MB)")
    print(f"  archive_now: {archive_s:.2f} s = {rows / archive_s:.0f} rows/s, {part_bytes / 1e6 / archive_s:.1f} MB/s of partition "
          f"(parquet {file_bytes / 1e6:.1f} MB = {file_bytes / part_bytes:.3f} x the partition, {file_bytes / csv_bytes:.3f} x the csv); "
          f"{copy_s / archive_s:.2f} x COPY's rate")

if __name__ == "__main__":
    setup()
    if os.environ.get("ONLY") != "archive":
        collect_ratios()
    archive()
