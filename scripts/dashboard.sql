-- The e-commerce dashboard of seed 002, built from pg_beacon's own pieces: products, orders,
-- order items and shop events collected as JSON, customers in the project's _users
-- profiles, continuous queries over joins for the dashboard's figures, a scheduled
-- materialized view for the order_stats_history chart and beacon.funnel. scripts/demo.sh
-- runs it after scripts/demo.sql (psql -v ON_ERROR_STOP=1 -f scripts/dashboard.sql); it
-- needs only the extension, and runs again in the same database (it starts afresh).
\set QUIET on
\pset footer off
SET client_min_messages = warning;
SET TimeZone = 'UTC';
CREATE EXTENSION IF NOT EXISTS pg_beacon;

-- a fresh project every run; its roles are cluster-wide and create_project never adopts an
-- existing role, so roles left by a dropped database go too (as in scripts/demo.sh)
SELECT count(beacon.drop_project(name)) FROM beacon.projects WHERE name = 'ecommerce' \gset
DROP ROLE IF EXISTS beacon_ecommerce_read, beacon_ecommerce_write, beacon_ecommerce_admin,
                    beacon_ecommerce_owner;
SELECT beacon.create_project('ecommerce') \gset

-- every generated time is relative to this instant
SELECT date_trunc('second', now()) AS t0 \gset

-- the collections, typed up front
SELECT beacon.define_collection('ecommerce', 'products',
         '{"product_id": "bigint", "name": "text", "price": "numeric"}'),
       beacon.define_collection('ecommerce', 'orders', '{"order_id": "bigint"}'),
       beacon.define_collection('ecommerce', 'order_items',
         '{"order_id": "bigint", "product_id": "bigint", "quantity": "bigint", "price": "numeric"}'),
       beacon.define_collection('ecommerce', 'view_product', '{"product_id": "bigint"}'),
       beacon.define_collection('ecommerce', 'add_to_cart', '{"product_id": "bigint"}') \gset

-- the dashboard's figures, kept current as events arrive: top sales by item and price (a
-- join of order items with products), money earned, orders and customers per day (orders
-- joined with their items; immediate mode), and each customer's spending
SELECT beacon.create_continuous_query('ecommerce', 'top_sales',
  $q$SELECT p.name, p.price, sum(i.quantity) AS units, sum(i.quantity * i.price) AS revenue
       FROM order_items i JOIN products p ON p.product_id = i.product_id
      GROUP BY p.name, p.price$q$, 'async', create_indexes => true),
       beacon.create_continuous_query('ecommerce', 'daily_sales',
  $q$SELECT date_trunc('day', o._time) AS day, sum(i.quantity * i.price) AS revenue,
            count(DISTINCT o.order_id) AS orders, count(DISTINCT o._user) AS customers
       FROM orders o JOIN order_items i ON i.order_id = o.order_id
      GROUP BY date_trunc('day', o._time)$q$, 'immediate', create_indexes => true),
       beacon.create_continuous_query('ecommerce', 'customer_spending',
  $q$SELECT o._user AS customer, count(DISTINCT o.order_id) AS orders,
            sum(i.quantity * i.price) AS spent
       FROM orders o JOIN order_items i ON i.order_id = o.order_id
      GROUP BY o._user$q$, 'async') \gset

-- the chart under the dashboard: today's order sum, per two-minute slot and running, which
-- the worker refreshes every two minutes
SELECT beacon.create_materialized_view('ecommerce', 'order_stats_history',
  $q$SELECT date_bin('2 minutes', o._time, date_trunc('day', now(), 'UTC')) + interval '2 minutes' AS at,
            sum(sum(i.quantity * i.price)) OVER (ORDER BY date_bin('2 minutes', o._time,
                date_trunc('day', now(), 'UTC')) + interval '2 minutes') AS order_sum
       FROM orders o JOIN order_items i ON i.order_id = o.order_id
      WHERE o._time >= date_trunc('day', now(), 'UTC')
      GROUP BY 1$q$, interval '2 minutes') \gset

-- 12 products and 600 customers (profiles in ecommerce._users)
SELECT beacon.collect_batch('ecommerce', jsonb_agg(jsonb_build_object('collection', 'products',
         'properties', jsonb_build_object('product_id', n, 'name', name, 'price', price)) ORDER BY n))
  FROM unnest('{Notebook,Coffee mug,USB-C cable,Phone case,Wireless mouse,Keyboard,Headphones,Smart watch,Monitor,Tablet,Phone,Laptop}'::text[],
              '{4.25,7.50,9.99,19.90,29.50,59.00,89.00,199.00,249.00,399.00,699.00,1199.00}'::numeric[])
       WITH ORDINALITY AS p(name, price, n) \gset
