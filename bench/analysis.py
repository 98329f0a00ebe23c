"""Analysis benchmark: 1M events of 3 collections over 50,000 users across 30 days.

For a 3-step funnel with a 1-day window, 30-day daily retention, and daily segmentation
broken down by a property, it times pg_beacon's function, the same question as plain SQL the
way a user would write it, and the same plain SQL in DuckDB over the events exported to
Parquet; best of ROUNDS, after one warm-up. Also checks that the three agree.

    python3 bench/analysis.py PORT   (bench/analysis.sh starts the server and calls this)
"""

import os
import sys
import tempfile
import time

import duckdb
import psycopg

PORT = int(sys.argv[1])
EVENTS = int(os.environ.get("EVENTS", "1000000"))
USERS = int(os.environ.get("USERS", "50000"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
SHARES = {"view_product": 0.7, "add_to_cart": 0.2, "purchase": 0.1}
FROM, TO = "2024-01-01 00:00+00", "2024-01-31 00:00+00"


def connect(db):
    return psycopg.connect(f"host=127.0.0.1 port={PORT} user=postgres dbname={db}", autocommit=True)


def setup():
    with connect("postgres") as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = 'beacon_analysis'").fetchone()
        if exists:
            with connect("beacon_analysis") as db:
                db.execute("SELECT beacon.drop_project(name) FROM beacon.projects")
        admin.execute("DROP DATABASE IF EXISTS beacon_analysis")
        admin.execute("CREATE DATABASE beacon_analysis")
    db = connect("beacon_analysis")
    db.execute("CREATE EXTENSION pg_beacon")
    db.execute("SELECT beacon.create_project('shop')")
    db.execute("SELECT setseed(0.42)")
    for name, share in SHARES.items():
        db.execute(
            "SELECT beacon.define_collection('shop', %s, '{\"price\": \"numeric\", \"category\": \"text\"}')",
            (name,),
        )
        db.execute(
            f"""INSERT INTO shop.{name} (_user, _time, price, category)
                SELECT 'u' || (random() * {USERS - 1})::int,
                       timestamptz '{FROM}' + random() * (timestamptz '{TO}' - timestamptz '{FROM}'),
                       round((random() * 100)::numeric, 2), 'c' || (random() * 19)::int
                  FROM generate_series(1, {int(EVENTS * share)})"""
        )
        # what a user running these questions would have: events of a user in time order
        db.execute(f"CREATE INDEX ON shop.{name} (_user, _time)")
        db.execute(f"ANALYZE shop.{name}")
    return db


BEACON = {
    "funnel": f"""SELECT step, users FROM beacon.funnel('shop',
        '[{{"collection": "view_product"}}, {{"collection": "add_to_cart"}}, {{"collection": "purchase"}}]',
        interval '1 day', '{FROM}', '{TO}') ORDER BY step""",
    "retention": f"""SELECT count(*) FILTER (WHERE users > 0), sum(users) FROM beacon.retention('shop', '{{"collection": "view_product"}}',
        '{{"collection": "purchase"}}', 'day', '{FROM}', '{TO}')""",
    "segmentation": f"""SELECT count(*), sum(value) FROM beacon.segmentation('shop', 'view_product', '"count"',
        'day', '{FROM}', '{TO}', 'category')""",
}

# The same questions as a user writes them: first entry, then the first later event of
# each step within the window; cohorts by first day; counts per day and category.
PLAIN = {
    "funnel": """
        WITH s1 AS (SELECT _user, min(_time) AS t1 FROM {t_view}
                     WHERE _time >= TIMESTAMPTZ '{f}' AND _time < TIMESTAMPTZ '{to}' GROUP BY _user),
             s2 AS (SELECT s1._user, s1.t1, min(c._time) AS t2 FROM s1 JOIN {t_cart} c
                      ON c._user = s1._user AND c._time >= s1.t1 AND c._time <= s1.t1 + INTERVAL '1 day'
                     GROUP BY s1._user, s1.t1),
             s3 AS (SELECT s2._user FROM s2 JOIN {t_buy} p
                      ON p._user = s2._user AND p._time >= s2.t2 AND p._time <= s2.t1 + INTERVAL '1 day'
                     GROUP BY s2._user)
        SELECT 1 AS step, count(*) AS users FROM s1 UNION ALL SELECT 2, count(*) FROM s2
        UNION ALL SELECT 3, count(*) FROM s3 ORDER BY step""",
    "retention": """
        WITH f AS (SELECT _user, min(_time) AS t FROM {t_view}
                    WHERE _time >= TIMESTAMPTZ '{f}' AND _time < TIMESTAMPTZ '{to}' GROUP BY _user),
             r AS (SELECT DISTINCT f._user, CAST(date_trunc('day', f.t AT TIME ZONE 'UTC') AS DATE) AS cohort,
                          CAST(date_trunc('day', p._time AT TIME ZONE 'UTC') AS DATE)
                          - CAST(date_trunc('day', f.t AT TIME ZONE 'UTC') AS DATE) AS n
                     FROM f JOIN {t_buy} p ON p._user = f._user AND p._time >= f.t AND p._time < TIMESTAMPTZ '{to}'),
             c AS (SELECT cohort, n, count(*) AS users FROM r GROUP BY cohort, n)
        SELECT count(*), sum(users) FROM c""",
    "segmentation": """
        SELECT count(*), sum(n) FROM (
          SELECT date_trunc('day', _time AT TIME ZONE 'UTC') AS d, category, count(*) AS n FROM {t_view}
           WHERE _time >= TIMESTAMPTZ '{f}' AND _time < TIMESTAMPTZ '{to}' GROUP BY 1, 2) s""",
}


def best(run):
    run()
    times = []
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - t0)
    return min(times), result


def main():
    db = setup()
    db.execute("SET statement_timeout = 0")
    db.execute("SET TimeZone = 'UTC'")
    db.execute("SET beacon.query_timeout = '10min'")
    work = tempfile.mkdtemp(prefix="beacon-analysis-")
    duck = duckdb.connect()
    duck.execute("SET TimeZone = 'UTC'")
    for name in SHARES:
        csv = os.path.join(work, f"{name}.csv")
        with open(csv, "wb") as out, db.cursor().copy(
            f"COPY (SELECT _user, _time, price, category FROM shop.{name}) TO STDOUT WITH (FORMAT csv, HEADER)"
        ) as copy:
            for chunk in copy:
                out.write(chunk)
        parquet = os.path.join(work, f"{name}.parquet")
        duck.execute(
            f"COPY (SELECT * FROM read_csv('{csv}', header = true, columns = "
            "{'_user': 'VARCHAR', '_time': 'TIMESTAMPTZ', 'price': 'DECIMAL(10,2)', 'category': 'VARCHAR'})) "
            f"TO '{parquet}' (FORMAT parquet)"
        )
    names = {"f": FROM, "to": TO}
    pg_tables = {"t_view": "shop.view_product", "t_cart": "shop.add_to_cart", "t_buy": "shop.purchase"}
    duck_tables = {
        k: f"read_parquet('{os.path.join(work, v.split('.')[1] + '.parquet')}')" for k, v in pg_tables.items()
    }
    print(f"events: {EVENTS} in 3 collections, {USERS} users, 30 days; best of {ROUNDS} after a warm-up")
    print(f"{'question':<14}{'pg_beacon':>12}{'plain SQL':>12}{'DuckDB':>12}{'beacon/DuckDB':>15}{'beacon/plain':>14}")
    for question in BEACON:
        beacon_time, beacon_result = best(lambda: db.execute(BEACON[question]).fetchall())
        plain_sql = PLAIN[question].format(**names, **pg_tables)
        plain_time, plain_result = best(lambda: db.execute(plain_sql).fetchall())
        duck_sql = PLAIN[question].format(**names, **duck_tables)
        duck_time, duck_result = best(lambda: duck.execute(duck_sql).fetchall())
        agree = [tuple(map(float, r)) for r in beacon_result] == [tuple(map(float, r)) for r in plain_result] == [
            tuple(map(float, r)) for r in duck_result
        ]
        print(
            f"{question:<14}{beacon_time * 1000:>10.0f}ms{plain_time * 1000:>10.0f}ms{duck_time * 1000:>10.0f}ms"
            f"{beacon_time / duck_time:>14.2f}x{beacon_time / plain_time:>13.2f}x"
            + ("" if agree else f"   RESULTS DIFFER: {beacon_result} {plain_result} {duck_result}")
        )


main()
