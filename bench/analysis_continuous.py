"""Continuous funnels and retention: reading them against the on-demand functions, and
what one continuous funnel costs collect.

On the data of bench/analysis.py (1M events of 3 collections over 50,000 users across 30
days): a 3-step funnel with a 1-day window and 30-day daily retention, created as
continuous analyses (async); the time to read each for the whole range and for one week,
against beacon.funnel / beacon.retention with the same arguments (best of ROUNDS after a
warm-up; the answers are checked to be equal). Then beacon.collect_batch throughput
(batches of BATCH events of the 3 collections, random users and times) into a project
without analyses, with one continuous funnel in async mode, and in immediate mode.

    python3 bench/analysis_continuous.py PORT   (bench/analysis_continuous.sh calls this)
"""

import json
import os
import random
import sys
import time

sys.argv = sys.argv[:2]
import importlib.util

spec = importlib.util.spec_from_file_location("analysis_data", os.path.join(os.path.dirname(__file__), "analysis.py"))
source = open(spec.origin).read().rsplit("\nmain()", 1)[0]
data = {}
exec(compile(source, spec.origin, "exec"), data)

ROUNDS = data["ROUNDS"]
FROM, TO = data["FROM"], data["TO"]
WEEK = ("2024-01-10 00:00+00", "2024-01-17 00:00+00")
WRITES = int(os.environ.get("WRITES", "100000"))
BATCH = int(os.environ.get("BATCH", "1000"))
STEPS = '[{"collection": "view_product"}, {"collection": "add_to_cart"}, {"collection": "purchase"}]'
FIRST, RETURNING = '{"collection": "view_product"}', '{"collection": "purchase"}'


def best(run):
    return data["best"](run)


def reads(db):
    t0 = time.perf_counter()
    db.execute(f"SELECT beacon.create_continuous_funnel('shop', 'f', '{STEPS}', interval '1 day')")
    funnel_created = time.perf_counter() - t0
    t0 = time.perf_counter()
    db.execute(f"SELECT beacon.create_continuous_retention('shop', 'r', '{FIRST}', '{RETURNING}', 'day')")
    retention_created = time.perf_counter() - t0
    print(f"created (backfill of 1M events): funnel {funnel_created:.1f} s, retention {retention_created:.1f} s")
    # what autovacuum does soon after a large insert: the visibility map lets the funnel's
    # reads be index-only scans
    db.execute("VACUUM (ANALYZE) shop._ca_f, shop._ca_r")
    print(f"{'question':<22}{'on demand':>12}{'continuous':>12}{'speed-up':>10}")
    for label, (f, t) in [("30 days", (FROM, TO)), ("one week", WEEK)]:
        for kind, on_demand, continuous in [
            (
                "funnel",
                f"SELECT * FROM beacon.funnel('shop', '{STEPS}', interval '1 day', '{f}', '{t}')",
                f"SELECT * FROM beacon.continuous_funnel('shop', 'f', '{f}', '{t}')",
            ),
            (
                "retention",
                f"SELECT * FROM beacon.retention('shop', '{FIRST}', '{RETURNING}', 'day', '{f}', '{t}')",
                f"SELECT * FROM beacon.continuous_retention('shop', 'r', '{f}', '{t}')",
            ),
        ]:
            od_time, od_rows = best(lambda: db.execute(on_demand).fetchall())
            c_time, c_rows = best(lambda: db.execute(continuous).fetchall())
            same = od_rows == c_rows
            print(
                f"{kind + ', ' + label:<22}{od_time * 1000:>10.1f}ms{c_time * 1000:>10.1f}ms{od_time / c_time:>9.0f}x"
                + ("" if same else "   RESULTS DIFFER")
            )


def batches(seed):
    rng = random.Random(seed)
    names = list(data["SHARES"])
    out = []
    for _ in range(WRITES // BATCH):
        events = []
        for _ in range(BATCH):
            c = rng.choices(names, weights=list(data["SHARES"].values()))[0]
            events.append(
                {
                    "collection": c,
                    "properties": {
                        "_user": f"w{rng.randrange(50000)}",
                        "_time": f"2024-01-{1 + rng.randrange(30):02d}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:00Z",
                        "price": rng.randrange(10000) / 100,
                        "category": f"c{rng.randrange(20)}",
                    },
                }
            )
        out.append(json.dumps(events))
    return out


def writes(db):
    work = batches(7)
    print(f"collect_batch, {WRITES} events in batches of {BATCH} (best of {ROUNDS}):")
    rates = {}
    for setting in ["none", "async", "immediate"]:
        results = []
        for _ in range(ROUNDS):
            db.execute("SELECT beacon.drop_project('w') FROM beacon.projects WHERE name = 'w'")
            db.execute("SELECT beacon.create_project('w')")
            for name in data["SHARES"]:
                db.execute(
                    f"SELECT beacon.define_collection('w', '{name}', "
                    "'{\"price\": \"double precision\", \"category\": \"text\"}')"
                )
                db.execute(f"CREATE INDEX ON w.{name} (_user, _time)")
            if setting != "none":
                db.execute(
                    f"SELECT beacon.create_continuous_funnel('w', 'f', '{STEPS}', interval '1 day', mode => '{setting}')"
                )
            db.execute("CHECKPOINT")
            t0 = time.perf_counter()
            for events in work:
                db.execute("SELECT beacon.collect_batch('w', %s::jsonb)", (events,))
            results.append(WRITES / (time.perf_counter() - t0))
        rates[setting] = max(results)
        print(
            f"  {'without analyses' if setting == 'none' else 'one continuous funnel, ' + setting:<40}"
            f"{rates[setting]:>10.0f} events/s  {rates[setting] / rates['none']:.2f} x"
        )
    # the async funnel's pending users, rebuilt by the worker, agree with the on-demand one
    db.execute("SELECT beacon.refresh_continuous_analysis('w')")
    same = db.execute(
        f"SELECT (SELECT array_agg(f::text) FROM beacon.continuous_funnel('w', 'f', '{FROM}', '{TO}') f) = "
        f"(SELECT array_agg(f::text) FROM beacon.funnel('w', '{STEPS}', interval '1 day', '{FROM}', '{TO}') f)"
    ).fetchone()[0]
    print(f"  last run's continuous funnel equals beacon.funnel: {same}")


db = data["setup"]()
db.execute("SET statement_timeout = 0")
db.execute("SET TimeZone = 'UTC'")
db.execute("SET beacon.query_timeout = '10min'")
print(f"events: {data['EVENTS']} in 3 collections, {data['USERS']} users, 30 days; best of {ROUNDS} after a warm-up")
reads(db)
writes(db)