SELECT count(beacon.set_user('ecommerce', 'c' || lpad(n::text, 3, '0'), jsonb_build_object(
         'name', (ARRAY['Ana','Ben','Chen','Dara','Eli','Fay','Gus','Hana','Ivo','Jun'])[1 + n % 10]
                 || ' ' || chr(65 + n * 7 % 26) || '.',
         'city', (ARRAY['Auckland','Berlin','Lima','Osaka','Porto','Toronto'])[1 + n % 6])))
  FROM generate_series(1, 600) AS n \gset

-- 3,000 orders over the last three and a half days (one every 100 s up to now), each of 1-3
-- items, with the shop events before them: the product page 20 minutes before, the cart 8;
-- plus 400 visitors over the last day who look at a product and, one in three, put it in
-- their cart, and never buy
CREATE TEMP TABLE gen_orders AS
  SELECT i AS order_id,
         'c' || lpad((1 + floor(600 * power((i * 7919 % 1000) / 1000.0, 2)))::text, 3, '0') AS customer,
         :'t0'::timestamptz - (3001 - i) * interval '100 seconds' AS at
    FROM generate_series(1, 3000) AS i;
CREATE TEMP TABLE gen_items AS
  SELECT o.order_id, k,
         (1 + floor(12 * power(((o.order_id * 37 + k * 11) % 101) / 101.0, 1.6)))::int AS product_id,
         1 + ((o.order_id + k) * 5 % 7) % 3 AS quantity
    FROM gen_orders o, generate_series(0, 2) AS k
   WHERE k <= (o.order_id * 13 % 7) % 3;
CREATE TEMP VIEW gen_events AS
  SELECT 'orders' AS collection, jsonb_build_object('order_id', order_id, '_user', customer, '_time', at) AS properties
    FROM gen_orders
  UNION ALL
  SELECT 'order_items', jsonb_build_object('order_id', i.order_id, 'product_id', i.product_id,
           'quantity', i.quantity, 'price', p.price, '_user', o.customer, '_time', o.at)
    FROM gen_items i JOIN gen_orders o USING (order_id) JOIN ecommerce.products p USING (product_id)
  UNION ALL
  SELECT e.collection, jsonb_build_object('product_id', i.product_id, '_user', o.customer,
           '_time', o.at - e.before)
    FROM gen_orders o JOIN gen_items i ON i.order_id = o.order_id AND i.k = 0,
         (VALUES ('view_product', interval '20 minutes'), ('add_to_cart', interval '8 minutes')) AS e(collection, before)
  UNION ALL
  SELECT e.collection, jsonb_build_object('product_id', 1 + v * 5 % 12, '_user', 'v' || lpad(v::text, 3, '0'),
           '_time', :'t0'::timestamptz - v * interval '211 seconds' + e.after)
    FROM generate_series(1, 400) AS v,
         (VALUES ('view_product', interval '0'), ('add_to_cart', interval '3 minutes')) AS e(collection, after)
   WHERE e.collection = 'view_product' OR v % 3 = 0;

SELECT beacon.collect_batch('ecommerce', jsonb_agg(jsonb_build_object('collection', collection, 'properties', properties)))
         AS stored,
       count(*) FILTER (WHERE collection = 'orders') AS orders
  FROM gen_events \gset
\echo '== pg_beacon e-commerce dashboard (project ecommerce; seed 002) =='
\echo 'collected' :stored 'events with collect_batch:' :orders 'orders, their items, product views and carts'
-- the chart's worker refresh is at most two minutes away; refresh it now instead
SELECT beacon.refresh_materialized_view('ecommerce', 'order_stats_history') \gset

\echo '-- top sales by item and price (continuous query: order_items JOIN products)'
SELECT name, price, units, revenue FROM ecommerce.top_sales ORDER BY revenue DESC, name LIMIT 5;

\echo '-- money earned, orders sold and customers per day (continuous query: orders JOIN order_items)'
SELECT day::date, revenue, orders, customers FROM ecommerce.daily_sales ORDER BY day;

