use super::*;

#[test]
fn realistic_queries_are_accepted_and_rewritten() {
    let cases: &[(&str, &str)] = &[
        (
            "select date_trunc('day', ts) as day, count(*) from events group by 1 order by 1",
            r#"SELECT pg_catalog."date_trunc"('day', ts) AS day, pg_catalog."count"(*) FROM "shop"."events" GROUP BY 1 ORDER BY 1"#,
        ),
        (
            "select u.country, count(distinct e.user_id) from events e join users as u \
             on u.id = e.user_id group by u.country",
            r#"SELECT u.country, pg_catalog."count"(DISTINCT e.user_id) FROM "shop"."events" e JOIN "shop"."users" AS u ON u.id = e.user_id GROUP BY u.country"#,
        ),
        (
            "select user_id, ts, row_number() over (partition by user_id order by ts) as n \
             from events",
            r#"SELECT user_id, ts, pg_catalog."row_number"() OVER (PARTITION BY user_id ORDER BY ts) AS n FROM "shop"."events""#,
        ),
        (
            "with daily as (select date_trunc('day', ts) as day, count(*) as n from events \
             group by 1) select day, n, avg(n) over (order by day rows between 6 preceding \
             and current row) from daily",
            r#"WITH daily AS (SELECT pg_catalog."date_trunc"('day', ts) AS day, pg_catalog."count"(*) AS n FROM "shop"."events" GROUP BY 1) SELECT day, n, pg_catalog."avg"(n) OVER (ORDER BY day ROWS BETWEEN 6 PRECEDING AND CURRENT ROW) FROM daily"#,
        ),
        (
            "select name from users union select name from admins order by 1",
            r#"SELECT name FROM "shop"."users" UNION SELECT name FROM "shop"."admins" ORDER BY 1"#,
        ),
        (
            "select props->>'plan' as plan, count(*) filter (where kind = 'signup') as \
             signups from events where props ? 'plan' group by 1",
            r#"SELECT props ->> 'plan' AS plan, pg_catalog."count"(*) FILTER (WHERE kind = 'signup') AS signups FROM "shop"."events" WHERE props ? 'plan' GROUP BY 1"#,
        ),
        (
            "select percentile_cont(0.5) within group (order by amount) as median from orders",
            r#"SELECT pg_catalog."percentile_cont"(0.5) WITHIN GROUP (ORDER BY amount) AS median FROM "shop"."orders""#,
        ),
        (
            "select e.id, item->>'sku' from events e cross join lateral \
             jsonb_array_elements(e.props->'items') as item",
            r#"SELECT e.id, item ->> 'sku' FROM "shop"."events" e CROSS JOIN LATERAL pg_catalog."jsonb_array_elements"(e.props -> 'items') AS item"#,
        ),
        (
            "select substring(name from 1 for 3), trim(both ' ' from name), position('a' in \
             name), substr(name, 2, 3), ceil(x), floor(x), coalesce(a, 1), greatest(a, b) \
             from users",
            r#"SELECT SUBSTRING(name FROM 1 FOR 3), TRIM(BOTH ' ' FROM name), POSITION('a' IN name), pg_catalog."substr"(name, 2, 3), pg_catalog."ceil"(x), pg_catalog."floor"(x), coalesce(a, 1), greatest(a, b) FROM "shop"."users""#,
        ),
        (
            "select approx_count_distinct(user_id), beacon.approx_count_distinct(x) from events",
            r#"SELECT beacon."approx_count_distinct"(user_id), beacon."approx_count_distinct"(x) FROM "shop"."events""#,
        ),
        (
            "select * from unnest(array[1,2]) with ordinality u(a, n)",
            r#"SELECT * FROM pg_catalog."unnest"(ARRAY[1, 2]) WITH ORDINALITY u (a, n)"#,
        ),
        (
            "select * from json_to_recordset('[]') as x(a int, b text)",
            r#"SELECT * FROM pg_catalog."json_to_recordset"('[]') AS x (a INT, b TEXT)"#,
        ),
        (
            "SELECT Lower(Name) FROM Users",
            r#"SELECT pg_catalog."lower"(Name) FROM "shop"."users""#,
        ),
    ];
    for (sql, expected) in cases {
        assert_eq!(&accepted(sql), expected, "for {sql:?}");
    }
    for sql in [
        "select d::date as day, count(e.ts) from generate_series(now() - interval '30 days', \
         now(), interval '1 day') as d left join events e on date_trunc('day', e.ts) = d \
         group by 1 order by 1",
        "select * from users u where exists (select 1 from events e where e.user_id = u.id) \
         and u.id in (select user_id from orders) and u.id not in (1, 2, 3)",
        "select extract(hour from ts) as h, extract(epoch from ts)::bigint, count(*) from \
         events group by 1, 2",
        "select extract('epoch' from ts), extract(\"epoch\" from ts), extract(isodow from ts) \
         from events",
        "select case when amount > 100 then 'big' when amount > 10 then 'medium' else \
         'small' end as size, count(*), sum(amount), avg(amount)::numeric(10, 2) from orders \
         group by 1 having count(*) > 5 order by 2 desc",
        "select * from events where ts >= current_date - interval '7 days' and ts < now()",
        "select * from events order by ts desc nulls last limit 10 offset 5",
        "select * from events fetch first 10 rows only",
        "select distinct country from users",
        "select distinct on (user_id) user_id, ts from events order by user_id, ts desc",
        "values (1, 'a'), (2, 'b')",
        "select * from (values (1), (2)) as v(x)",
        "select ntile(4) over (order by amount), lag(amount, 1) over w, \
         first_value(amount) over w from orders window w as (order by ts)",
        "select to_char(ts, 'YYYY-MM') as month, sum(amount) from orders group by 1",
        "select string_agg(name, ', ' order by name), array_agg(distinct id), \
         jsonb_agg(props) from users",
        "select * from events where kind like 'sign%' and name ilike '%x%' and name not \
         similar to 'a%' and name ~* '^a'",
        "select * from events where id = any(array[1, 2, 3]) and id <> all(array[4])",
        "select a, b, count(*) from t group by rollup(a, b)",
        "select a, b, count(*) from t group by grouping sets ((a), (b), ())",
        "select (props->'a')::int, props #>> '{a,b}', props @> '{\"a\": 1}' from events",
        "select x from events where ts at time zone 'UTC' > '2024-01-01'",
        "select jsonb_build_object('a', 1, 'b', x), to_jsonb(e) from events e",
        "select count(*) from events e natural join users u",
        "select * from events e left join users u using (user_id) full join orders o on \
         o.user_id = e.user_id",
        "select 1 except select 2 intersect select 3",
        "select x from events where x is not distinct from 1 and y is null and z is true",
        "select make_interval(days => 1), round(x, 2), mod(a, b), power(2, 3) from t",
        "select make_interval(days => 1, hours => 2)",
        "select width_bucket(amount, 0, 100, 10) as bucket, count(*) from orders group by 1",
        "select lead(x, 2, 0) over (partition by a order by b range between unbounded \
         preceding and unbounded following) from t",
        "select split_part(email, '@', 2) as domain, count(*) from users group by 1",
        "select cardinality(tags), array_length(tags, 1), tags[1], tags[2:3] from t",
        "select date_bin('15 minutes', ts, timestamp '2024-01-01'), age(a, b) from t",
        "select u.name, o.total from users u join lateral (select sum(amount) as total \
         from orders where orders.user_id = u.id) o on true",
        "select * from events e, generate_series(1, 3) with ordinality as g(i, n)",
        "select x from events where x in (select x from events)",
        "select count(*) as n, count(t.*) from t",
        "select e.* from events e",
        "select row_number() over () from t",
        "select array(select id from users)",
        "select row(1, 'a')",
        "select ctid, xmin from events",
        "select md5('a'), format('%s-%s', a, b) from t",
        "select /* a comment */ 1 -- and another",
    ] {
        accepted(sql);
    }
}

