"""Document view benchmark (bench/documents.sh): the seed's order model (orders, customers,
payments, items, products, sellers) on one server, in one run:

- writes: transactions of one order and its items (single-row INSERTs, CLIENTS clients),
  into bare tables and into tables with the document view (async, immediate), as ratios of
  the bare rate measured in the same run, with fsync on and off;
- latency: commit -> NOTIFY of the changed document (async: the notification is sent by the
  refresh that stores the document, so this is also commit -> document stored), p50/p99,
  under about RATE item writes per second;
- a product update touching 100 documents (immediate: the statement; async: statement and
  refresh);
- reading one document by key: the view, its defining SQL for that key, and a plain
  materialized view (refreshed in full; refresh time reported).

    python3 bench/documents.py PORT   (ORDERS, CLIENTS, SECONDS, RATE override defaults)
"""

import os
import random
import re
import statistics
import sys
import threading
import time

import psycopg

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 55433
ORDERS = int(os.environ.get("ORDERS", "100000"))
CLIENTS = int(os.environ.get("CLIENTS", "4"))
SECONDS = float(os.environ.get("SECONDS", "15"))
RATE = int(os.environ.get("RATE", "1000"))
DB = "docbench"


def connect(db=DB, autocommit=True):
    return psycopg.connect(host="127.0.0.1", port=PORT, user="postgres", dbname=db, autocommit=autocommit)


SCHEMA = """
CREATE TABLE {s}.customers (customer_id text PRIMARY KEY, customer_unique_id text, customer_zip_code_prefix text,
                            customer_city text, customer_state text);
CREATE TABLE {s}.sellers (seller_id text PRIMARY KEY, seller_zip_code_prefix text, seller_city text, seller_state text);
CREATE TABLE {s}.products (product_id text PRIMARY KEY, product_category_name text, product_name_lenght int,
                           product_description_lenght int, product_photos_qty int, product_weight_g int,
                           product_length_cm int, product_height_cm int, product_width_cm int);
CREATE TABLE {s}.orders (order_id text PRIMARY KEY, customer_id text, order_status text,
                         order_purchase_timestamp timestamptz, order_approved_at timestamptz,
                         order_delivered_carrier_date timestamptz, order_delivered_customer_date timestamptz,
                         order_estimated_delivery_date timestamptz);
CREATE TABLE {s}.order_items (order_id text, order_item_id int, product_id text, seller_id text,
                              shipping_limit_date timestamptz, price numeric, freight_value numeric,
                              PRIMARY KEY (order_id, order_item_id));
CREATE TABLE {s}.order_payments (order_id text, payment_sequential int, payment_type text,
                                 payment_installments int, payment_value numeric,
                                 PRIMARY KEY (order_id, payment_sequential));
CREATE INDEX ON {s}.orders (customer_id);
CREATE INDEX ON {s}.order_items (product_id);
CREATE INDEX ON {s}.order_items (seller_id);
"""

LOAD = """
INSERT INTO {s}.customers SELECT md5('c' || i), md5('u' || i), lpad((i % 99999)::text, 5, '0'),
       'city' || (i % 4000), 'S' || (i % 27) FROM generate_series(1, {customers}) i;
INSERT INTO {s}.sellers SELECT md5('s' || i), lpad((i % 99999)::text, 5, '0'), 'scity' || (i % 600), 'S' || (i % 27)
  FROM generate_series(1, {sellers}) i;
INSERT INTO {s}.products SELECT md5('p' || i), 'cat' || (i % 70), 40 + i % 20, 200 + i % 900, 1 + i % 5,
       100 + i % 5000, 10 + i % 50, 5 + i % 40, 10 + i % 30 FROM generate_series(1, {products}) i;
INSERT INTO {s}.orders SELECT md5('o' || i), md5('c' || (1 + i % {customers})),
       (ARRAY['delivered', 'shipped', 'processing'])[1 + i % 3],
       timestamptz '2018-01-01' + i * interval '5 minutes', timestamptz '2018-01-01' + i * interval '5 minutes' + interval '1 hour',
       NULL, NULL, timestamptz '2018-02-01' + i * interval '5 minutes' FROM generate_series(1, {orders}) i;
INSERT INTO {s}.order_items SELECT md5('o' || (1 + i % {orders})), 1 + i / {orders},
       CASE WHEN i < 100 THEN md5('p0') ELSE md5('p' || (1 + (i * 7919) % {products})) END,
       md5('s' || (1 + i % {sellers})), timestamptz '2018-01-05' + i * interval '1 minute', 10 + i % 300, 5 + i % 20
  FROM generate_series(0, {items} - 1) i;
INSERT INTO {s}.products VALUES (md5('p0'), 'hot', 1, 1, 1, 1, 1, 1, 1);
INSERT INTO {s}.order_payments SELECT md5('o' || i), 1, (ARRAY['credit_card', 'boleto', 'voucher'])[1 + i % 3], 1 + i % 10, 20 + i % 500
  FROM generate_series(1, {orders}) i;
ANALYZE;
"""

