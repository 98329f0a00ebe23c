#!/usr/bin/env python3
"""Writes the same N events two ways: as beacon.collect_batch calls (batches of B) and as
CSV rows of the equivalent typed columns for COPY. Deterministic, so runs compare."""
import csv, json, random, sys

n, batch, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rng = random.Random(42)
countries = ["c%02d" % i for i in range(50)]

def event(i):
    return {
        "url": "/product/%d" % rng.randrange(10000),
        "price": round(rng.uniform(1, 500), 2),
        "quantity": rng.randrange(1, 10),
        "logged_in": rng.random() < 0.5,
        "at": "2026-11-%02dT%02d:%02d:%02dZ" % (1 + i % 28, i % 24, i % 60, (i * 7) % 60),
        "country": rng.choice(countries),
        "score": rng.random(),
        "tags": ["t%d" % rng.randrange(20), "t%d" % rng.randrange(20)],
        "meta": {"ab": rng.choice(["a", "b"]), "v": rng.randrange(3)},
        "referrer": rng.choice(["google", "direct", "newsletter", "ad"]),
        "_user": "u%d" % rng.randrange(5000),
    }

columns = ["url", "price", "quantity", "logged_in", "at", "country", "score", "tags", "meta", "referrer", "_user"]
events = [event(i) for i in range(n)]
with open(out + ".sql", "w") as sql:
    for start in range(0, n, batch):
        payload = [{"collection": "pageview", "properties": e} for e in events[start:start + batch]]
        sql.write("SELECT beacon.collect_batch('bench', $j$%s$j$);\n" % json.dumps(payload, separators=(",", ":")))
with open(out + ".csv", "w", newline="") as f:
    w = csv.writer(f)
    for e in events:
        row = []
        for c in columns:
            v = e[c]
            if c == "tags":
                v = "{" + ",".join(v) + "}"
            elif c == "meta":
                v = json.dumps(v)
            elif isinstance(v, bool):
                v = "t" if v else "f"
            row.append(v)
        w.writerow(row)
print(",".join(columns))