-- customers whose spending is above the average of all customers are high net worth: the
-- label, the spending and the average order go into their profiles
-- (a customer who never ordered spent 0)
SELECT count(beacon.set_user('ecommerce', customer, jsonb_build_object(
         'net_worth', CASE WHEN spent > average THEN 'high' ELSE 'low' END,
         'spent', round(spent, 2), 'avg_order', round(spent / nullif(orders, 0), 2))))
  FROM (SELECT c.customer, coalesce(s.orders, 0) AS orders, coalesce(s.spent, 0) AS spent,
               avg(coalesce(s.spent, 0)) OVER () AS average
          FROM (SELECT 'c' || lpad(n::text, 3, '0') AS customer FROM generate_series(1, 600) AS n) AS c
          LEFT JOIN ecommerce.customer_spending s USING (customer)) AS s \gset
\echo '-- customers by net worth (labels in ecommerce._users; spending from a continuous query)'
SELECT net_worth, count(*) AS customers, round(avg(spent)::numeric, 2) AS avg_spent,
       round(avg(avg_order)::numeric, 2) AS avg_order
  FROM ecommerce._users GROUP BY net_worth ORDER BY net_worth;
\echo '-- one customer, looked up by id'
SELECT id, name, city, net_worth, round(spent::numeric, 2) AS spent, round(avg_order::numeric, 2) AS avg_order
  FROM ecommerce._users WHERE id = 'c042';

\echo '-- order_stats_history (materialized view, refreshed every 2 minutes): today, first and latest slot'
(SELECT at, order_sum FROM ecommerce.order_stats_history ORDER BY at LIMIT 1)
UNION ALL
(SELECT at, order_sum FROM ecommerce.order_stats_history ORDER BY at DESC LIMIT 1);

\echo '-- funnel over the last day: product page -> cart -> order within an hour (beacon.funnel)'
SELECT step, collection, users, round(conversion_from_first::numeric, 3) AS conversion
  FROM beacon.funnel('ecommerce',
         '[{"collection": "view_product"}, {"collection": "add_to_cart"}, {"collection": "orders"}]',
         interval '1 hour', :'t0'::timestamptz - interval '1 day', :'t0'::timestamptz + interval '1 hour')
 ORDER BY step;

-- live: 150 more orders arrive now
CREATE TEMP TABLE before_live AS
  SELECT t.name, t.units, t.revenue, d.revenue AS today_revenue, d.orders AS today_orders
    FROM ecommerce.top_sales t
    LEFT JOIN ecommerce.daily_sales d ON d.day = date_trunc('day', now());
SELECT beacon.collect_batch('ecommerce', jsonb_agg(jsonb_build_object('collection', e.collection,
         'properties', e.properties))) AS stored
  FROM (SELECT 'orders' AS collection, jsonb_build_object('order_id', i,
                 '_user', 'c' || lpad((1 + i * 37 % 600)::text, 3, '0')) AS properties
          FROM generate_series(3001, 3150) AS i
        UNION ALL
        SELECT 'order_items', jsonb_build_object('order_id', i, 'product_id', p.product_id, 'quantity', 1 + k,
                 'price', p.price, '_user', 'c' || lpad((1 + i * 37 % 600)::text, 3, '0'))
          FROM generate_series(3001, 3150) AS i CROSS JOIN generate_series(0, 1) AS k
          JOIN ecommerce.products p ON p.product_id = 1 + (i * 5 + k * 7) % 12
         WHERE k = 0 OR i % 2 = 0) AS e \gset
\echo '-- live: 150 more orders now (collect_batch of' :stored 'events); the views follow'
SELECT beacon.refresh_materialized_view('ecommerce', 'order_stats_history') \gset
SELECT t.name, t.units, t.units - b.units AS "+units", t.revenue, t.revenue - b.revenue AS "+revenue"
  FROM ecommerce.top_sales t JOIN before_live b USING (name)
 ORDER BY t.revenue DESC, t.name LIMIT 5;
SELECT 'today' AS day, b.today_orders AS orders_before, d.orders AS orders_now,
       b.today_revenue AS revenue_before, d.revenue AS revenue_now,
       (SELECT order_sum FROM ecommerce.order_stats_history ORDER BY at DESC LIMIT 1) AS history_latest
  FROM ecommerce.daily_sales d, (SELECT DISTINCT today_orders, today_revenue FROM before_live) b
 WHERE d.day = date_trunc('day', now());