SPEC = """{"from": "orders", "key": ["order_id"],
 "lookups": [
   {"path": "customer_info", "from": "customers", "type": "object", "on": {"customer_id": "customer_id"}},
   {"path": "order_payments", "from": "order_payments", "type": "array", "on": {"order_id": "order_id"}, "order_by": ["payment_sequential"]},
   {"path": "order_items", "from": "order_items", "type": "array", "on": {"order_id": "order_id"}, "order_by": ["order_item_id"]},
   {"path": "order_items.product", "from": "products", "type": "object", "on": {"product_id": "product_id"}},
   {"path": "order_items.seller", "from": "sellers", "type": "object", "on": {"seller_id": "seller_id"}}],
 "indexes": ["doc->'customer_info'->>'customer_id'"]}"""

DEFINING = """SELECT o.order_id, to_jsonb(o) || jsonb_build_object(
  'customer_info', (SELECT to_jsonb(c) FROM {s}.customers c WHERE c.customer_id = o.customer_id),
  'order_payments', coalesce((SELECT jsonb_agg(to_jsonb(p) ORDER BY p.payment_sequential, to_jsonb(p))
                                FROM {s}.order_payments p WHERE p.order_id = o.order_id), '[]'),
  'order_items', coalesce((SELECT jsonb_agg(to_jsonb(i) || jsonb_build_object(
        'product', (SELECT to_jsonb(p) FROM {s}.products p WHERE p.product_id = i.product_id),
        'seller', (SELECT to_jsonb(x) FROM {s}.sellers x WHERE x.seller_id = i.seller_id))
      ORDER BY i.order_item_id, to_jsonb(i)) FROM {s}.order_items i WHERE i.order_id = o.order_id), '[]')) AS doc
  FROM {s}.orders o"""


