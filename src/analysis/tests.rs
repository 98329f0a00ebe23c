use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use crate::testing::{exec, one, sqlstate_of};
    use pgrx::prelude::*;

    /// Four users through view → cart → buy, with the cases the definition decides:
    /// u1 converts; u2 adds to the cart before viewing; u3's cart is outside the window;
    /// u4 views twice (cheap, then dear) before the cart.
    fn setup() {
        exec("SELECT beacon.create_project('an')");
        exec(
            r#"SELECT beacon.define_collection('an', 'view', '{"price": "numeric", "country": "text"}')"#,
        );
        exec(r#"SELECT beacon.define_collection('an', 'cart', '{"price": "numeric"}')"#);
        exec(r#"SELECT beacon.define_collection('an', 'buy', '{"price": "numeric"}')"#);
        exec(
            "INSERT INTO an.view (_user, _time, price, country) VALUES
               ('u1', '2024-03-01 10:00+00', 15, 'fr'), ('u2', '2024-03-01 10:00+00', 1, 'de'),
               ('u3', '2024-03-01 10:00+00', 12, 'fr'), ('u4', '2024-03-01 10:00+00', 5, 'de'),
               ('u4', '2024-03-01 10:20+00', 20, 'de'), (NULL, '2024-03-01 10:00+00', 50, 'fr')",
        );
        exec(
            "INSERT INTO an.cart (_user, _time, price) VALUES
               ('u1', '2024-03-01 10:05+00', 15), ('u2', '2024-03-01 09:00+00', 1),
               ('u3', '2024-03-01 11:30+00', 12), ('u4', '2024-03-01 10:30+00', 20)",
        );
        exec("INSERT INTO an.buy (_user, _time, price) VALUES ('u1', '2024-03-01 10:10+00', 15)");
    }

    fn funnel_users(steps: &str, breakdown: &str) -> String {
        one::<String>(&format!(
            "SELECT string_agg(coalesce(breakdown, '-') || ':' || step || '=' || users, ' ' ORDER BY breakdown NULLS FIRST, step)
               FROM beacon.funnel('an', '{steps}', interval '1 hour',
                                  '2024-03-01 00:00+00', '2024-03-02 00:00+00', {breakdown})"
        ))
        .unwrap_or_default()
    }

    const THREE: &str =
        r#"[{"collection": "view"}, {"collection": "cart"}, {"collection": "buy"}]"#;

    #[pg_test]
    fn funnel_counts_users_in_order_within_the_window() {
        setup();
        assert_eq!(funnel_users(THREE, "NULL"), "-:1=4 -:2=2 -:3=1");
        let dear = r#"[{"collection": "view", "where": "price > 10"}, {"collection": "cart"}, {"collection": "buy"}]"#;
        assert_eq!(funnel_users(dear, "NULL"), "-:1=3 -:2=2 -:3=1");
        assert_eq!(
            funnel_users(THREE, "'country'"),
            "de:1=2 de:2=1 de:3=0 fr:1=2 fr:2=1 fr:3=1"
        );
        // a property of the user's profile; users without one are NULL
        exec(r#"SELECT beacon.set_user('an', 'u1', '{"plan": "pro"}')"#);
        assert_eq!(
            funnel_users(THREE, "'_users.plan'"),
            "-:1=3 -:2=1 -:3=0 pro:1=1 pro:2=1 pro:3=1"
        );
        let conversions = one::<String>(
            &format!("SELECT string_agg(step || ':' || coalesce(round(conversion_from_previous::numeric, 3)::text, '-')
                                        || '/' || coalesce(round(conversion_from_first::numeric, 3)::text, '-')
                                        || '/' || coalesce(median_time_from_previous::text, '-'), ' ' ORDER BY step)
                        FROM beacon.funnel('an', '{THREE}', interval '1 hour', '2024-03-01', '2024-03-02')"),
        )
        .unwrap();
        assert_eq!(
            conversions,
            "1:-/1.000/- 2:0.500/0.500/00:17:30 3:0.500/0.250/00:05:00"
        );
        // a repeated step needs a later event of its own
        let twice = r#"[{"collection": "view"}, {"collection": "view"}]"#;
        assert_eq!(funnel_users(twice, "NULL"), "-:1=4 -:2=1");
        // an empty range still has one row per step
        let empty = one::<String>(&format!(
            "SELECT string_agg(step || '=' || users, ' ' ORDER BY step)
               FROM beacon.funnel('an', '{THREE}', interval '1 hour', '2030-01-01', '2030-01-02')"
        ))
        .unwrap();
        assert_eq!(empty, "1=0 2=0 3=0");
    }

    #[pg_test]
    fn analysis_arguments_are_checked() {
        setup();
        let cases = [
            (
                "SELECT * FROM beacon.funnel('an', '{}', '1 hour', now(), now())",
                "22023",
            ),
            (
                "SELECT * FROM beacon.funnel('an', '[]', '1 hour', now(), now())",
                "22023",
            ),
            (
                r#"SELECT * FROM beacon.funnel('an', '[{"collection": "nope"}]', '1 hour', now(), now())"#,
                "42P01",
            ),
            (
                r#"SELECT * FROM beacon.funnel('an', '[{"collection": "view", "where": "price > (SELECT 1)"}]', '1 hour', now(), now())"#,
                "42501",
            ),
            (
                r#"SELECT * FROM beacon.funnel('an', '[{"collection": "view", "where": "1) OR (true"}]', '1 hour', now(), now())"#,
                "42601",
            ),
            (
                r#"SELECT * FROM beacon.funnel('an', '[{"collection": "view", "extra": 1}]', '1 hour', now(), now())"#,
                "22023",
            ),
            (
                r#"SELECT * FROM beacon.funnel('an', '[{"collection": "view"}]', '1 hour', now(), now(), 'nosuch')"#,
                "42704",
            ),
            (
                r#"SELECT * FROM beacon.funnel('an', '[{"collection": "_users"}]', '1 hour', now(), now())"#,
                "22023",
            ),
            (
                r#"SELECT * FROM beacon.funnel('an', '[{"collection": "view"}]', '1 hour', now(), now(), NULL, 'Mars/Olympus')"#,
                "22023",
            ),
            (
                r#"SELECT * FROM beacon.funnel('nope', '[{"collection": "view"}]', '1 hour', now(), now())"#,
                "3F000",
            ),
            (
                r#"SELECT * FROM beacon.retention('an', '{"collection": "view"}', '{"collection": "buy"}', 'year', now(), now())"#,
                "22023",
            ),
            (
                r#"SELECT * FROM beacon.segmentation('an', 'view', '"median"', 'day', now(), now())"#,
                "22023",
            ),
            (
                r#"SELECT * FROM beacon.segmentation('an', 'view', '{"aggregate": "sum"}', 'day', now(), now())"#,
                "22023",
            ),
            (
                r#"SELECT * FROM beacon.segmentation('an', 'view', '"count"', 'fortnight', now(), now())"#,
                "22023",
            ),
            (
                "SELECT * FROM beacon.user_timeline('an', 'u1', NULL, NULL, 0)",
                "22023",
            ),
            (
                "SELECT * FROM beacon.user_timeline('an', 'u1', NULL, NULL, 10, 'garbage')",
                "22023",
            ),
        ];
        let mut wrong = Vec::new();
        for (sql, expected) in cases {
            let got = sqlstate_of(sql);
            if got.as_deref() != Some(expected) {
                wrong.push(format!("{sql}: {got:?}"));
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[pg_test]
    fn retention_counts_returning_users_per_period() {
        setup();
        exec(
            "INSERT INTO an.buy (_user, _time, price) VALUES
               ('u2', '2024-03-02 12:00+00', 1), ('u2', '2024-03-02 13:00+00', 1),
               ('u3', '2024-03-04 08:00+00', 1), ('u4', '2024-02-28 08:00+00', 1)",
        );
        let rows = one::<String>(
            r#"SELECT string_agg(cohort || ':' || period || '=' || users || '/' || cohort_size, ' ' ORDER BY cohort, period)
                 FROM beacon.retention('an', '{"collection": "view"}', '{"collection": "buy"}', 'day',
                                       '2024-03-01', '2024-03-05')"#,
        )
        .unwrap();
        assert_eq!(
            rows,
            "2024-03-01:0=1/4 2024-03-01:1=1/4 2024-03-01:2=0/4 2024-03-01:3=1/4"
        );
    }

    #[pg_test]
    fn segmentation_measures_per_bucket() {
        setup();
        let rows = one::<String>(
            r#"SELECT string_agg(to_char(bucket AT TIME ZONE 'UTC', 'HH24:MI') || '/' || coalesce(breakdown, '-') || '=' || value, ' ' ORDER BY bucket, breakdown)
                 FROM beacon.segmentation('an', 'view', '{"aggregate": "sum", "property": "price"}', 'hour',
                                          '2024-03-01', '2024-03-02', 'country', 'price > 1')"#,
        )
        .unwrap();
        assert_eq!(rows, "10:00/de=25 10:00/fr=77");
        let users = one::<String>(
            r#"SELECT string_agg(value::text, ',') FROM beacon.segmentation('an', 'view', '"users"', 'day',
                                          '2024-03-01', '2024-03-02')"#,
        )
        .unwrap();
        assert_eq!(users, "4");
    }

    #[pg_test]
    fn user_timeline_pages_newest_first() {
        setup();
        let first = one::<String>(
            "SELECT string_agg(collection || '@' || to_char(time AT TIME ZONE 'UTC', 'HH24:MI'), ' ' ORDER BY time DESC, collection DESC)
               FROM beacon.user_timeline('an', 'u4', NULL, NULL, 2)",
        )
        .unwrap();
        assert_eq!(first, "cart@10:30 view@10:20");
        let cursor = one::<String>(
            "SELECT cursor FROM beacon.user_timeline('an', 'u4', NULL, NULL, 2) ORDER BY time LIMIT 1",
        )
        .unwrap();
        let rest = one::<String>(&format!(
            "SELECT string_agg(collection || '@' || to_char(time AT TIME ZONE 'UTC', 'HH24:MI') || ':' || (event->>'price'), ' ')
               FROM beacon.user_timeline('an', 'u4', NULL, NULL, 2, '{cursor}')"
        ))
        .unwrap();
        assert_eq!(rest, "view@10:00:5");
    }
}