#[test]
fn accepted_queries_carry_no_comment_or_raw_name() {
    assert_eq!(
        accepted("/* /* */ select pg_sleep(1) */ select 1"),
        "SELECT 1"
    );
    assert_eq!(accepted("select 1 -- ; drop table events"), "SELECT 1");
    assert_eq!(
        accepted("select /* ; */ x from events"),
        r#"SELECT x FROM "shop"."events""#
    );
}

#[test]
fn unique_output_key_cases() {
    let key = |sql: &str| unique_output_key(sql);
    let names = |names: &[&str]| Some(names.iter().map(|n| n.to_string()).collect());
    assert_eq!(
        key("select date_trunc('day', ts) as day, count(*) as n from events group by 1"),
        names(&["day"])
    );
    assert_eq!(
        key("select country, count(*) from users group by country"),
        names(&["country"])
    );
    assert_eq!(
        key("select u.country, count(*) from users u group by u.country"),
        names(&["country"])
    );
    assert_eq!(
        key("select u.country, count(*) from users u group by country"),
        names(&["country"])
    );
    assert_eq!(
        key(
            "select date_trunc('day', ts) as day, count(*) from events group by \
             date_trunc('day', ts)"
        ),
        names(&["day"])
    );
    assert_eq!(
        key("select date_trunc('day', ts) as day, count(*) from events group by day"),
        names(&["day"])
    );
    assert_eq!(
        key("select country as c, count(*) from users group by country"),
        names(&["c"])
    );
    assert_eq!(
        key("select a, b, count(*) from t group by b, a, 1"),
        names(&["b", "a"])
    );
    assert_eq!(
        key(r#"select "Country", count(*) from users group by 1"#),
        names(&["Country"])
    );
    assert_eq!(
        key("select Country, count(*) from users group by 1"),
        names(&["country"])
    );
    assert_eq!(
        key("select a, count(*) from t group by 1 having count(*) > 1 order by 2 limit 5"),
        names(&["a"])
    );
    assert_eq!(
        key("with d as (select * from events) select kind, count(*) from d group by kind"),
        names(&["kind"])
    );
    assert_eq!(key("select distinct a, b as c from t"), names(&["a", "c"]));
    assert_eq!(
        key("select distinct a, count(*) as n from t group by a"),
        names(&["a"])
    );
    // The key of the rewritten query is the same.
    let sql = "select date_trunc('day', ts) as day, count(*) from events group by \
               date_trunc('day', ts)";
    assert_eq!(key(&check_query(sql, PROJECT).unwrap()), names(&["day"]));

    // No GROUP BY, or keys that are not (named) outputs.
    assert_eq!(key("select count(*) from events"), None);
    assert_eq!(key("select a from t"), None);
    assert_eq!(
        key("select date_trunc('day', ts), count(*) from events group by 1"),
        None
    );
    assert_eq!(key("select a, count(*) from t group by a, b"), None);
    assert_eq!(key("select a, count(*) from t group by 3"), None);
    assert_eq!(key("select a, count(*) from t group by lower(a)"), None);
    // `day` is also a column here, which PostgreSQL groups by instead.
    assert_eq!(
        key("select date_trunc('day', day) as day, count(*) from events group by day"),
        None
    );
    assert_eq!(
        key("select lower(name) as name, count(*) from users group by name"),
        None
    );
    // Ambiguous output names.
    assert_eq!(key("select a, a, count(*) from t group by 1"), None);
    assert_eq!(key("select a as x, b as x from t group by 1, 2"), None);
    assert_eq!(key("select a, a::text, count(*) from t group by a"), None);
    // Several rows per group, or no single SELECT.
    assert_eq!(
        key("select a, generate_series(1, 3) as g from t group by a"),
        None
    );
    assert_eq!(key("select a, count(*) from t group by rollup(a)"), None);
    assert_eq!(key("select a from t union select a from u"), None);
    assert_eq!(key("select * from t group by a"), None);
    assert_eq!(key("select distinct a, lower(b) from t"), None);
    assert_eq!(key("select distinct * from t"), None);
    assert_eq!(key("values (1)"), None);
    assert_eq!(
        key("select a, count(*) from pg_catalog.pg_class group by a; select 1"),
        None
    );
    assert_eq!(key("select pg_sleep(1) as a group by 1"), None);
    assert_eq!(key("not sql"), None);
}

#[test]
fn allow_lists_hold_no_dangerous_names() {
    let lists = [
        AGGREGATE_FUNCTIONS,
        WINDOW_FUNCTIONS,
        SCALAR_FUNCTIONS,
        SET_RETURNING_FUNCTIONS,
        RECORD_FUNCTIONS,
        BEACON_FUNCTIONS,
        KEYWORD_CONSTRUCTS,
        CLOCK_KEYWORDS,
    ];
    for name in lists.iter().flat_map(|list| list.iter()) {
        assert!(!name.starts_with("pg_"), "{name}");
        assert!(!name.contains("xml") && !name.contains("lo_"), "{name}");
        assert!(
            ![
                "dblink",
                "setval",
                "nextval",
                "currval",
                "set_config",
                "current_setting"
            ]
            .contains(name),
            "{name}"
        );
        assert!(!SESSION_KEYWORDS.contains(name), "{name}");
        assert_eq!(name.to_ascii_lowercase(), **name);
    }
}

#[test]
fn a_bad_project_name_is_refused() {
    assert!(check_query("select 1", "").is_err());
    assert!(check_query("select 1", "a\"b").is_err());
    assert_eq!(
        check_query("select * from t", "other").unwrap(),
        r#"SELECT * FROM "other"."t""#
    );
    assert!(check_query("select * from shop.t", "other").is_err());
}

#[test]
fn refusal_displays_its_message() {
    let refusal = check_query("select pg_sleep(1)", PROJECT).unwrap_err();
    assert_eq!(
        refusal.to_string(),
        "the function pg_sleep() is not allowed: only built-in functions from the \
         allow-list can be called"
    );
    let boxed: Box<dyn std::error::Error> = Box::new(refusal.clone());
    assert_eq!(boxed.to_string(), refusal.message);
}
