\set QUIET on
\pset footer off
SET client_min_messages = warning;
CREATE EXTENSION pg_beacon;
\echo '-- SELECT beacon.create_project(''demo'');'
SELECT beacon.create_project('demo');

\echo '-- 300 pageview events as one JSON array, through beacon.collect_batch:'
SELECT beacon.collect_batch('demo', jsonb_agg(jsonb_build_object(
         'collection', 'pageview',
         'properties', jsonb_build_object(
             'url', '/product/' || (i % 7),
             'price', round((i % 50) * 1.25, 2) + 0.5,
             'quantity', i % 4,
             'logged_in', i % 3 = 0,
             'tags', jsonb_build_array('demo', 'page' || (i % 2)),
             '_user', 'user' || (i % 25),
             '_time', to_char(timestamptz '2026-11-01 00:00:00+00' + i * interval '37 seconds',
                              'YYYY-MM-DD"T"HH24:MI:SS"Z"')))))
         AS stored
  FROM generate_series(1, 300) AS i;

\echo '-- one more event, with a property never seen before:'
SELECT beacon.collect('demo', 'pageview', '{"url": "/cart", "price": 12.5, "quantity": 1, "_user": "u1", "coupon": "WELCOME"}') AS _id;

\echo '-- an event whose price does not fit the double precision column is kept aside, not lost:'
SELECT beacon.collect('demo', 'pageview', '{"url": "/cart", "price": "twelve"}') AS _id;
SELECT collection, reason FROM demo._rejected;

\echo '-- the typed table that appeared (beacon.fields):'
SELECT property, column_name, type FROM beacon.fields WHERE project = 'demo' AND collection = 'pageview';

\echo '-- and it is a plain table:'
SELECT url, count(*) AS views, round(sum(price)::numeric, 2) AS revenue
  FROM demo.pageview GROUP BY url ORDER BY views DESC, url LIMIT 5;

\echo '-- a continuous query: an aggregate view kept current as events arrive (async mode):'
SELECT 'demo.views_per_url' AS created FROM beacon.create_continuous_query('demo', 'views_per_url',
  'SELECT url, count(*) AS views, sum(price) AS revenue, max(_time) AS last_seen FROM pageview GROUP BY url');
SELECT beacon.collect_batch('demo', '[{"collection": "pageview", "properties": {"url": "/cart", "price": 99.5}},
                                    {"collection": "pageview", "properties": {"url": "/cart", "price": 0.5}}]') AS stored;
\echo '-- /cart now counts the two new events, read straight from the view:'
SELECT url, views, round(revenue::numeric, 2) AS revenue FROM demo.views_per_url ORDER BY url = '/cart' DESC, views DESC, url LIMIT 4;
SELECT name, mode, rows_applied, pending_deltas FROM beacon.continuous_queries;

\echo '-- an event stream: subscribe with a filter, LISTEN, and matching events arrive after commit:'
SELECT beacon.subscribe('demo', 'pageview', 'price > 50') AS channel \gset
LISTEN :channel;
SELECT beacon.collect('demo', 'pageview', '{"url": "/checkout", "price": 120}') AS matching,
       beacon.collect('demo', 'pageview', '{"url": "/home", "price": 1}') AS not_matching;

\echo '-- customer profiles, linked to events through _user:'
SELECT beacon.set_user('demo', 'u1', '{"plan": "pro", "country": "NZ"}');
SELECT beacon.increment_user('demo', 'u1', 'logins') AS logins;
SELECT u.id, u.plan, u.logins, count(e._id) AS events
  FROM demo._users u JOIN demo.pageview e ON e._user = u.id GROUP BY 1, 2, 3;

\echo '-- the mailbox:'
SELECT beacon.send_message('demo', 'support', 'u1', 'Welcome to the shop!') AS message_id;
SELECT id, from_user, content, seen FROM beacon.mailbox('demo', 'u1');

\echo '-- beacon.query: analysis SQL from an untrusted caller, confined to the project:'
SELECT * FROM beacon.query('demo', 'SELECT url, count(*) AS views FROM pageview GROUP BY url ORDER BY views DESC LIMIT 3');
\echo '-- (and what it refuses):'
\set ON_ERROR_STOP off
SELECT * FROM beacon.query('demo', 'SELECT * FROM pg_catalog.pg_authid');
\set ON_ERROR_STOP on
