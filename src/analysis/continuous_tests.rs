use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use crate::testing::{count, exec, one, sqlstate_of};
    use pgrx::prelude::*;

    const THREE: &str = r#"[{"collection": "view", "where": "price > 3"}, {"collection": "cart"}, {"collection": "buy"}]"#;
    const REPEATED: &str =
        r#"[{"collection": "view"}, {"collection": "view"}, {"collection": "cart"}]"#;

    fn setup() {
        exec("SELECT beacon.create_project('ca')");
        exec(
            r#"SELECT beacon.define_collection('ca', 'view', '{"price": "numeric", "country": "text"}')"#,
        );
        exec(r#"SELECT beacon.define_collection('ca', 'cart', '{"price": "numeric"}')"#);
        exec(r#"SELECT beacon.define_collection('ca', 'buy', '{"price": "numeric"}')"#);
        exec("SELECT setseed(0.42)");
        events(300, "2024-03-01");
        exec(r#"SELECT beacon.set_user('ca', 'u1', '{"plan": "pro"}')"#);
        exec(r#"SELECT beacon.set_user('ca', 'u2', '{"plan": "free"}')"#);
    }

    /// `n` random events per collection over 10 days from `start`, 12 users, some at
    /// the same instant.
    fn events(n: i32, start: &str) {
        for table in ["view", "cart", "buy"] {
            let extra = if table == "view" { ", country" } else { "" };
            let value = if table == "view" {
                ", (ARRAY['fr', 'de', NULL])[1 + floor(random() * 3)::int]"
            } else {
                ""
            };
            exec(&format!(
                "INSERT INTO ca.{table} (_user, _time, price{extra})
                 SELECT CASE WHEN random() < 0.03 THEN NULL ELSE 'u' || (1 + floor(random() * 12)::int) END,
                        timestamptz '{start} 00:00+00' + floor(random() * 2000) * interval '7 minutes',
                        floor(random() * 10){value}
                   FROM generate_series(1, {n})"
            ));
        }
    }

    const RANGES: &[(&str, &str)] = &[
        ("2024-01-01 00:00+00", "2024-06-01 00:00+00"),
        ("2024-03-03 00:00+00", "2024-03-05 12:00+00"),
        ("2024-03-04 07:00+00", "2024-03-04 09:30+00"),
        ("2024-02-27 23:00+00", "2024-03-02 00:00+00"),
        ("2030-01-01 00:00+00", "2030-01-02 00:00+00"),
    ];

    fn rows(sql: &str) -> String {
        one::<String>(&format!(
            "SELECT coalesce(string_agg(r::text, ';'), '') FROM ({sql}) AS r"
        ))
        .unwrap_or_default()
    }

    /// Every range: the continuous funnel equals beacon.funnel.
    fn funnel_agrees(name: &str, steps: &str, window: &str, breakdown: &str, zone: &str) {
        for (from, to) in RANGES {
            let continuous = rows(&format!(
                "SELECT * FROM beacon.continuous_funnel('ca', '{name}', '{from}', '{to}')"
            ));
            let on_demand = rows(&format!(
                "SELECT * FROM beacon.funnel('ca', '{steps}', interval '{window}', '{from}', '{to}', {breakdown}, '{zone}')"
            ));
            assert_eq!(continuous, on_demand, "funnel {name} over [{from}, {to})");
        }
    }

    fn retention_agrees(name: &str, period: &str, breakdown: &str, zone: &str) {
        for (from, to) in RANGES {
            let continuous = rows(&format!(
                "SELECT * FROM beacon.continuous_retention('ca', '{name}', '{from}', '{to}')"
            ));
            let on_demand = rows(&format!(
                "SELECT * FROM beacon.retention('ca', '{{\"collection\": \"view\"}}', '{{\"collection\": \"buy\", \"where\": \"price > 2\"}}', '{period}', '{from}', '{to}', {breakdown}, '{zone}')"
            ));
            assert_eq!(
                continuous, on_demand,
                "retention {name} over [{from}, {to})"
            );
        }
    }

    /// Late events (older `_time`), deletes, updates of times and users.
    fn change() {
        events(40, "2024-02-28");
        exec("DELETE FROM ca.cart WHERE _id % 7 = 0");
        exec("DELETE FROM ca.view WHERE _user = 'u3' AND price < 5");
        exec("UPDATE ca.buy SET _time = _time - interval '3 hours' WHERE _id % 5 = 0");
        exec("UPDATE ca.view SET _user = 'u9' WHERE _user = 'u4' AND _id % 2 = 0");
        exec("UPDATE ca.view SET country = 'it' WHERE _id % 11 = 0");
    }

    fn all_funnels_agree() {
        funnel_agrees("fa", THREE, "1 hour", "'country'", "UTC");
        funnel_agrees("fi", THREE, "1 day", "'_users.plan'", "Europe/Paris");
        funnel_agrees("fr", REPEATED, "2 hours", "NULL", "UTC");
    }

    #[pg_test]
    fn continuous_funnels_equal_on_demand_ones() {
        setup();
        exec(&format!(
            "SELECT beacon.create_continuous_funnel('ca', 'fa', '{THREE}', interval '1 hour', 'country')"
        ));
        exec(&format!(
            "SELECT beacon.create_continuous_funnel('ca', 'fi', '{THREE}', interval '1 day', '_users.plan', 'immediate', 'Europe/Paris')"
        ));
        exec(&format!(
            "SELECT beacon.create_continuous_funnel('ca', 'fr', '{REPEATED}', interval '2 hours', mode => 'immediate')"
        ));
        // the backfill
        all_funnels_agree();
        change();
        // immediate ones are current; async ones after a refresh
        funnel_agrees("fi", THREE, "1 day", "'_users.plan'", "Europe/Paris");
        funnel_agrees("fr", REPEATED, "2 hours", "NULL", "UTC");
        assert!(count("SELECT * FROM ca._ca_fa_pending") > 0);
        // what beacon.status() says of them: pending changes older than the threshold (the
        // transaction's own are 0 s old, so a negative one), then a failed refresh
        let problems = "SELECT coalesce(string_agg(severity || ':' || name || ':' || split_part(problem, ' ', 2), ' ' ORDER BY name), '')
                          FROM beacon.status(interval '-1 second') WHERE component = 'continuous analysis'";
        assert_eq!(one::<String>(problems).unwrap(), "warning:fa:pending");
        exec("SELECT beacon._continuous_analysis_error('ca', 'fa', 'disk full')");
        assert_eq!(
            count("SELECT 1 FROM beacon.status() WHERE component = 'continuous analysis' AND problem = 'refresh failed: disk full'"),
            1
        );
        assert!(one::<i64>("SELECT beacon.refresh_continuous_analysis('ca', 'fa')").unwrap() > 0);
        assert_eq!(one::<String>(problems).unwrap(), "");
        assert_eq!(count("SELECT * FROM ca._ca_fa_pending"), 0);
        all_funnels_agree();
        // regenerated with the running code, they go on
        exec("SELECT beacon.regenerate()");
        events(20, "2024-03-02");
        exec("SELECT beacon.refresh_continuous_analysis()");
        all_funnels_agree();
        // a profile changed: read when reading
        exec(r#"SELECT beacon.set_user('ca', 'u3', '{"plan": "pro"}')"#);
        exec("TRUNCATE ca.buy");
        exec("SELECT beacon.refresh_continuous_analysis()");
        all_funnels_agree();
        let status = one::<String>(
            "SELECT string_agg(name || ':' || kind || ':' || mode || ':' || pending, ' ' ORDER BY name)
               FROM beacon.continuous_analyses WHERE project = 'ca'",
        )
        .unwrap();
        assert_eq!(
            status,
            "fa:funnel:async:0 fi:funnel:immediate:0 fr:funnel:immediate:0"
        );
    }

    #[pg_test]
    fn continuous_retention_equals_on_demand_retention() {
        setup();
        let first = r#"{"collection": "view"}"#;
        let returning = r#"{"collection": "buy", "where": "price > 2"}"#;
        exec(&format!(
            "SELECT beacon.create_continuous_retention('ca', 'rd', '{first}', '{returning}', 'day', 'country')"
        ));
        exec(&format!(
            "SELECT beacon.create_continuous_retention('ca', 'rw', '{first}', '{returning}', 'week', '_users.plan', 'immediate', 'Europe/Paris')"
        ));
        retention_agrees("rd", "day", "'country'", "UTC");
        retention_agrees("rw", "week", "'_users.plan'", "Europe/Paris");
        change();
        retention_agrees("rw", "week", "'_users.plan'", "Europe/Paris");
        exec("SELECT beacon.refresh_continuous_analysis('ca')");
        retention_agrees("rd", "day", "'country'", "UTC");
        // a funnel's reader refuses a retention
        assert_eq!(
            sqlstate_of("SELECT * FROM beacon.continuous_funnel('ca', 'rd', now(), now())")
                .as_deref(),
            Some("22023")
        );
    }

    #[pg_test]
    fn continuous_analysis_arguments_are_checked() {
        setup();
        let refusals = [
            (format!("SELECT beacon.create_continuous_funnel('ca', 'x', '{THREE}', interval '1 hour', mode => 'sometimes')"), "22023"),
            (format!("SELECT beacon.create_continuous_funnel('ca', 'x', '{THREE}', interval '-1 hour')"), "22023"),
            ("SELECT beacon.create_continuous_funnel('ca', 'x', '[]', interval '1 hour')".to_string(), "22023"),
            (r#"SELECT beacon.create_continuous_funnel('ca', 'x', '[{"collection": "nope"}]', interval '1 hour')"#.to_string(), "42P01"),
            (format!("SELECT beacon.create_continuous_funnel('ca', 'x', '{THREE}', interval '1 hour', time_zone => 'Mars/Base')"), "22023"),
            (format!("SELECT beacon.create_continuous_funnel('ca', 'x', '{THREE}', interval '1 hour', 'nope')"), "42704"),
            (r#"SELECT beacon.create_continuous_funnel('ca', 'x', '[{"collection": "view", "where": "pg_sleep(1) IS NULL"}]', interval '1 hour')"#.to_string(), "42501"),
            (format!("SELECT beacon.create_continuous_funnel('ca', 'bad name', '{THREE}', interval '1 hour')"), "42602"),
            (r#"SELECT beacon.create_continuous_retention('ca', 'x', '{"collection": "view"}', '{"collection": "buy"}', 'year')"#.to_string(), "22023"),
            ("SELECT * FROM beacon.continuous_funnel('ca', 'nope', now(), now())".to_string(), "42704"),
            ("SELECT beacon.drop_continuous_analysis('ca', 'nope')".to_string(), "42704"),
        ];
        for (sql, expected) in &refusals {
            let got = sqlstate_of(sql);
            assert!(got.is_some(), "{sql} was accepted");
            if got.as_deref() != Some(expected) {
                panic!("{sql}: {got:?}, expected {expected}");
            }
        }
        // nothing left behind
        assert_eq!(
            count("SELECT * FROM pg_class WHERE relname LIKE '\\_ca\\_%'"),
            0
        );
        assert_eq!(count("SELECT * FROM beacon.continuous_analysis"), 0);
        exec(&format!(
            "SELECT beacon.create_continuous_funnel('ca', 'x', '{THREE}', interval '1 hour')"
        ));
        assert_eq!(
            sqlstate_of(&format!(
                "SELECT beacon.create_continuous_funnel('ca', 'x', '{THREE}', interval '1 hour')"
            ))
            .as_deref(),
            Some("42710")
        );
        // readers of the project read it; the hidden tables are pg_beacon's alone
        assert!(
            !one::<bool>("SELECT has_table_privilege('beacon_ca_read', 'ca._ca_x', 'SELECT')")
                .unwrap()
        );
        assert!(one::<bool>(
            "SELECT has_function_privilege('beacon_ca_read', 'beacon.continuous_funnel(text, text, timestamptz, timestamptz)', 'EXECUTE')"
        )
        .unwrap());
        // a collection it reads is not dropped without cascade, and takes it along with
        assert_eq!(
            sqlstate_of("SELECT beacon.drop_collection('ca', 'cart')").as_deref(),
            Some("2BP01")
        );
        exec("SELECT beacon.drop_collection('ca', 'cart', cascade => true)");
        assert_eq!(count("SELECT * FROM beacon.continuous_analysis"), 0);
        assert_eq!(
            count("SELECT * FROM pg_class WHERE relname LIKE '\\_ca\\_%'"),
            0
        );
        assert_eq!(
            count("SELECT * FROM pg_trigger WHERE tgname LIKE '\\_ca\\_%'"),
            0
        );
        exec(
            r#"SELECT beacon.create_continuous_retention('ca', 'y', '{"collection": "view"}', '{"collection": "buy"}', 'day')"#,
        );
        exec("SELECT beacon.drop_continuous_analysis('ca', 'y')");
        assert_eq!(
            count("SELECT * FROM pg_class WHERE relname LIKE '\\_ca\\_%'"),
            0
        );
        assert_eq!(
            count("SELECT * FROM pg_proc WHERE proname LIKE '\\_ca\\_%'"),
            0
        );
    }
}