def sizes():
    return dict(orders=ORDERS, items=int(ORDERS * 1.1), products=max(ORDERS * 3 // 10, 1),
                sellers=max(ORDERS * 3 // 100, 1), customers=ORDERS)


def setup():
    with connect("postgres") as c:
        c.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {DB}")
    with connect() as c:
        c.execute("DROP ROLE IF EXISTS beacon_docb_read, beacon_docb_write, beacon_docb_admin, beacon_docb_owner")
        c.execute("CREATE EXTENSION pg_beacon")
        c.execute("SELECT beacon.create_project('docb')")
        c.execute("CREATE SCHEMA bare")
        for s in ("docb", "bare"):
            c.execute(SCHEMA.format(s=s))
            t = time.time()
            c.execute(LOAD.format(s=s, **sizes()))
            if s == "docb":
                print(f"data: {sizes()} loaded in {time.time() - t:.1f} s per copy")


def create_view(mode):
    with connect() as c:
        c.execute("SELECT beacon.drop_document_view('docb', 'order_docs') FROM beacon.document_view WHERE name = 'order_docs'")
        t = time.time()
        c.execute("SELECT beacon.create_document_view('docb', 'order_docs', %s, %s)", (SPEC, mode))
        return time.time() - t


def writers(schema, seconds, counter_start):
    """CLIENTS clients, each committing transactions of one order, its payment and 1-2 items."""
    done = []
    stop = time.time() + seconds

    def run(n):
        c = connect(autocommit=False)
        k = 0
        while time.time() < stop:
            oid = f"bench-{counter_start}-{n}-{k}"
            k += 1
            c.execute(f"INSERT INTO {schema}.orders VALUES (%s, md5('c1'), 'processing', now(), now(), NULL, NULL, now())", (oid,))
            c.execute(f"INSERT INTO {schema}.order_payments VALUES (%s, 1, 'voucher', 1, 10)", (oid,))
            for item in range(1, 2 + k % 2):
                c.execute(f"INSERT INTO {schema}.order_items VALUES (%s, %s, md5('p' || %s), md5('s1'), now(), 10, 1)",
                          (oid, item, 1 + (k * 31 + n) % 1000))
            c.commit()
        done.append(k)
        c.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / seconds


def wait_applied():
    with connect() as c:
        deadline = time.time() + 300
        while time.time() < deadline:
            pending = c.execute("SELECT pending FROM beacon.document_views WHERE name = 'order_docs'").fetchone()[0]
            if pending == 0:
                return
            time.sleep(0.2)


def latency(base=0):
    """Commit -> NOTIFY of the document, async, under about RATE item writes per second."""
    with connect() as c:
        channel = c.execute("SELECT beacon.subscribe_documents('docb', 'order_docs', NULL, false)").fetchone()[0]
    committed = {}
    received = {}
    listener = connect()
    listener.execute(f'LISTEN "{channel}"')
    stop = threading.Event()

    def listen():
        import json
        while not stop.is_set():
            for n in listener.notifies(timeout=0.5):
                key = json.loads(n.payload)["key"]["order_id"]
                received.setdefault(key, time.time())

    lt = threading.Thread(target=listen)
    lt.start()
    w = connect(autocommit=False)
    start = time.time()
    k = 0
    per_tx = 10
    while time.time() - start < SECONDS:
        oid = f"lat-{k}"
        for item in range(per_tx):
            w.execute("INSERT INTO docb.order_items VALUES (%s, %s, md5('p5'), md5('s1'), now(), 1, 1)",
                      (md5_order(k), 1000 + base + k * per_tx + item))
        w.commit()
        committed[md5_order(k)] = time.time()
        k += 1
        # pace: RATE items per second
        ahead = start + k * per_tx / RATE - time.time()
        if ahead > 0:
            time.sleep(ahead)
    deadline = time.time() + 30
    while time.time() < deadline and len(set(committed) - set(received)) > 0:
        time.sleep(0.1)
    stop.set()
    lt.join()
    lat = sorted((received[o] - t) * 1000 for o, t in committed.items() if o in received)
    with connect() as c:
        c.execute("SELECT beacon.unsubscribe_documents(%s)", (channel,))
    missing = len(committed) - len(lat)
    return lat, missing, k * per_tx / (time.time() - start)


def md5_order(k):
    import hashlib
    return hashlib.md5(f"o{1 + (k * 104729) % ORDERS}".encode()).hexdigest()


def pct(values, p):
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(len(values) * p))]


def timed(c, sql, args=(), n=200):
    t = time.time()
    for _ in range(n):
        c.execute(sql, args).fetchall()
    return (time.time() - t) / n * 1000


def main():
    setup()
    results = {}
    for fsync in ("on", "off"):
        with connect("postgres") as c:
            c.execute(f"ALTER SYSTEM SET fsync = {fsync}")
            c.execute("SELECT pg_reload_conf()")
        bare = writers("bare", SECONDS, f"bare{fsync}")
        row = {"bare": bare}
        for mode in ("async", "immediate"):
            create_view(mode)
            row[mode] = writers("docb", SECONDS, f"{mode}{fsync}")
            if mode == "async":
                wait_applied()
        results[fsync] = row
        print(f"fsync {fsync}: bare {bare:.0f} tx/s; async {row['async']:.0f} tx/s = {row['async'] / bare:.2f} x bare;"
              f" immediate {row['immediate']:.0f} tx/s = {row['immediate'] / bare:.2f} x bare")
    with connect("postgres") as c:
        c.execute("ALTER SYSTEM SET fsync = on")
        c.execute("SELECT pg_reload_conf()")

    build = create_view("async")
    print(f"create_document_view over {ORDERS} orders (async): {build:.1f} s")
    for run, interval in enumerate(("1000ms", "200ms")):
        with connect("postgres") as c:
            c.execute(f"ALTER SYSTEM SET beacon.compact_interval = '{interval}'")
            c.execute("SELECT pg_reload_conf()")
        lat, missing, rate = latency(run * 10_000_000)
        print(f"async commit -> NOTIFY of the stored document at {rate:.0f} item writes/s, beacon.compact_interval "
              f"{interval}: p50 {pct(lat, 0.5):.0f} ms, p99 {pct(lat, 0.99):.0f} ms ({len(lat)} documents, {missing} not received)")
    with connect("postgres") as c:
        c.execute("ALTER SYSTEM RESET beacon.compact_interval")
        c.execute("SELECT pg_reload_conf()")

    with connect() as c:
        t = time.time()
        c.execute("UPDATE docb.products SET product_category_name = 'hot2' WHERE product_id = md5('p0')")
        stmt = time.time() - t
        t = time.time()
        c.execute("SELECT beacon.refresh_document_view('docb', 'order_docs')")
        refresh = time.time() - t
        print(f"product update touching 100 documents, async: statement {stmt * 1000:.1f} ms, refresh {refresh * 1000:.1f} ms")
    create_view("immediate")
    with connect() as c:
        t = time.time()
        c.execute("UPDATE docb.products SET product_category_name = 'hot3' WHERE product_id = md5('p0')")
        print(f"product update touching 100 documents, immediate: statement {(time.time() - t) * 1000:.1f} ms")
        keys = [md5_order(k) for k in range(50)]
        view = statistics.median(timed(c, "SELECT doc FROM docb.order_docs WHERE order_id = %s", (k,), 20) for k in keys)
        defining = statistics.median(timed(c, DEFINING.format(s="docb") + " WHERE o.order_id = %s", (k,), 20) for k in keys)
        t = time.time()
        c.execute(f"CREATE MATERIALIZED VIEW docb.order_mv AS {DEFINING.format(s='docb')}")
        c.execute("CREATE UNIQUE INDEX ON docb.order_mv (order_id)")
        mv_build = time.time() - t
        t = time.time()
        c.execute("REFRESH MATERIALIZED VIEW docb.order_mv")
        mv_refresh = time.time() - t
        mv = statistics.median(timed(c, "SELECT doc FROM docb.order_mv WHERE order_id = %s", (k,), 20) for k in keys)
        by_customer = timed(c, "SELECT count(*) FROM docb.order_docs WHERE doc->'customer_info'->>'customer_id' = md5('c7')", (), 50)
        print(f"read one document by key: view {view:.3f} ms, its defining SQL {defining:.3f} ms "
              f"({defining / view:.1f} x slower), plain materialized view {mv:.3f} ms "
              f"(built in {mv_build:.1f} s, full refresh {mv_refresh:.1f} s)")
        print(f"all orders of one customer through the spec's index: {by_customer:.3f} ms")
    # the same reads server-side (pgbench, one client, random keys): without the client's
    # round trip, which dominates the timings above
    import subprocess
    import tempfile
    pgbench = os.path.join(os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin"), "pgbench")
    figures = {}
    for what, sql in (("view", "SELECT doc FROM docb.order_docs WHERE order_id = md5('o' || :k)"),
                      ("defining SQL", " ".join(DEFINING.format(s="docb").split()) + " WHERE o.order_id = md5('o' || :k)"),
                      ("materialized view", "SELECT doc FROM docb.order_mv WHERE order_id = md5('o' || :k)")):
        for protocol in ("simple", "prepared"):
            with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
                f.write(f"\\set k random(1, {ORDERS})\n{sql};\n")
            out = subprocess.run([pgbench, "-n", "-h", "127.0.0.1", "-p", str(PORT), "-U", "postgres", "-T", "5",
                                  "-c", "1", "-M", protocol, "-f", f.name, DB], capture_output=True, text=True).stdout
            latency_ms = float(re.search(r"latency average = ([0-9.]+) ms", out).group(1))
            figures[(what, protocol)] = latency_ms
    for protocol in ("simple", "prepared"):
        v, d, m = (figures[(w, protocol)] for w in ("view", "defining SQL", "materialized view"))
        print(f"read one document by key, pgbench -M {protocol}: view {v:.3f} ms, defining SQL {d:.3f} ms "
              f"({d / v:.1f} x slower), materialized view {m:.3f} ms")
    # and inside the server: a PL/pgSQL loop of random-key reads with kept plans, so that
    # neither the client's round trip nor the protocol (the same for every way of reading,
    # and most of the pgbench latencies) is counted; each document is fetched whole
    loops = 5000
    key = f"md5('o' || (1 + floor(random() * {ORDERS}))::int)"
    inside = {}
    with connect() as c:
        for what, sql in (("view", f"SELECT doc FROM docb.order_docs WHERE order_id = {key}"),
                          ("defining SQL", " ".join(DEFINING.format(s="docb").split()) + f" WHERE o.order_id = {key}"),
                          ("materialized view", f"SELECT doc FROM docb.order_mv WHERE order_id = {key}")):
            c.execute(f"""CREATE OR REPLACE FUNCTION pg_temp.reads(n int) RETURNS double precision LANGUAGE plpgsql AS $f$
                DECLARE t0 timestamptz; total bigint := 0; BEGIN
                  t0 := clock_timestamp();
                  FOR i IN 1..n LOOP
                    total := total + (SELECT pg_catalog.octet_length(q.doc::text) FROM ({sql}) AS q);
                  END LOOP;
                  IF total = 0 THEN RAISE EXCEPTION 'no document read'; END IF;
                  RETURN extract(epoch FROM clock_timestamp() - t0) * 1000 / n;
                END $f$""")
            c.execute("SELECT pg_temp.reads(200)")  # warm the plans and caches
            inside[what] = statistics.median(c.execute(f"SELECT pg_temp.reads({loops})").fetchone()[0] for _ in range(3))
    v, d, m = (inside[w] for w in ("view", "defining SQL", "materialized view"))
    print(f"read one document by key inside the server ({loops} reads, median of 3): view {v * 1000:.1f} us, "
          f"defining SQL {d * 1000:.1f} us ({d / v:.1f} x slower), materialized view {m * 1000:.1f} us")


if __name__ == "__main__":
    main()
