use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use crate::testing::{count, exec, one, sqlstate_of};
    use pgrx::prelude::*;

    const QUERY: &str =
        "SELECT a, count(*) AS n, sum(b) AS total, min(b) AS low FROM events GROUP BY a";

    fn differences(view: &str, query: &str) -> i64 {
        exec("SET LOCAL search_path = shop, public");
        let n = count(&format!(
            "(SELECT * FROM {view} EXCEPT ALL ({query})) UNION ALL (({query}) EXCEPT ALL SELECT * FROM {view})"
        ));
        exec("SET LOCAL search_path = pg_catalog, public");
        n
    }

    fn collect(time: Option<&str>, a: &str, b: i64) {
        let time = time
            .map(|t| format!(r#", "_time": "{t}""#))
            .unwrap_or_default();
        exec(&format!(
            r#"SELECT beacon.collect('shop', 'events', '{{"a": "{a}", "b": {b}{time}}}')"#
        ));
    }

    fn partitions() -> i64 {
        count(
            "SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = 'shop.events'::regclass",
        )
    }

    #[pg_test]
    fn a_new_partitioned_collection_takes_events_at_any_time() {
        exec("SELECT beacon.create_project('shop')");
        assert_eq!(
            one::<i64>("SELECT beacon.partition_collection('shop', 'events', 'day')"),
            Some(0)
        );
        assert_eq!(
            one::<String>("SELECT relkind::text FROM pg_class WHERE oid = 'shop.events'::regclass"),
            Some("p".into())
        );
        assert_eq!(partitions(), 1 + crate::collect::partitions::AHEAD as i64);
        collect(Some("1900-01-01T00:00:00Z"), "x", 1);
        collect(Some("2300-06-15T23:59:59.999999+05:00"), "y", 2);
        collect(None, "z", 3);
        exec(
            r#"SELECT beacon.collect_batch('shop', '[
                {"collection": "events", "properties": {"a": "w", "b": 4, "_time": "1999-12-31T23:00:00-02:00"}},
                {"collection": "events", "properties": {"a": "w", "b": 5}}]')"#,
        );
        assert_eq!(count("SELECT 1 FROM shop.events"), 5);
        // 1900-01-01, 2300-06-15 (18:59:59 UTC), 2000-01-01 UTC, and the three from now on
        assert_eq!(partitions(), 6);
        assert_eq!(
            count("SELECT 1 FROM shop.events WHERE tableoid = 'shop._p19000101_events'::regclass"),
            1
        );
        assert_eq!(
            count("SELECT 1 FROM shop.events WHERE tableoid = 'shop._p23000615_events'::regclass"),
            1
        );
        assert_eq!(
            count("SELECT 1 FROM shop.events WHERE tableoid = 'shop._p20000101_events'::regclass"),
            1
        );
        assert_eq!(
            count("SELECT 1 FROM beacon.partitions WHERE project = 'shop'"),
            6
        );
        // partitions are nobody's to write: a write must go through the parent's triggers
        assert_eq!(
            count(
                "SELECT 1 FROM pg_class c, aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
                  WHERE c.relname = '_p19000101_events' AND a.grantee <> c.relowner"
            ),
            0
        );
        exec("CREATE ROLE part_writer");
        exec("SELECT beacon.grant('shop', 'part_writer', 'write')");
        exec("SET ROLE part_writer");
        assert_eq!(
            sqlstate_of("INSERT INTO shop._p19000101_events (_time) VALUES ('1900-01-01')")
                .as_deref(),
            Some("42501")
        );
        collect(Some("1900-01-01T10:00:00Z"), "x", 6);
        exec("RESET ROLE");
        assert_eq!(count("SELECT 1 FROM shop.events"), 6);
        // `_id`s are unique and increasing, as on a plain collection
        assert_eq!(count("SELECT DISTINCT _id FROM shop.events"), 6);
    }

    #[pg_test]
    fn converting_keeps_events_ids_and_what_reads_them() {
        exec("SELECT beacon.create_project('shop')");
        for (i, day) in ["2026-01-01", "2026-01-01", "2026-01-02", "2026-03-30"]
            .iter()
            .enumerate()
        {
            collect(
                Some(&format!("{day}T12:00:00Z")),
                if i % 2 == 0 { "x" } else { "y" },
                i as i64,
            );
        }
        exec(&format!(
            "SELECT beacon.create_continuous_query('shop', 'v', '{QUERY}', 'async')"
        ));
        exec(&format!(
            "SELECT beacon.create_continuous_query('shop', 'vi', '{QUERY}', 'immediate')"
        ));
        exec("SELECT beacon.subscribe('shop', 'events', 'b > 1')");
        let ids_before =
            one::<String>("SELECT string_agg(_id::text, ',' ORDER BY _id) FROM shop.events");
        assert_eq!(
            one::<i64>("SELECT beacon.partition_collection('shop', 'events', 'week')"),
            Some(4)
        );
        assert_eq!(
            one::<String>("SELECT string_agg(_id::text, ',' ORDER BY _id) FROM shop.events"),
            ids_before
        );
        assert_eq!(
            one::<String>("SELECT relkind::text FROM pg_class WHERE oid = 'shop.events'::regclass"),
            Some("p".into())
        );
        // weeks of 2025-12-29 and 2026-03-30, and the current one and two ahead
        assert!(partitions() >= 4, "{}", partitions());
        assert_eq!(
            count("SELECT 1 FROM pg_class WHERE relname = '_p20251229_events'"),
            1
        );
        for trigger in ["_beacon_cq_insert", "_beacon_cq_delete", "_beacon_stream"] {
            assert_eq!(
                count(&format!(
                    "SELECT 1 FROM pg_trigger WHERE tgrelid = 'shop.events'::regclass AND tgname = '{trigger}'"
                )),
                1,
                "{trigger}"
            );
        }
        collect(Some("2026-01-01T13:00:00Z"), "x", 10);
        collect(None, "z", 11);
        exec("DELETE FROM shop.events WHERE b = 0");
        exec("UPDATE shop.events SET b = b + 100, _time = '2026-03-31' WHERE b = 1");
        exec("SET CONSTRAINTS ALL IMMEDIATE");
        exec("SELECT beacon.compact('shop', 'v')");
        assert_eq!(differences("shop.v", QUERY), 0);
        assert_eq!(differences("shop.vi", QUERY), 0);
        // a query created on the partitioned collection is backfilled from every partition
        exec(&format!(
            "SELECT beacon.create_continuous_query('shop', 'later', '{QUERY}', 'async')"
        ));
        assert_eq!(differences("shop.later", QUERY), 0);
        assert!(count("SELECT 1 FROM shop.later") >= 2);
        assert!(
            one::<i64>("SELECT max(_id) FROM shop.events").unwrap_or(0)
                > ids_before
                    .unwrap_or_default()
                    .split(',')
                    .filter_map(|i| i.parse::<i64>().ok())
                    .max()
                    .unwrap_or(0),
            "the sequence continues"
        );
        assert_eq!(
            sqlstate_of("SELECT beacon.partition_collection('shop', 'events', 'month')").as_deref(),
            Some("0A000")
        );
        assert_eq!(
            one::<i64>("SELECT beacon.partition_collection('shop', 'events', '7 days')"),
            Some(0)
        );
    }

    #[pg_test]
    fn converting_refuses_objects_it_would_lose() {
        exec("SELECT beacon.create_project('shop')");
        collect(None, "x", 1);
        exec("CREATE VIEW shop.mine AS SELECT a FROM shop.events");
        assert_eq!(
            sqlstate_of("SELECT beacon.partition_collection('shop', 'events', 'day')").as_deref(),
            Some("2BP01")
        );
        assert_eq!(
            one::<String>("SELECT relkind::text FROM pg_class WHERE oid = 'shop.events'::regclass"),
            Some("r".into())
        );
        exec("DROP VIEW shop.mine");
        exec("CREATE UNIQUE INDEX single_a ON shop.events (a)");
        assert_eq!(
            sqlstate_of("SELECT beacon.partition_collection('shop', 'events', 'day')").as_deref(),
            Some("0A000")
        );
        exec("DROP INDEX shop.single_a");
        exec("CREATE INDEX by_b ON shop.events (b DESC) WHERE b > 0");
        exec("INSERT INTO shop.events (_time) VALUES ('infinity')");
        assert_eq!(
            sqlstate_of("SELECT beacon.partition_collection('shop', 'events', 'day')").as_deref(),
            Some("22023")
        );
        exec("DELETE FROM shop.events WHERE _time = 'infinity'");
        assert_eq!(
            one::<i64>("SELECT beacon.partition_collection('shop', 'events', 'day')"),
            Some(1)
        );
        // the other indexes are built again on the partitioned table
        assert_eq!(
            one::<String>("SELECT pg_get_indexdef('shop.by_b'::regclass)"),
            Some("CREATE INDEX by_b ON ONLY shop.events USING btree (b DESC) WHERE (b > 0)".into())
        );
    }

    #[pg_test]
    fn retention_drops_old_partitions_and_views_keep_their_history() {
        exec("SELECT beacon.create_project('shop')");
        exec("SELECT beacon.partition_collection('shop', 'events', 'day')");
        for (i, time) in [
            Some("2020-05-01T10:00:00Z"),
            Some("2020-05-01T11:00:00Z"),
            Some("2020-05-02T00:00:00Z"),
            None,
            None,
        ]
        .into_iter()
        .enumerate()
        {
            collect(time, if i % 2 == 0 { "x" } else { "y" }, i as i64);
        }
        exec(&format!(
            "SELECT beacon.create_continuous_query('shop', 'v', '{QUERY}', 'async')"
        ));
        exec("SELECT beacon.compact('shop', 'v')");
        exec("CREATE TEMP TABLE before AS SELECT * FROM shop.v");
        exec("SELECT beacon.set_retention('shop', 'events', interval '30 days')");
        let due: Vec<pgrx::datum::TimestampWithTimeZone> =
            one("SELECT beacon._maintain_partitions('shop', 'events')").unwrap_or_default();
        assert_eq!(due.len(), 2, "the two days of 2020");
        for lower in due {
            Spi::get_one_with_args::<i64>(
                "SELECT beacon._retire_partition('shop', 'events', $1)",
                &[lower.into()],
            )
            .unwrap();
        }
        assert_eq!(count("SELECT 1 FROM shop.events"), 2);
        assert_eq!(
            count("SELECT 1 FROM beacon.partition WHERE project = 'shop' AND lower < '2021-01-01'"),
            0
        );
        exec("SELECT beacon.compact('shop', 'v')");
        assert_eq!(
            count("(TABLE before EXCEPT ALL TABLE shop.v) UNION ALL (TABLE shop.v EXCEPT ALL TABLE before)"),
            0,
            "dropping old events changes no continuous query"
        );
        // a late event for a retired day gets its partition again
        collect(Some("2020-05-01T12:00:00Z"), "x", 7);
        assert_eq!(count("SELECT 1 FROM shop.events"), 3);
        assert_eq!(
            one::<String>(
                "SELECT keep::text FROM beacon.partitioned_collections WHERE collection = 'events'"
            ),
            Some("30 days".into())
        );
        // the scheduler's failures are what beacon.status() reports
        assert_eq!(
            count("SELECT 1 FROM beacon.status() WHERE component = 'partitions'"),
            0
        );
        exec("SELECT beacon._partition_maintenance_done('shop', 'events', 'disk full')");
        assert_eq!(
            one::<String>("SELECT problem FROM beacon.status() WHERE component = 'partitions'"),
            Some("partition maintenance failed: disk full".into())
        );
        exec("SELECT beacon._partition_maintenance_done('shop', 'events', NULL)");
        assert_eq!(
            count("SELECT 1 FROM beacon.status() WHERE component = 'partitions'"),
            0
        );
    }

    #[pg_test]
    fn refusals() {
        exec("SELECT beacon.create_project('shop')");
        collect(None, "x", 1);
        exec("CREATE ROLE part_reader");
        exec("SELECT beacon.grant('shop', 'part_reader', 'read')");
        for (sql, state) in [
            (
                "SELECT beacon.partition_collection('shop', 'events', 'hour')",
                "22023",
            ),
            (
                "SELECT beacon.partition_collection('shop', 'Bad Name', 'day')",
                "42602",
            ),
            (
                "SELECT beacon.partition_collection('nope', 'events', 'day')",
                "3F000",
            ),
            (
                "SELECT beacon.set_retention('shop', 'events', interval '1 day')",
                "0A000",
            ),
            (
                "SELECT beacon.archive_now('shop', 'events', now())",
                "0A000",
            ),
            (
                "SELECT beacon.set_retention('shop', 'missing', interval '1 day')",
                "42P01",
            ),
        ] {
            assert_eq!(sqlstate_of(sql).as_deref(), Some(state), "{sql}");
        }
        exec("SELECT beacon.partition_collection('shop', 'events', 'month')");
        assert_eq!(
            one::<i64>(
                "SELECT beacon.create_partitions('shop', 'events', '2020-01-15', '2020-04-01')"
            ),
            Some(3)
        );
        assert_eq!(
            one::<i64>(
                "SELECT beacon.create_partitions('shop', 'events', '2020-01-01', '2020-03-02')"
            ),
            Some(0)
        );
        exec("INSERT INTO shop.events (_time) VALUES ('2020-02-29 23:59:59.999999+00')");
        for (sql, state) in [
            (
                "SELECT beacon.create_partitions('shop', 'events', '1000-01-01', '3000-01-01')",
                "54000",
            ),
            (
                "SELECT beacon.create_partitions('shop', 'events', '-infinity', now())",
                "22023",
            ),
        ] {
            assert_eq!(sqlstate_of(sql).as_deref(), Some(state), "{sql}");
        }
        assert_eq!(
            sqlstate_of("SELECT beacon.set_retention('shop', 'events', interval '-1 day')")
                .as_deref(),
            Some("22023")
        );
        exec("SET ROLE part_reader");
        for sql in [
            "SELECT beacon.partition_collection('shop', 'other', 'day')",
            "SELECT beacon.set_retention('shop', 'events', interval '1 day')",
            "SELECT beacon.archive_now('shop', 'events', now())",
            "SELECT beacon._maintain_partitions('shop', 'events')",
        ] {
            assert_eq!(sqlstate_of(sql).as_deref(), Some("42501"), "{sql}");
        }
        exec("RESET ROLE");
        // dropping a partitioned collection leaves none of its partitions behind
        exec("SELECT beacon.drop_collection('shop', 'events')");
        assert_eq!(
            count("SELECT 1 FROM beacon.partition WHERE project = 'shop'"),
            0
        );
        assert_eq!(
            count("SELECT 1 FROM pg_class WHERE relname LIKE '\\_p%\\_events'"),
            0
        );
        collect(None, "x", 1);
        assert_eq!(
            one::<String>("SELECT relkind::text FROM pg_class WHERE oid = 'shop.events'::regclass"),
            Some("r".into())
        );
        // a partitioned table pg_beacon did not partition is still refused as a source
        exec("CREATE TABLE shop.parted (k int, v int) PARTITION BY LIST (k)");
        assert_eq!(
            sqlstate_of(
                "SELECT beacon.create_continuous_query('shop', 'p', 'SELECT k, count(*) FROM parted GROUP BY k', 'async')"
            )
            .as_deref(),
            Some("0A000")
        );
    }

    /// Every analysis function answers the same before and after its collections are
    /// partitioned.
    #[pg_test]
    fn analysis_functions_read_partitioned_collections_as_plain_ones() {
        exec("SELECT beacon.create_project('an')");
        let mut events = Vec::new();
        for i in 0..120 {
            let collection = ["view", "cart", "buy"][i % 3];
            // around the Paris DST change of 2024-03-31, over three weeks
            let day = 20 + (i * 7) % 18;
            let (month, day) = if day > 31 { (4, day - 31) } else { (3, day) };
            events.push(format!(
                r#"{{"collection": "{collection}", "properties": {{"_user": "u{}", "price": {}, "country": "{}", "_time": "2024-{month:02}-{day:02}T{:02}:{:02}:00Z"}}}}"#,
                i % 17,
                (i * 13) % 50,
                ["fr", "de"][i % 2],
                (i * 5) % 24,
                (i * 11) % 60
            ));
        }
        exec(&format!(
            "SELECT beacon.collect_batch('an', '[{}]')",
            events.join(", ")
        ));
        let answers = || {
            one::<String>(
                r#"SELECT concat_ws(' | ',
                    (SELECT string_agg(concat_ws(',', step, breakdown, users, median_time_from_previous), ';' ORDER BY step, breakdown)
                       FROM beacon.funnel('an', '[{"collection": "view", "where": "price > 5"}, {"collection": "cart"}, {"collection": "buy"}]',
                                          interval '2 days', '2024-03-01', '2024-05-01', 'country', 'Europe/Paris')),
                    (SELECT string_agg(concat_ws(',', cohort, period, users), ';' ORDER BY cohort, period)
                       FROM beacon.retention('an', '{"collection": "view"}', '{"collection": "buy"}', 'week',
                                             '2024-03-01', '2024-05-01', NULL, 'Europe/Paris')),
                    (SELECT string_agg(concat_ws(',', bucket, breakdown, value), ';' ORDER BY bucket, breakdown)
                       FROM beacon.segmentation('an', 'cart', '{"aggregate": "sum", "property": "price"}', 'day', '2024-03-01', '2024-05-01',
                                                'country', 'price >= 3', 'Europe/Paris')),
                    (SELECT string_agg(concat_ws(',', collection, time), ';' ORDER BY time DESC, collection)
                       FROM beacon.user_timeline('an', 'u3')))"#,
            )
            .unwrap_or_default()
        };
        exec(
            r#"SELECT beacon.create_continuous_funnel('an', 'f', '[{"collection": "view"}, {"collection": "cart"}, {"collection": "buy"}]',
                                                      interval '2 days', 'country', 'immediate')"#,
        );
        let continuous = || {
            one::<String>(
                r#"SELECT concat_ws(' | ',
                    (SELECT string_agg(concat_ws(',', step, breakdown, users, median_time_from_previous), ';' ORDER BY step, breakdown)
                       FROM beacon.continuous_funnel('an', 'f', '2024-03-01', '2024-05-01')),
                    (SELECT string_agg(concat_ws(',', step, breakdown, users, median_time_from_previous), ';' ORDER BY step, breakdown)
                       FROM beacon.funnel('an', '[{"collection": "view"}, {"collection": "cart"}, {"collection": "buy"}]',
                                          interval '2 days', '2024-03-01', '2024-05-01', 'country')))"#,
            )
            .unwrap_or_default()
        };
        let plain = answers();
        assert!(plain.matches(';').count() > 20, "{plain}");
        let halves = |s: String| {
            let (a, b) = s.split_once(" | ").unwrap_or_default();
            assert_eq!(a, b, "the continuous funnel equals the on-demand one");
            a.to_string()
        };
        let continuous_plain = halves(continuous());
        for (collection, period) in [("view", "day"), ("cart", "week"), ("buy", "month")] {
            exec(&format!(
                "SELECT beacon.partition_collection('an', '{collection}', '{period}')"
            ));
        }
        assert_eq!(answers(), plain);
        assert_eq!(halves(continuous()), continuous_plain);
        // and it keeps following the partitioned collections
        exec(
            r#"SELECT beacon.collect_batch('an', '[{"collection": "view", "properties": {"_user": "new", "country": "fr", "_time": "2024-04-02T10:00:00Z"}},
                                                   {"collection": "cart", "properties": {"_user": "new", "_time": "2024-04-02T11:00:00Z"}}]')"#,
        );
        assert_ne!(halves(continuous()), continuous_plain);
    }
}
